#!/bin/bash
# anemll convert (and the anemll/utils/convert_model.sh wrapper) on generated tiny checkpoints of
# every supported family: llama, qwen3, qwen2 and a DeepSeek-R1-Distill-style llama (llama3 RoPE
# scaling, untied, --prefix DeepSeek). Every package of the seed's output list is written and
# nothing else; `anemll inspect` shows the documented interface (docs/parts.md); meta.yaml has
# the documented keys and values; tokenizer files are copied unchanged.
set -euo pipefail
: "${ANEMLL:?} ${MKMODEL:?} ${TEST_TMP:?}"
T=$TEST_TMP/convert_families
rm -rf "$T" && mkdir -p "$T"
fail() { echo "FAIL: $*" >&2; exit 1; }
has() { grep -qF -- "$2" <<<"$1" || fail "$3: expected '$2' in:
$1"; }
WRAPPER=$PWD/anemll/utils/convert_model.sh

# meta.yaml parameter value (plain scalars and flow lists, as convert writes them)
param() { sed -n "s/^    $2: //p" "$1/meta.yaml"; }

# A full YAML parse where PyYAML exists (the unit test parses with libyaml in any case).
yaml_check() {
    if python3 -c 'import yaml' 2>/dev/null; then
        python3 - "$1/meta.yaml" <<'EOF' || fail "meta.yaml of $1 does not load"
import sys, yaml
m = yaml.safe_load(open(sys.argv[1]))
p = m["model_info"]["parameters"]
need = ["context_length", "batch_size", "lut_embeddings", "lut_ffn", "lut_lmhead", "num_chunks", "model_prefix",
        "embeddings", "lm_head", "ffn", "split_lm_head", "vocab_size", "lm_head_chunk_sizes", "prefill_dynamic_slice"]
missing = [k for k in need if k not in p]
assert not missing, missing
assert sum(p["lm_head_chunk_sizes"]) == p["vocab_size"]
assert len(p["lm_head_chunk_sizes"]) == p["split_lm_head"]
EOF
    fi
}

# convert NAME ARCH MKMODEL-OPTIONS -- CONVERT-OPTIONS
convert() {
    local name=$1 arch=$2; shift 2
    local mk=()
    while [ "$1" != "--" ]; do mk+=("$1"); shift; done
    shift
    "$MKMODEL" --arch "$arch" --out "$T/$name" "${mk[@]}" >/dev/null
    "$ANEMLL" convert --model "$T/$name" --output "$T/$name.out" "$@" >"$T/$name.log" 2>&1 ||
        { cat "$T/$name.log"; fail "$name: convert failed"; }
}

# The output folder holds exactly these entries (sorted names).
expect_files() {
    local dir=$1; shift
    local got want
    got=$(cd "$dir" && ls -A | sort | tr '\n' ' ')
    want=$(printf '%s\n' "$@" | sort | tr '\n' ' ')
    [ "$got" = "$want" ] || fail "$dir holds: $got
expected: $want"
}

check_ffn_pf() { # package hidden layers kv_heads state_length head_dim context batch first|mid|last
    local p=$1 h=$2 l=$3 kv=$4 st=$5 hd=$6 ctx=$7 b=$8 where=$9 out
    out=$("$ANEMLL" inspect "$p")
    has "$out" "functions      2: infer (default), prefill" "$p"
    has "$out" "hidden_states                fp16   [1, 1, $h]" "$p"
    has "$out" "hidden_states                fp16   [1, $b, $h]" "$p"
    has "$out" "position_ids                 int32  [1]" "$p"
    has "$out" "position_ids                 int32  [$b]" "$p"
    has "$out" "causal_mask                  fp16   [1, 1, 1, $ctx]" "$p"
    has "$out" "causal_mask                  fp16   [1, 1, $b, $ctx]" "$p"
    has "$out" "current_pos                  int32  [1]" "$p"
    [ "$(grep -c "model_model_kv_cache_0       fp16   \[$((2 * l)), $kv, $st, $hd\]" <<<"$out")" = 2 ] ||
        fail "$p: both functions should declare the state ($((2 * l)), $kv, $st, $hd)"
    has "$out" "output_hidden_states         fp16   [1, 1, $h]" "$p"
    if [ "$where" = last ]; then
        [ "$(grep -c "output_hidden_states         fp16   \[1, 1, $h\]" <<<"$out")" = 2 ] ||
            fail "$p: the last chunk's prefill should return (1, 1, $h)"
    else
        has "$out" "output_hidden_states         fp16   [1, $b, $h]" "$p"
    fi
    has "$out" "com.anemll.batch_size = $b" "$p"
}

# ---- llama: defaults except a small context; 2 chunks, LUT4 FFN, LUT6 head --------------------
convert llama llama --vocab 512 -- --context 64 --batch 8
O=$T/llama.out
expect_files "$O" meta.yaml tokenizer.json tokenizer_config.json generation_config.json \
    llama_embeddings.mlpackage llama_lm_head_lut6.mlpackage \
    llama_FFN_lut4_chunk_01of02.mlpackage llama_FFN_lut4_chunk_02of02.mlpackage \
    llama_prefill_lut4_chunk_01of02.mlpackage llama_prefill_lut4_chunk_02of02.mlpackage \
    llama_FFN_PF_lut4_chunk_01of02.mlpackage llama_FFN_PF_lut4_chunk_02of02.mlpackage
check_ffn_pf "$O/llama_FFN_PF_lut4_chunk_01of02.mlpackage" 64 2 2 512 16 64 8 first
check_ffn_pf "$O/llama_FFN_PF_lut4_chunk_02of02.mlpackage" 64 2 2 512 16 64 8 last
out=$("$ANEMLL" inspect "$O/llama_FFN_PF_lut4_chunk_02of02.mlpackage")
has "$out" "unique      0 blobs, 0 bytes only in infer" llama
has "$out" "unique      0 blobs, 0 bytes only in prefill" llama
out=$("$ANEMLL" inspect "$O/llama_FFN_PF_lut4_chunk_01of02.mlpackage")
has "$out" "com.anemll.lut_bits = 4" llama
has "$out" "constexpr_lut_to_dense 7" llama     # q k v o gate up down of one layer
out=$("$ANEMLL" inspect "$O/llama_embeddings.mlpackage")
has "$out" "functions      1: main  (single-function description)" embeddings
has "$out" "input_ids                    int32  [1, ?]  enumerated: [1, 1] (default) [1, 8]" embeddings
has "$out" "hidden_states                fp16   [1, ?, 64]" embeddings
has "$out" "gather 1" embeddings
out=$("$ANEMLL" inspect "$O/llama_lm_head_lut6.mlpackage")
has "$out" "hidden_states                fp16   [1, 1, 64]" lm_head
for i in 1 2 3 4 5 6 7 8; do has "$out" "logits$i                      fp16   [1, 1, 64]" lm_head; done
has "$out" "com.anemll.lm_head_chunk_sizes = 64,64,64,64,64,64,64,64" lm_head
has "$out" "com.anemll.vocab_size = 512" lm_head
has "$out" "com.anemll.lut_bits = 6" lm_head
[ "$(param "$O" ffn)" = llama_FFN_PF_lut4_chunk_01of02.mlmodelc ] || fail "llama meta ffn"
[ "$(param "$O" split_lm_head)" = 8 ] || fail "llama split_lm_head"
[ "$(param "$O" lm_head_chunk_sizes)" = "[64, 64, 64, 64, 64, 64, 64, 64]" ] || fail "llama chunk sizes"
[ "$(param "$O" lut_embeddings)" = none ] && [ "$(param "$O" lut_ffn)" = 4 ] && [ "$(param "$O" lut_lmhead)" = 6 ] ||
    fail "llama meta LUT keys"
yaml_check "$O"
cmp -s "$T/llama/tokenizer.json" "$O/tokenizer.json" || fail "tokenizer.json not copied unchanged"
log=$(cat "$T/llama.log")
has "$log" "Step 8: Test Conversion" llama
has "$log" "4 packages read back" llama
has "$log" "LUT SNR" llama
echo "ok llama"

# ---- qwen3 through the wrapper: --chunk auto, --argmax, per-tensor LUT6 FFN ---------------------
"$MKMODEL" --arch qwen3 --out "$T/qwen3" --layers 3 --vocab 512 >/dev/null
ANEMLL=$ANEMLL "$WRAPPER" --model "$T/qwen3" --output "$T/qwen3.out" --context 128 --batch 16 --chunk auto \
    --lut2 6,0 --argmax >"$T/qwen3.log" 2>&1 || { cat "$T/qwen3.log"; fail "qwen3: convert_model.sh failed"; }
O=$T/qwen3.out
has "$(cat "$T/qwen3.log")" "Auto-detected: --chunk 1" qwen3
expect_files "$O" meta.yaml tokenizer.json tokenizer_config.json generation_config.json config.json \
    qwen_embeddings.mlpackage qwen_lm_head_lut6.mlpackage qwen_FFN_lut6_chunk_01of01.mlpackage \
    qwen_prefill_lut6_chunk_01of01.mlpackage qwen_FFN_PF_lut6_chunk_01of01.mlpackage
check_ffn_pf "$O/qwen_FFN_PF_lut6_chunk_01of01.mlpackage" 64 3 2 256 32 128 16 last
out=$("$ANEMLL" inspect "$O/qwen_lm_head_lut6.mlpackage")
has "$out" "argmax_idx                   int32  [16]" qwen3
has "$out" "argmax_val                   fp16   [16]" qwen3
has "$out" "com.anemll.argmax_in_model = true" qwen3
grep -q logits1 <<<"$out" && fail "qwen3: argmax head still has logits outputs"
[ "$(param "$O" argmax_in_model)" = true ] || fail "qwen3 meta argmax_in_model"
[ "$(param "$O" split_lm_head)" = 16 ] || fail "qwen3 split_lm_head"
[ "$(param "$O" model_prefix)" = qwen ] || fail "qwen3 prefix"
grep -q '"tokenizer_class": "Qwen2Tokenizer"' "$O/config.json" && grep -q '"model_type": "qwen3"' "$O/config.json" ||
    fail "qwen3: config.json for the tokenizer"
yaml_check "$O"
echo "ok qwen3"

# ---- qwen2 (q/k/v biases): fp16 FFN, LUT embeddings, grouped LUT head, 3 chunks -----------------
convert qwen2 qwen2 --layers 3 --vocab 512 -- --context 64 --batch 8 --chunk 3 --lut1 6 --lut2 "" --lut3 4,4
O=$T/qwen2.out
expect_files "$O" meta.yaml tokenizer.json tokenizer_config.json generation_config.json config.json \
    qwen25_embeddings_lut6.mlpackage qwen25_lm_head_lut4.mlpackage \
    qwen25_FFN_chunk_01of03.mlpackage qwen25_FFN_chunk_02of03.mlpackage qwen25_FFN_chunk_03of03.mlpackage \
    qwen25_prefill_chunk_01of03.mlpackage qwen25_prefill_chunk_02of03.mlpackage \
    qwen25_prefill_chunk_03of03.mlpackage qwen25_FFN_PF_chunk_01of03.mlpackage \
    qwen25_FFN_PF_chunk_02of03.mlpackage qwen25_FFN_PF_chunk_03of03.mlpackage
for c in 1 2; do check_ffn_pf "$O/qwen25_FFN_PF_chunk_0${c}of03.mlpackage" 64 3 2 256 16 64 8 mid; done
check_ffn_pf "$O/qwen25_FFN_PF_chunk_03of03.mlpackage" 64 3 2 256 16 64 8 last
out=$("$ANEMLL" inspect "$O/qwen25_FFN_PF_chunk_02of03.mlpackage")
grep -q constexpr_lut_to_dense <<<"$out" && fail "qwen2: --lut2 '' should leave the FFN in fp16"
grep -q "com.anemll.lut_bits" <<<"$out" && fail "qwen2: fp16 chunks have no lut_bits"
has "$(cat "$T/qwen2.log")" "qwen25_embeddings_lut6.mlpackage" qwen2
has "$("$ANEMLL" inspect "$O/qwen25_embeddings_lut6.mlpackage")" "constexpr_lut_to_dense 1" qwen2
[ "$(param "$O" lut_ffn)" = none ] && [ "$(param "$O" lut_embeddings)" = 6 ] && [ "$(param "$O" lut_lmhead)" = 4 ] &&
    [ "$(param "$O" lut_lmhead_per_channel)" = 4 ] || fail "qwen2 meta LUT keys"
[ "$(param "$O" embeddings)" = qwen25_embeddings_lut6.mlmodelc ] || fail "qwen2 meta embeddings"
grep -q '"model_type": "qwen2"' "$O/config.json" || fail "qwen2: config.json for the tokenizer"
yaml_check "$O"
echo "ok qwen2"

# ---- DeepSeek-R1-Distill-style llama: llama3 RoPE scaling, untied head, --prefix DeepSeek --------
convert deepseek llama --untie --layers 3 --vocab 384 --rope-scaling llama3:8,1,4,64 -- \
    --context 64 --batch 16 --chunk 2 --lut2 6 --lut3 6 --prefix DeepSeek --skip-anemll-dedup
O=$T/deepseek.out
for c in 01 02; do
    [ -d "$O/DeepSeek_FFN_PF_lut6_chunk_${c}of02.mlpackage" ] || fail "deepseek: chunk $c missing"
done
[ -d "$O/DeepSeek_embeddings.mlpackage" ] && [ -d "$O/DeepSeek_lm_head_lut6.mlpackage" ] || fail "deepseek parts"
out=$("$ANEMLL" inspect "$O/DeepSeek_FFN_PF_lut6_chunk_01of02.mlpackage")
has "$out" "shared      0 blobs, 0 bytes (used by more than one function)" "deepseek --skip-anemll-dedup"
has "$out" "model_model_kv_cache_0       fp16   [6, 2, 512, 16]" deepseek
[ "$(param "$O" model_prefix)" = DeepSeek ] || fail "deepseek prefix in meta.yaml"
[ "$(param "$O" lm_head)" = DeepSeek_lm_head_lut6.mlmodelc ] || fail "deepseek meta lm_head"
# layers 0-1 in chunk 1, layer 2 in chunk 2 (the first chunk takes the extra layer)
has "$(cat "$T/deepseek.log")" "chunk  1   layers 0-1 (2)" deepseek
has "$(cat "$T/deepseek.log")" "chunk  2   layers 2-2 (1)" deepseek
yaml_check "$O"
echo "ok deepseek"
