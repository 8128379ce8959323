#!/bin/bash
# anemll inspect on the coremltools- and ANEMLL-written packages in $SHARED/golden: what the
# READMEs say each holds, --mil text, usage errors, and a clear error for a broken package.
set -euo pipefail
: "${ANEMLL:?} ${SHARED:?} ${TEST_TMP:?}"
T=$TEST_TMP/inspect_cli
rm -rf "$T" && mkdir -p "$T"
fail() { echo "FAIL: $*" >&2; exit 1; }
G=$SHARED/golden
if [ ! -d "$G" ]; then
    [ "${REQUIRE_SHARED:-0}" = 1 ] && fail "no $G"
    echo "skip: no $G"; exit 0
fi
has() { grep -qF -- "$2" <<<"$1" || fail "expected '$2' in the output of inspect $3"; }

out=$("$ANEMLL" inspect "$G/simple_fp32_ios15.mlpackage")
has "$out" "spec version   6" simple
has "$out" "function main  opset CoreML5" simple
has "$out" "x                            fp32   [2, 8]" simple
has "$out" "linear 1" simple
has "$out" "relu 1" simple
has "$out" "reduce_mean 1" simple

out=$("$ANEMLL" inspect "$G/stateful_palettized_ios18.mlpackage")
has "$out" "spec version   9 (iOS 18 / macOS 15)" stateful
has "$out" "  states" stateful
has "$out" "cache                        fp16   [1, 64, 8, 8]" stateful
has "$out" "constexpr_lut_to_dense 1" stateful
has "$out" "read_state 2" stateful
has "$out" "write_state 1" stateful
has "$out" "file weights/weight.bin       5 blobs, 19264 bytes" stateful

out=$("$ANEMLL" inspect "$G/multifunction_ios18.mlpackage")
has "$out" "functions      2: prefill (default), decode" multifunction
has "$out" "x                            fp16   [1, 64, 1, 1]" multifunction
has "$out" "shared      5 blobs, 18880 bytes (used by more than one function)" multifunction
has "$out" "unique      0 blobs, 0 bytes only in decode" multifunction

for p in "$G"/anemll/*/*/*_FFN_PF_*.mlpackage; do
    out=$("$ANEMLL" inspect "$p")
    n=$(basename "$p")
    has "$out" "functions      2: infer (default), prefill" "$n"
    has "$out" "model_model_kv_cache_0" "$n"
    has "$out" "output_hidden_states         fp16" "$n"
    has "$out" "com.anemll.context_length = 256" "$n"
    case $n in
    *lut4*) has "$out" "com.anemll.lut_bits = 4" "$n"; has "$out" "constexpr_lut_to_dense" "$n" ;;
    esac
    echo "ok $n"
done

# --mil: compiled-model syntax
mil=$("$ANEMLL" inspect --mil "$G/stateful_palettized_ios18.mlpackage")
has "$mil" "program(1.3)" mil
has "$mil" "func main<ios18>(tensor<fp16, [1, 64, 8, 8]> x, state<tensor<fp16, [1, 64, 8, 8]>> cache) {" mil
has "$mil" 'write_state(data = acc, input = cache)[name = string("coreml_update_state_1_write_state")];' mil
has "$mil" 'offset = uint64(64)' mil
has "$mil" "} -> (out);" mil

# errors: usage, and a package whose manifest points nowhere
set +e
"$ANEMLL" inspect >/dev/null 2>&1; [ $? = 2 ] || fail "no argument should be a usage error (2)"
"$ANEMLL" inspect --bogus x >/dev/null 2>&1; [ $? = 2 ] || fail "an unknown option should be a usage error (2)"
set -e
"$ANEMLL" inspect --help | grep -q "usage: anemll inspect" || fail "--help"
cp -r "$G/stateful_palettized_ios18.mlpackage" "$T/broken.mlpackage"
chmod -R u+w "$T/broken.mlpackage"
rm "$T/broken.mlpackage/Data/com.apple.CoreML/model.mlmodel"
set +e
msg=$("$ANEMLL" inspect "$T/broken.mlpackage" 2>&1); st=$?
set -e
[ $st = 1 ] || fail "a broken package should fail with status 1 (got $st)"
has "$msg" "which does not exist" broken
echo "ok inspect"
