#!/bin/bash
# The release binary under valgrind memcheck (--leak-check=full, every leak kind an error): a
# full conversion of tiny llama (LUTs, 2 threads) and qwen3 (sharded checkpoint, fp16 FFN)
# models, step 8's verify included, then `anemll generate` past the end of the context (the
# window shift), `anemll inspect` and `anemll tokenize`. Any invalid access, use of
# uninitialised memory or leak fails the test. About a minute.
#
# Uses build/release/bin/anemll (ANEMLL_RELEASE overrides; `make test` builds it). Without
# valgrind the test is skipped with a notice, except in CI (REQUIRE_SHARED=1), where valgrind is
# a dependency (scripts/install-deps.sh) and its absence a failure.
set -euo pipefail
: "${MKMODEL:?} ${TEST_TMP:?}"
REPO=$(cd "$(dirname "$0")/../.." && pwd)
BIN=${ANEMLL_RELEASE:-$REPO/build/release/bin/anemll}
T=$TEST_TMP/valgrind_convert
rm -rf "$T" && mkdir -p "$T"
fail() { echo "FAIL: $*" >&2; exit 1; }

if ! command -v valgrind >/dev/null; then
    [ "${REQUIRE_SHARED:-0}" = 1 ] && fail "valgrind is not installed (scripts/install-deps.sh installs it)"
    echo "SKIP: valgrind is not installed"
    exit 0
fi
[ -x "$BIN" ] || fail "$BIN is missing: build it with make (or set ANEMLL_RELEASE)"

export OPENBLAS_NUM_THREADS=1
# vg NAME ARGS...: runs the release anemll under memcheck; the log is kept as $T/NAME.vg
vg() {
    local name=$1; shift
    local t0=$SECONDS
    if ! valgrind --leak-check=full --show-leak-kinds=definite,indirect,possible \
        --errors-for-leak-kinds=definite,indirect,possible --error-exitcode=99 --log-file="$T/$name.vg" \
        "$BIN" "$@" >"$T/$name.out" 2>"$T/$name.err"; then
        cat "$T/$name.vg" >&2
        tail -5 "$T/$name.err" >&2
        fail "$name: valgrind reported errors or the command failed"
    fi
    grep -q "ERROR SUMMARY: 0 errors" "$T/$name.vg" || { cat "$T/$name.vg" >&2; fail "$name: errors"; }
    printf 'ok %-22s %3ds  %s\n' "$name" $((SECONDS - t0)) "$(grep -o 'ERROR SUMMARY: [0-9]* errors' "$T/$name.vg"), $(grep -o 'All heap blocks were freed' "$T/$name.vg" || grep -o 'in use at exit: .*' "$T/$name.vg")"
}

"$MKMODEL" --arch llama --out "$T/llama" --layers 2 --hidden 64 --heads 4 --kv-heads 2 --intermediate 128 \
    --vocab 384 >/dev/null
"$MKMODEL" --arch qwen3 --out "$T/qwen3" --layers 2 --hidden 64 --heads 4 --kv-heads 2 --head-dim 16 \
    --intermediate 128 --vocab 384 --shards 2 >/dev/null

vg convert-llama convert --model "$T/llama" --output "$T/llama-out" --context 64 --batch 8 --chunk 2 --lut1 4 \
    --lut2 4 --lut3 6,4 --threads 2
grep -q "PASS" "$T/convert-llama.out" || fail "step 8's verify did not pass: $(tail -20 "$T/convert-llama.out")"
vg convert-qwen3 convert --model "$T/qwen3" --output "$T/qwen3-out" --context 64 --batch 16 --chunk 1 --lut2 "" \
    --lut3 4 --argmax --threads 1
vg generate-llama generate --meta "$T/llama-out/meta.yaml" --tokens 1,2,3,4,5,6,7 --max-new 72 --threads 2 --json
grep -q '"tokens"' "$T/generate-llama.out" || fail "generate printed no tokens"
vg generate-qwen3 generate --meta "$T/qwen3-out/meta.yaml" --tokens 5,6,7 --max-new 8 --threads 1 --stats
vg inspect inspect "$T/llama-out/llama_FFN_PF_lut4_chunk_01of02.mlpackage"
vg tokenize tokenize --tokenizer "$T/qwen3-out" --text "Hello world <|im_end|> 123"
vg detokenize tokenize --tokenizer "$T/qwen3-out" --decode 1,2,3,300,383 --skip-special
echo "ok valgrind memcheck: no errors, no leaks"
