#!/bin/bash
# anemll convert on bad input: every case fails before any work starts, with its own message
# naming the file or option at fault, and leaves nothing behind (the output folder is not
# created). Also: usage errors exit 2, --help, --skip-check turns missing tokenizer files into a
# warning, and `anemll chunks` (the chunk split calculator).
set -euo pipefail
: "${ANEMLL:?} ${MKMODEL:?} ${TEST_TMP:?}"
T=$TEST_TMP/convert_errors
rm -rf "$T" && mkdir -p "$T"
fail() { echo "FAIL: $*" >&2; exit 1; }

"$MKMODEL" --arch llama --out "$T/good" --vocab 384 >/dev/null
OUT=$T/out

# expect STATUS MESSAGE -- convert options (with --output $OUT unless given)
expect() {
    local want=$1 msg=$2; shift 3
    set +e
    "$ANEMLL" convert "$@" >"$T/stdout" 2>"$T/stderr"
    local got=$?
    set -e
    [ "$got" = "$want" ] || fail "'convert $*' exited $got, want $want: $(cat "$T/stderr")"
    grep -qF -- "$msg" "$T/stderr" || fail "'convert $*': expected '$msg' in: $(cat "$T/stderr")"
    [ ! -e "$OUT" ] || fail "'convert $*' left $OUT behind"
}
# a model folder derived from the good one
variant() { rm -rf "$T/$1" && cp -r "$T/good" "$T/$1"; }

"$ANEMLL" convert --help | grep -q "usage: anemll convert" || fail "--help"

# options
expect 2 "--model is required" -- --output "$OUT"
expect 2 "--output is required" -- --model "$T/good"
expect 2 "--context '0'" -- --model "$T/good" --output "$OUT" --context 0
expect 2 "--context '-8'" -- --model "$T/good" --output "$OUT" --context -8
expect 2 "--batch '0'" -- --model "$T/good" --output "$OUT" --batch 0
expect 2 "--batch 128 is larger than --context 64" -- --model "$T/good" --output "$OUT" --context 64 --batch 128
expect 2 "--lut2 '5'" -- --model "$T/good" --output "$OUT" --lut2 5
expect 2 "--lut3 '6,x'" -- --model "$T/good" --output "$OUT" --lut3 6,x
expect 2 "--lut1 'four'" -- --model "$T/good" --output "$OUT" --lut1 four
expect 2 "unknown option '--no-lut'" -- --model "$T/good" --output "$OUT" --no-lut
expect 2 "--restart '0'" -- --model "$T/good" --output "$OUT" --restart 0
expect 2 "--chunk 'many'" -- --model "$T/good" --output "$OUT" --chunk many

# the model folder
expect 1 "no such folder" -- --model "$T/nonexistent" --output "$OUT"
expect 1 "Hugging Face ids are not downloaded" -- --model meta-llama/Llama-3.2-1B --output "$OUT"
variant noconfig && rm "$T/noconfig/config.json"
expect 1 "config.json is missing" -- --model "$T/noconfig" --output "$OUT"
variant notok && rm "$T/notok/tokenizer.json"
expect 1 "tokenizer.json is missing" -- --model "$T/notok" --output "$OUT"
variant notokcfg && rm "$T/notokcfg/tokenizer_config.json"
expect 1 "tokenizer_config.json is missing" -- --model "$T/notokcfg" --output "$OUT"
variant mistral && sed -i 's/"model_type":\t"llama"/"model_type":\t"mistral"/' "$T/mistral/config.json"
expect 1 "mistral" -- --model "$T/mistral" --output "$OUT"
grep -q "llama, qwen2, qwen3" "$T/stderr" || fail "unsupported model_type should list the supported ones"
variant quant && sed -i 's/^{/{"quantization_config": {"quant_method": "gptq", "bits": 4},/' "$T/quant/config.json"
expect 1 "quantization_config" -- --model "$T/quant" --output "$OUT"
grep -qi "dequantize" "$T/stderr" || fail "quantized checkpoint error should ask to dequantize"
variant badshape && sed -i 's/"intermediate_size":\t160/"intermediate_size":\t128/' "$T/badshape/config.json"
expect 1 "mlp.gate_proj.weight has shape [160, 64], config.json implies [128, 64]" -- --model "$T/badshape" --output "$OUT"
variant notensor && rm "$T/notensor/model.safetensors"
expect 1 "model.safetensors" -- --model "$T/notensor" --output "$OUT"

# options against the model
expect 1 "groups of 7 do not divide" -- --model "$T/good" --output "$OUT" --lut2 4,7
grep -q -- "--lut2" "$T/stderr" || fail "group error should name --lut2"
expect 1 "--chunk 5: the model has 2 layers" -- --model "$T/good" --output "$OUT" --chunk 5
expect 1 "--fp16-scale applies to Gemma 3" -- --model "$T/good" --output "$OUT" --fp16-scale auto
expect 1 "--fp16-scale applies to Gemma 3" -- --model "$T/good" --output "$OUT" --fp16-scale 0.5
expect 1 "--split-rotate applies to Gemma 3" -- --model "$T/good" --output "$OUT" --split-rotate
expect 2 "--fp16-scale wants 'auto' or a number in (0, 1], got '1.5'" -- --model "$T/good" --output "$OUT" \
    --fp16-scale 1.5
# Gemma 3 (sliding window 16): a batch that does not divide the window when the context exceeds it; the
# split of rotate functions that do not exist; a config without global layers
"$MKMODEL" --arch gemma3_text --out "$T/gemma" --sliding-window 16 --layers 3 >/dev/null
expect 1 "--batch 6 does not divide the sliding window 16" -- --model "$T/gemma" --output "$OUT" --context 64 --batch 6
grep -qF "use a --batch that divides 16, e.g. --batch 4" "$T/stderr" || fail "the window error should suggest a batch"
expect 1 "--batch 32 does not divide the sliding window 16" -- --model "$T/gemma" --output "$OUT" --context 64 \
    --batch 32
expect 1 "--split-rotate: --context 16 does not exceed the sliding window 16" -- --model "$T/gemma" --output "$OUT" \
    --context 16 --batch 8 --split-rotate
variant_g() { rm -rf "$T/$1" && cp -r "$T/gemma" "$T/$1"; }
variant_g allsliding && sed -i 's/"full_attention"/"sliding_attention"/g' "$T/allsliding/config.json"
expect 1 "needs at least one layer of each type" -- --model "$T/allsliding" --output "$OUT" --context 64 --batch 8

# the output folder
touch "$T/afile"
OUT=$T/afile/sub
expect 1 "is not a folder" -- --model "$T/good" --output "$OUT"
OUT=$T/afile
set +e; "$ANEMLL" convert --model "$T/good" --output "$OUT" >/dev/null 2>"$T/stderr"; st=$?; set -e
[ $st = 1 ] && grep -q "exists and is not a folder" "$T/stderr" || fail "an output that is a file"
if [ "$(id -u)" != 0 ]; then   # root writes anywhere
    mkdir "$T/ro" && chmod 555 "$T/ro"
    OUT=$T/ro/out
    expect 1 "is not writable" -- --model "$T/good" --output "$OUT"
    chmod 755 "$T/ro"
fi
echo "ok every bad input fails early, leaving nothing"

# --skip-check: missing tokenizer files become a warning
"$ANEMLL" convert --model "$T/notok" --output "$T/skip" --context 64 --batch 8 --skip-check >"$T/skip.log"
grep -q "warning: .*no tokenizer.json" "$T/skip.log" || fail "--skip-check warning"
[ -f "$T/skip/meta.yaml" ] && [ ! -e "$T/skip/tokenizer.json" ] || fail "--skip-check output"
echo "ok --skip-check"

# anemll chunks: the calculator agrees with convert's --chunk auto
out=$("$ANEMLL" chunks --model "$T/good" --lut 4)
grep -q "Recommended: --chunk 1 (LUT4, max 950 MiB per chunk)" <<<"$out" || fail "chunks: $out"
[ "$("$ANEMLL" chunks --model "$T/good" --lut 6 --max-chunk-mb 1 --auto)" = 1 ] || fail "chunks --auto"
"$MKMODEL" --arch llama --out "$T/wide" --hidden 1024 --intermediate 2048 --heads 8 --kv-heads 8 --head-dim 128 --layers 5 \
    --vocab 384 >/dev/null
n=$("$ANEMLL" chunks --model "$T/wide" --lut "" --max-chunk-mb 45 --auto)
[ "$n" = 3 ] || fail "chunks --auto for 5 fp16 layers of 20 MiB under 45 MiB: $n, expected 3"
"$ANEMLL" convert --model "$T/wide" --output "$T/wide.out" --context 64 --batch 8 --lut2 "" --chunk auto \
    --max-chunk-mb 45 --only 3 >"$T/wide.log"
grep -q "Auto-detected: --chunk 3" "$T/wide.log" || fail "convert --chunk auto: $(grep -i auto "$T/wide.log")"
for c in 1 2 3; do
    w=$(stat -c %s "$T/wide.out/llama_FFN_chunk_0${c}of03.mlpackage/Data/com.apple.CoreML/weights/weight.bin")
    [ "$w" -le $((45 << 20)) ] || fail "chunk $c is $w bytes, above --max-chunk-mb 45"
done
set +e; "$ANEMLL" chunks --model "$T/good" --lut 5 >/dev/null 2>&1; st=$?; set -e
[ $st = 2 ] || fail "chunks --lut 5 should be a usage error"
echo "ok anemll chunks"
