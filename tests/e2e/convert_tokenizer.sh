#!/bin/bash
# anemll convert with the real Llama 3 and Qwen3 tokenizers ($SHARED/tokenizers): full-size
# vocabularies (128256 and 151936 rows) through the embeddings and the LM head,
# tokenizer files copied byte for byte, meta.yaml split sizes summing to the vocabulary.
# Skips when $SHARED is absent, unless REQUIRE_SHARED=1.
set -euo pipefail
: "${ANEMLL:?} ${MKMODEL:?} ${TEST_TMP:?}"
T=$TEST_TMP/convert_tokenizer
rm -rf "$T" && mkdir -p "$T"
fail() { echo "FAIL: $*" >&2; exit 1; }
TOK=${SHARED:-../shared}/tokenizers
if [ ! -f "$TOK/llama3/tokenizer.json" ] || [ ! -f "$TOK/qwen3/tokenizer.json" ]; then
    [ "${REQUIRE_SHARED:-0}" = 1 ] && fail "no tokenizers in $TOK"
    echo "skip: no $TOK"
    exit 0
fi
param() { sed -n "s/^    $2: //p" "$1/meta.yaml"; }

# the real models' vocab sizes (Qwen3 pads its 151669 tokens to 151936)
# (the LM head: LUT4 for llama, fp16 for qwen3; k-means over a 128k-row head is slow under ASan)
for fam in llama3:llama:128256:4,16 qwen3:qwen3:151936:; do
    IFS=: read -r tok arch vocab lut3 <<<"$fam"
    "$MKMODEL" --arch "$arch" --out "$T/$tok" --tokenizer "$TOK/$tok" --vocab "$vocab" >/dev/null
    "$ANEMLL" convert --model "$T/$tok" --output "$T/$tok.out" --context 64 --batch 8 --chunk 1 \
        --lut3 "$lut3" >"$T/$tok.log" ||
        { cat "$T/$tok.log"; fail "$tok: convert failed"; }
    O=$T/$tok.out
    for f in tokenizer.json tokenizer_config.json; do
        cmp -s "$TOK/$tok/$f" "$O/$f" || fail "$tok: $f not copied unchanged"
    done
    [ "$(param "$O" vocab_size)" = "$vocab" ] || fail "$tok: vocab_size $(param "$O" vocab_size), config $vocab"
    sum=$(param "$O" lm_head_chunk_sizes | tr -d '[] ' | tr ',' '+' | bc)
    [ "$sum" = "$vocab" ] || fail "$tok: lm_head_chunk_sizes sum to $sum, vocab $vocab"
    head=$( [ $arch = llama ] && echo llama_lm_head_lut4 || echo qwen_lm_head )
    out=$("$ANEMLL" inspect "$O/$head.mlpackage")
    grep -q "com.anemll.vocab_size = $vocab" <<<"$out" || fail "$tok: LM head vocab_size"
    grep -q "3 packages read back" "$T/$tok.log" || fail "$tok: step 8"
    echo "ok $tok (vocab $vocab)"
done
