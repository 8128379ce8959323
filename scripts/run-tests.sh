#!/bin/bash
# Runs every unit test binary and every end-to-end test script.
# Environment: BUILD (asan|release|debug), SHARED (path to ../shared reference material),
# REQUIRE_SHARED=1 makes a missing SHARED an error instead of a skip (CI sets it).
set -u
BUILD=${BUILD:-asan}
O=build/$BUILD
export ANEMLL=$PWD/$O/bin/anemll
export MKMODEL=$PWD/$O/bin/anemll-mkmodel
export SHARED=${SHARED:-../shared}
[ -d "$SHARED" ] && SHARED=$(cd "$SHARED" && pwd)
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
export OPENBLAS_NUM_THREADS=${OPENBLAS_NUM_THREADS:-1}
export TEST_TMP=${TEST_TMP:-$(mktemp -d /tmp/anemll-test.XXXXXX)}

if [ ! -d "$SHARED" ]; then
    if [ "${REQUIRE_SHARED:-0}" = 1 ]; then
        echo "run-tests: SHARED=$SHARED not found (the reference material ../shared)" >&2
        exit 1
    fi
    echo "run-tests: note: $SHARED not found; tests that need the real tokenizers will skip"
fi

pass=0; fail=0; failed=()
run() {
    local name=$1; shift
    local log="$TEST_TMP/$name.log"
    local t0=$SECONDS
    if "$@" >"$log" 2>&1; then
        pass=$((pass + 1)); printf '  ok    %-40s %3ds\n' "$name" $((SECONDS - t0))
    else
        fail=$((fail + 1)); failed+=("$name")
        printf '  FAIL  %-40s %3ds\n' "$name" $((SECONDS - t0))
        tail -n 40 "$log" | sed 's/^/        | /'
    fi
}

echo "== unit tests ($O)"
for t in "$O"/tests/test_*; do
    [ -x "$t" ] || continue
    run "$(basename "$t")" "$t"
done
echo "== end-to-end tests"
for t in tests/e2e/*.sh; do
    [ -f "$t" ] || continue
    run "$(basename "$t" .sh)" bash "$t"
done
echo "== $pass passed, $fail failed (logs in $TEST_TMP)"
[ $fail -eq 0 ] || { printf 'failed: %s\n' "${failed[@]}"; exit 1; }
