#!/bin/bash
# anemll preflight and anemll/utils/fp16_preflight.sh: the overflow refvector and a generated Gemma 3
# that overflows (reported, fixed by --fp16-scale auto), a llama that is fine, the report's keys,
# the default report path, exit statuses and bad input.
set -euo pipefail
: "${ANEMLL:?} ${MKMODEL:?} ${TEST_TMP:?}"
T=$TEST_TMP/preflight_cli
rm -rf "$T" && mkdir -p "$T"
REPO=$PWD
fail() { echo "FAIL: $*" >&2; exit 1; }
TAB=$'\t'

# run STATUS OUT CMD...: runs the command, stdout to OUT, and checks its exit status
run() {
    local want=$1 out=$2; shift 2
    set +e; "$@" >"$out" 2>"$out.err"; local got=$?; set -e
    [ "$got" = "$want" ] || { cat "$out" "$out.err" >&2; fail "'$*' exited $got, want $want"; }
}
# top-level report value (cJSON_Print puts each top-level key on a line starting with one tab)
val() { grep -m1 "^$TAB\"$1\":" "$2" | sed 's/^[^:]*:[[:space:]]*//; s/,$//'; }
has_keys() {
    local f=$1; shift
    for k in "$@"; do grep -q "^$TAB\"$k\":" "$f" || fail "$f: no top-level key '$k'"; done
}
ANEMLL_KEYS=(model_id total_params weight_max_abs weight_max_layer weights_exceed_fp16 bf16_works fp16_works
    fp16_to_fp32_works fp16_first_nan_layer fp16_overflow_layers ane_compatible compatibility_score issues
    recommendations clamp_sweep)
OUR_KEYS=(model_type prompt prompt_ids max_tokens fp16_scale runs embedding_peak residual_peaks residual_peak
    residual_peak_at first_overflow first_overflow_layer recommended_alpha fp16_scale_supported
    fp16_overflow_sites weight_max_abs_per_tensor thresholds definitions)
# alpha_between REPORT LO HI
alpha_between() {
    awk -v a="$(val recommended_alpha "$1")" -v lo="$2" -v hi="$3" 'BEGIN { exit !(a > lo && a < hi) }' \
        || fail "$1: recommended_alpha $(val recommended_alpha "$1") not in ($2, $3)"
}

# -- refvectors/fp16_overflow (no tokenizer: --tokens): the overflow HF reports, alpha = 50000 / 93171
ovf=$REPO/tests/data/refvectors/fp16_overflow
ids=$(grep '"prompt_ids"' "$ovf/expected.json" | sed 's/.*\[\(.*\)\].*/\1/; s/ //g')
run 1 "$T/ovf.out" "$ANEMLL" preflight --model "$ovf" --tokens "$ids" --max-tokens 12 --report "$T/ovf.json"
has_keys "$T/ovf.json" "${ANEMLL_KEYS[@]}" "${OUR_KEYS[@]}"
[ "$(val fp16_works "$T/ovf.json")" = false ] || fail "fp16_works"
[ "$(val ane_compatible "$T/ovf.json")" = false ] || fail "ane_compatible"
[ "$(val fp16_first_nan_layer "$T/ovf.json")" = '"layer 1 residual after attention"' ] || fail "first NaN"
[ "$(val first_overflow_layer "$T/ovf.json")" = 1 ] || fail "first_overflow_layer"
[ "$(val residual_peak_at "$T/ovf.json")" = '"layer 2 residual after attention"' ] || fail "residual_peak_at"
alpha_between "$T/ovf.json" 0.5366 0.5367
for c in 65000 60000 55000 50000 45000 40000 35000 30000 25000 20000; do
    grep -q "^$TAB$TAB\"$c\":" "$T/ovf.json" || fail "clamp_sweep has no $c"
done
for k in success clamped match_rate output; do
    [ "$(grep -c "^$TAB$TAB$TAB\"$k\":" "$T/ovf.json")" -ge 10 ] || fail "clamp_sweep entries lack $k"
done
grep -q "first layer beyond 65504: 1" "$T/ovf.out" || fail "summary: first layer"
grep -q "convert with --fp16-scale auto (alpha = 50000 / 93171 = 0.5366)" "$T/ovf.out" || fail "summary: advice"
grep -q "verdict: NOT fp16-compatible" "$T/ovf.out" || fail "summary: verdict"
# checked as converted with --fp16-scale auto: no overflow, every greedy token as float32's
run 0 "$T/ovf_auto.out" "$ANEMLL" preflight --model "$ovf" --tokens "$ids" --max-tokens 12 --fp16-scale auto \
    --no-sweep --report "$T/ovf_auto.json"
grep -q "^--fp16-scale auto: float32 residual peak 93171.0 at layer 2 residual after attention -> alpha 0.53664" \
    "$T/ovf_auto.out" || fail "auto line: $(head -1 "$T/ovf_auto.out")"
[ "$(val fp16_works "$T/ovf_auto.json")" = true ] && [ "$(val ane_compatible "$T/ovf_auto.json")" = true ] \
    || fail "scaled fp16_overflow is not compatible"
grep -q "^$TAB\"clamp_sweep\":" "$T/ovf_auto.json" && ! grep -q "^$TAB$TAB\"65000\":" "$T/ovf_auto.json" \
    || fail "--no-sweep still swept"
echo "ok fp16_overflow: overflow at layer 1, alpha $(val recommended_alpha "$T/ovf.json"), auto-scaled run compatible"

# -- a generated Gemma 3 built to overflow, prompt from its tokenizer
"$MKMODEL" --arch gemma3_text --out "$T/g" --post-norm-scale 12000 >/dev/null
run 1 "$T/g.out" "$ANEMLL" preflight --model "$T/g" --max-tokens 8 --report "$T/g.json"
has_keys "$T/g.json" "${ANEMLL_KEYS[@]}" "${OUR_KEYS[@]}"
[ "$(val prompt "$T/g.json")" = '"Explain quantum computing in simple terms."' ] || fail "default prompt"
[ "$(val fp16_works "$T/g.json")" = false ] || fail "gemma3 fp16 should overflow"
alpha_between "$T/g.json" 0 1
grep -A1 '"fp16_scaled":' "$T/g.json" | grep -q '"works":'"$TAB"'true' || fail "scaled run does not work"
run 0 "$T/g_auto.out" "$ANEMLL" preflight --model "$T/g" --max-tokens 8 --fp16-scale auto --report "$T/g_auto.json"
[ "$(val fp16_works "$T/g_auto.json")" = true ] || fail "auto-scaled gemma3 still overflows"
# a scale that is not enough: still not compatible
run 1 "$T/g_099.out" "$ANEMLL" preflight --model "$T/g" --max-tokens 8 --fp16-scale 0.99 --no-sweep --report "$T/g_099.json"
[ "$(val fp16_works "$T/g_099.json")" = false ] || fail "alpha 0.99 should not be enough"
echo "ok gemma3 --post-norm-scale 12000: alpha $(val recommended_alpha "$T/g.json"), --fp16-scale auto fixes it"

# -- a llama: compatible, alpha 1; scaling refused; the wrapper with the default report path
"$MKMODEL" --arch llama --out "$T/llama" >/dev/null
run 0 "$T/l.out" "$ANEMLL" preflight --model "$T/llama" --max-tokens 6 --report "$T/l.json"
has_keys "$T/l.json" "${ANEMLL_KEYS[@]}" "${OUR_KEYS[@]}"
[ "$(val ane_compatible "$T/l.json")" = true ] && [ "$(val compatibility_score "$T/l.json")" = 1 ] || fail "llama verdict"
[ "$(val recommended_alpha "$T/l.json")" = 1 ] && [ "$(val fp16_overflow_layers "$T/l.json")" = "[]" ] || fail "llama alpha"
run 1 "$T/l_auto.out" "$ANEMLL" preflight --model "$T/llama" --fp16-scale auto --report "$T/l_auto.json"
grep -q "only exact for Gemma 3" "$T/l_auto.out.err" || fail "llama --fp16-scale message"
[ ! -e "$T/l_auto.json" ] || fail "report written after an error"

mkdir -p "$T/repo/anemll/utils" "$T/repo/bin" "$T/work"
cp anemll/utils/fp16_preflight.sh "$T/repo/anemll/utils/"
ln -s "$ANEMLL" "$T/repo/bin/anemll"
ln -s "$T/repo/anemll/utils/fp16_preflight.sh" "$T/link.sh" # a symlinked script finds its own checkout
(cd "$T/work" && run 0 "$T/w.out" "$T/link.sh" --model "$T/llama" --no-sweep --max-tokens 3)
reports=("$T"/work/tests/dev/logs/fp16_preflight_*.json)
[ ${#reports[@]} = 1 ] && [ -f "${reports[0]}" ] || fail "no default report under tests/dev/logs"
[[ $(basename "${reports[0]}") =~ ^fp16_preflight_[0-9]{8}_[0-9]{6}\.json$ ]] || fail "report name ${reports[0]}"
has_keys "${reports[0]}" "${ANEMLL_KEYS[@]}"
grep -q "report: tests/dev/logs/fp16_preflight_" "$T/w.out" || fail "wrapper summary"
(cd "$T/work" && run 1 "$T/w2.out" "$T/repo/anemll/utils/fp16_preflight.sh" --model "$T/g" --no-sweep --max-tokens 3 \
    --report "$T/w2.json")
[ "$(val fp16_works "$T/w2.json")" = false ] || fail "wrapper passthrough"
(cd "$T/work" && run 2 "$T/w3.out" "$T/repo/anemll/utils/fp16_preflight.sh" --frobnicate)
rm "$T/repo/bin/anemll"
(cd "$T/work" && run 1 "$T/w4.out" "$T/repo/anemll/utils/fp16_preflight.sh" --model "$T/llama")
grep -q "bin/anemll not found" "$T/w4.out.err" || fail "wrapper without a binary"
echo "ok llama compatible (exit 0), wrapper: default report $(basename "${reports[0]}")"

# -- usage and bad input
run 0 "$T/h.out" "$ANEMLL" preflight --help
grep -q "usage: anemll preflight" "$T/h.out" || fail "--help"
run 2 "$T/u.out" "$ANEMLL" preflight
run 2 "$T/u.out" "$ANEMLL" preflight --model
run 2 "$T/u.out" "$ANEMLL" preflight --model "$T/llama" --frobnicate
run 2 "$T/u.out" "$ANEMLL" preflight --model "$T/llama" --max-tokens 0
run 2 "$T/u.out" "$ANEMLL" preflight --model "$T/llama" --max-tokens 5000
run 2 "$T/u.out" "$ANEMLL" preflight --model "$T/llama" --max-tokens x
run 2 "$T/u.out" "$ANEMLL" preflight --model "$T/llama" --tokens 1,x
run 2 "$T/u.out" "$ANEMLL" preflight --model "$T/llama" --tokens 1 --prompt hi
run 2 "$T/u.out" "$ANEMLL" preflight --model "$T/llama" --fp16-scale 0
run 2 "$T/u.out" "$ANEMLL" preflight --model "$T/llama" --fp16-scale 1.5
run 2 "$T/u.out" "$ANEMLL" preflight --model "$T/llama" --report ""
run 1 "$T/u.out" "$ANEMLL" preflight --model "$T/nonexistent" --report "$T/x.json"
grep -q "config.json" "$T/u.out.err" || fail "missing model message"
run 1 "$T/u.out" "$ANEMLL" preflight --model "$ovf" --report "$T/x.json"
grep -q "tokenizer.json" "$T/u.out.err" && grep -q -- "--tokens" "$T/u.out.err" || fail "no-tokenizer message"
run 1 "$T/u.out" "$ANEMLL" preflight --model "$ovf" --tokens 2,320 --report "$T/x.json"
grep -q "outside the vocabulary" "$T/u.out.err" || fail "bad token id message"
touch "$T/afile"
run 1 "$T/u.out" "$ANEMLL" preflight --model "$T/llama" --no-sweep --max-tokens 1 --report "$T/afile/sub/r.json"
grep -q "afile/sub/r.json" "$T/u.out.err" || fail "unwritable report message"
[ ! -e "$T/x.json" ] || fail "a report was written after an error"
echo "ok usage and errors"
