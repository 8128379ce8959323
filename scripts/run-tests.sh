#!/bin/bash
# Runs every unit test binary and every end-to-end test script.
# Environment: BUILD (asan|release|debug), SHARED (path to ../shared reference material),
# REQUIRE_SHARED=1 makes a missing SHARED an error instead of a skip (CI sets it).
# JOBS: how many tests run at once (default: the number of cores).
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

# Tests run JOBS at a time (default: the number of cores); each writes its own log and status
# file, and results are printed as they finish. End-to-end scripts go first: they are the long ones.
JOBS=${JOBS:-$(nproc)}
RES=$TEST_TMP/results
mkdir -p "$RES"
run_one() { # name, command...
    local name=$1; shift
    local t0=$SECONDS st=0
    "$@" >"$TEST_TMP/$name.log" 2>&1 || st=$?
    echo "$st $((SECONDS - t0))" >"$RES/$name"
}
report() { # name
    local name=$1 st secs
    read -r st secs <"$RES/$name"
    if [ "$st" = 0 ]; then
        printf '  ok    %-40s %3ds\n' "$name" "$secs"
    else
        printf '  FAIL  %-40s %3ds\n' "$name" "$secs"
        tail -n 40 "$TEST_TMP/$name.log" | sed 's/^/        | /'
    fi
}

names=(); cmds=()
for t in tests/e2e/*.sh; do
    [ -f "$t" ] && names+=("$(basename "$t" .sh)") && cmds+=("bash $t")
done
for t in "$O"/tests/test_*; do
    [ -x "$t" ] && names+=("$(basename "$t")") && cmds+=("$t")
done

echo "== ${#names[@]} tests ($O), $JOBS at a time"
declare -A pid_name=()
reap() { # wait for one job to end and report it
    local done_pid
    wait -n -p done_pid
    report "${pid_name[$done_pid]}"
    unset "pid_name[$done_pid]"
}
for i in "${!names[@]}"; do
    while [ "${#pid_name[@]}" -ge "$JOBS" ]; do reap; done
    # shellcheck disable=SC2086
    run_one "${names[$i]}" ${cmds[$i]} &
    pid_name[$!]=${names[$i]}
done
while [ "${#pid_name[@]}" -gt 0 ]; do reap; done

pass=0; fail=0; failed=()
for n in "${names[@]}"; do
    read -r st _ <"$RES/$n"
    if [ "$st" = 0 ]; then pass=$((pass + 1)); else fail=$((fail + 1)); failed+=("$n"); fi
done
echo "== $pass passed, $fail failed (logs in $TEST_TMP)"
[ $fail -eq 0 ] || { printf 'failed: %s\n' "${failed[@]}"; exit 1; }
