#!/bin/bash
# Gemma 3 through the CLI: tiny gemma3_text and gemma3 (multimodal wrapper) checkpoints with a
# sliding window of 16 and a context of 64, so that verify runs far beyond the window.
#  - fp16, 2 chunks (the second without a global layer), linear rope_scaling on the global layers:
#    the rotate packages are written, step 8 passes, `anemll verify` passes with the same greedy
#    token wherever the reference is decisive and cosine >= 0.9999, and its JSON shows prefill,
#    prefill_rotate and infer_rotate ran (a 36-token prompt, longer than window + batch);
#  - the window matters: packages converted as if the window were 64 fail against the reference;
#  - meta.yaml keys, `anemll inspect` shows the four functions and both states;
#  - --split-rotate: two files per chunk, pf / split_rotate in meta.yaml, and verify reports the
#    same tokens and figures as the four-function packages;
#  - the multimodal wrapper, 1 chunk: LUT6 passes the default thresholds (and cosine >= 0.999
#    against its own dequantized weights), --argmax gives the logits mode's tokens;
#  - a checkpoint whose residual stream overflows fp16: the preflight reports it, the unscaled
#    conversion fails verify (inf/NaN logits), --fp16-scale auto prints its measurement and
#    passes verify.
set -euo pipefail
: "${ANEMLL:?} ${MKMODEL:?} ${TEST_TMP:?}"
T=$TEST_TMP/convert_gemma
rm -rf "$T" && mkdir -p "$T"
fail() { echo "FAIL: $*" >&2; exit 1; }
has() { grep -qF -- "$2" <<<"$1" || fail "$3: expected '$2' in:
$1"; }
json() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }

convert() {   # convert NAME MODEL OPTIONS...
    local name=$1 model=$2; shift 2
    "$ANEMLL" convert --model "$T/$model" --output "$T/$name" --context 64 --batch 8 --threads 1 "$@" \
        >"$T/$name.log" 2>&1 || fail "convert $name: $(tail -20 "$T/$name.log")"
}
verify_json() {   # verify_json NAME MODEL OPTIONS...
    local name=$1 model=$2; shift 2
    "$ANEMLL" verify --meta "$T/$name/meta.yaml" --model "$T/$model" --tokens "$PROMPT" --json "$@"
}

"$MKMODEL" --arch gemma3_text --out "$T/text" --sliding-window 16 --layers 5 --layer-types s,s,f,s,s \
    --rope-scaling linear:2 >/dev/null
"$MKMODEL" --arch gemma3 --out "$T/mm" --sliding-window 16 --layers 3 --layer-types s,f,s >/dev/null
PROMPT=$(seq -s, 5 7 250)   # 36 tokens: prefill at 0, 8; prefill_rotate at 16, 24; infer_rotate from 32

# -- gemma3_text fp16, 2 chunks
convert text_fp16 text --chunk 2 --lut2 "" --lut3 ""
log=$(cat "$T/text_fp16.log")
has "$log" "sliding window 16: 4 local layers (cache of 16 positions), 1 global layers (64 positions); functions infer, prefill, infer_rotate, prefill_rotate" "plan"
for f in FFN FFN_rotate prefill prefill_rotate FFN_PF; do
    for c in 01 02; do [ -d "$T/text_fp16/gemma3_${f}_chunk_${c}of02.mlpackage" ] || fail "no gemma3_${f}_chunk_${c}of02"; done
done
has "$log" "  PASS" "step 8 verdict"
has "$log" "prefill_rotate 1" "step 8 runs the rotate functions"
meta=$(cat "$T/text_fp16/meta.yaml")
has "$meta" "    model_prefix: gemma3" "meta prefix"
has "$meta" "    ffn: gemma3_FFN_PF_chunk_01of02.mlmodelc" "meta ffn"
has "$meta" "    split_lm_head: 16" "meta split_lm_head"
has "$meta" "    sliding_window: 16" "meta sliding_window"
has "$meta" "  architecture: gemma3_text" "meta architecture"
grep -q "split_rotate: true\|^    pf:" "$T/text_fp16/meta.yaml" && fail "split_rotate/pf without --split-rotate"
out=$(verify_json text_fp16 text --max-new 24 --min-agreement 0.8 --min-cosine 0.9999) || fail "fp16 verify failed: $out"
[ "$(json "d['pass'] and d['agree_decisive'] == d['decisive'] >= 21 and d['cosine_min'] >= 0.9999" <<<"$out")" = True ] ||
    fail "fp16 figures: $out"
[ "$(json "d['functions']['prefill'] == 2 and d['functions']['prefill_rotate'] == 2 and d['functions']['infer_rotate'] == 3 + 24 and d['functions']['infer'] == 0" <<<"$out")" = True ] ||
    fail "function selection: $out"
echo "gemma3_text fp16: agreement $(json "d['agree']" <<<"$out")/24 ($(json "d['agree_decisive']" <<<"$out")/$(json "d['decisive']" <<<"$out") decisive), cosine min $(json "d['cosine_min']" <<<"$out"), functions $(json "d['functions']" <<<"$out")"
# over 70 positions: a short prompt crosses the window in decode, the context shifts and re-prefills
out=$("$ANEMLL" verify --meta "$T/text_fp16/meta.yaml" --model "$T/text" --tokens 5,12,19,26,33 --max-new 70 --json \
    --min-cosine 0.9999) || fail "long fp16 verify failed: $out"
[ "$(json "d['shifts'] >= 1 and d['agree_decisive'] == d['decisive'] and d['functions']['prefill_rotate'] > 0" <<<"$out")" = True ] ||
    fail "long run: $out"
# generate --stats counts the function runs (the last prompt token runs once, in the first step)
"$ANEMLL" generate --meta "$T/text_fp16/meta.yaml" --tokens "$PROMPT" --max-new 8 --stats >/dev/null 2>"$T/gen.err"
grep -q "functions run: infer 0 prefill 2 infer_rotate 11 prefill_rotate 2" "$T/gen.err" || fail "stats: $(cat "$T/gen.err")"

# -- the window matters: the same weights converted with window 64 (no rotation, every key visible)
cp -r "$T/text" "$T/text_w64"
sed -i 's/"sliding_window":\t16/"sliding_window":\t64/' "$T/text_w64/config.json"
convert text_w64 text_w64 --chunk 2 --lut2 "" --lut3 ""
set +e
out=$(verify_json text_w64 text --max-new 24)
rc=$?
set -e
[ $rc -eq 1 ] || fail "packages without the window passed against the windowed reference: $out"
echo "window ignored: cosine mean $(json "d['cosine_mean']" <<<"$out") (fails, as it should)"

# -- the interface
insp=$("$ANEMLL" inspect "$T/text_fp16/gemma3_FFN_PF_chunk_02of02.mlpackage")
has "$insp" "functions      4: infer (default), infer_rotate, prefill, prefill_rotate" "inspect functions"
has "$insp" "model_model_kv_cache_local   fp16   [8, 2, 16, 32]" "inspect local state"
has "$insp" "model_model_kv_cache_global  fp16   [2, 2, 64, 32]" "inspect global state"
has "$insp" "causal_mask                  fp16   [1, 1, 8, 64]" "inspect prefill mask"

# -- --split-rotate: two files per chunk, the same results
convert text_split text --chunk 2 --lut2 "" --lut3 "" --split-rotate
for c in 01 02; do
    insp=$("$ANEMLL" inspect "$T/text_split/gemma3_FFN_PF_chunk_${c}of02_rot.mlpackage")
    has "$insp" "functions      2: infer_rotate (default), prefill_rotate" "_rot functions"
    insp=$("$ANEMLL" inspect "$T/text_split/gemma3_FFN_PF_chunk_${c}of02.mlpackage")
    has "$insp" "functions      2: infer (default), prefill" "split main functions"
done
meta=$(cat "$T/text_split/meta.yaml")
has "$meta" "    pf: gemma3_FFN_PF_chunk_01of02_rot.mlmodelc" "meta pf"
has "$meta" "    split_rotate: true" "meta split_rotate"
a=$(verify_json text_fp16 text --max-new 30)
b=$(verify_json text_split text --max-new 30)
python3 - "$a" "$b" <<'EOF' || fail "split-rotate differs from four functions: $a / $b"
import json, sys
a, b = (json.loads(x) for x in sys.argv[1:])
for k in ("prefill_tps", "decode_tps"):
    a.pop(k), b.pop(k)
assert a == b and a["functions"]["prefill_rotate"] > 0, (a, b)
EOF
echo "split-rotate: the same tokens and figures as the four-function packages"

# -- multimodal wrapper, 1 chunk: LUT6 and argmax
convert mm_lut6 mm --chunk 1 --lut2 6,4 --lut3 6,4
out=$(verify_json mm_lut6 mm --max-new 32) || fail "LUT6 verify failed: $out"
[ "$(json "d['cosine_mean'] < 0.99999 and d['functions']['prefill_rotate'] > 0" <<<"$out")" = True ] || fail "LUT6: $out"
out=$(verify_json mm_lut6 mm --max-new 32 --dequantized --min-cosine 0.999 2>/dev/null) || fail "LUT6 dequantized: $out"
echo "gemma3 LUT6: agreement $(json "d['agreement']" <<<"$out") against its dequantized weights, cosine min $(json "d['cosine_min']" <<<"$out")"
convert mm_fp16 mm --chunk 1 --lut2 "" --lut3 ""
convert mm_argmax mm --chunk 1 --lut2 "" --lut3 "" --argmax
has "$(cat "$T/mm_argmax/meta.yaml")" "    argmax_in_model: true" "meta argmax"
a=$("$ANEMLL" generate --meta "$T/mm_fp16/meta.yaml" --tokens "$PROMPT" --max-new 70)
b=$("$ANEMLL" generate --meta "$T/mm_argmax/meta.yaml" --tokens "$PROMPT" --max-new 70)
[ "$a" = "$b" ] || fail "argmax tokens differ from logits tokens:
$a
$b"

# -- fp16 overflow: reported, breaks the unscaled conversion, fixed by --fp16-scale auto
"$MKMODEL" --arch gemma3_text --out "$T/ovf" --sliding-window 16 --layers 4 --layer-types s,f,s,s \
    --post-norm-scale 12000 >/dev/null
set +e
"$ANEMLL" preflight --model "$T/ovf" --max-tokens 8 --no-sweep --report "$T/ovf.json" >"$T/ovf.pre" 2>&1
rc=$?
set -e
[ $rc -eq 1 ] || fail "preflight of the overflowing model exited $rc"
grep -q "verdict: NOT fp16-compatible" "$T/ovf.pre" || fail "preflight verdict: $(cat "$T/ovf.pre")"
grep -q "convert with --fp16-scale auto" "$T/ovf.pre" || fail "preflight advice: $(cat "$T/ovf.pre")"
convert ovf_plain ovf --chunk 2 --lut2 "" --lut3 ""
has "$(cat "$T/ovf_plain.log")" "inf/NaN logits" "step 8 sees the overflow"
set +e
out=$(verify_json ovf_plain ovf --max-new 16)
rc=$?
set -e
[ $rc -eq 1 ] && [ "$(json "d['nonfinite'] > 0" <<<"$out")" = True ] || fail "unscaled overflow passed verify: $out"
convert ovf_auto ovf --chunk 2 --lut2 "" --lut3 "" --fp16-scale auto
log=$(cat "$T/ovf_auto.log")
has "$log" "--fp16-scale auto: float32 residual peak" "auto measurement"
has "$log" "--fp16-scale auto: alpha = 50000 / " "auto alpha"
grep -q "^# fp16_scale: 0\.[0-9]" "$T/ovf_auto/meta.yaml" || fail "meta fp16_scale comment"
out=$(verify_json ovf_auto ovf --max-new 32 --min-cosine 0.9999) || fail "scaled verify failed: $out"
[ "$(json "d['nonfinite'] == 0 and d['agree_decisive'] == d['decisive']" <<<"$out")" = True ] || fail "scaled: $out"
echo "fp16 overflow: unscaled fails verify, --fp16-scale auto ($(grep -o 'alpha = 50000 / [0-9.]* = [0-9.]*' <<<"$log")) passes with cosine min $(json "d['cosine_min']" <<<"$out")"
echo "ok"
