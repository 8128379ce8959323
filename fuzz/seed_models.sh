#!/bin/bash
# seed_models.sh - the seed_* files of fuzz/corpus/{safetensors,index,config,tokenizer}, from tiny
# checkpoints written by anemll-mkmodel (every family, every dtype, biases, rope scaling,
# sliding windows, shards) and the small test tokenizers. Run by `make fuzz-corpus`;
# hand-written seeds (hand_*) and regression inputs (regress_*) are committed as they are.
#   MKMODEL=bin/anemll-mkmodel fuzz/seed_models.sh fuzz/corpus
set -euo pipefail
: "${MKMODEL:?set MKMODEL to anemll-mkmodel}"
OUT=$1
HERE=$(cd "$(dirname "$0")" && pwd)
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
for d in safetensors index config tokenizer; do mkdir -p "$OUT/$d" && rm -f "$OUT/$d"/seed_*; done

TINY=(--hidden 16 --layers 2 --heads 2 --kv-heads 1 --head-dim 8 --intermediate 32 --vocab 320)
mk() { local name=$1; shift; "$MKMODEL" --out "$T/$name" --threads 1 "${TINY[@]}" "$@" >/dev/null; }
mk llama --arch llama --rope-scaling llama3:8,1,4,64
mk llama_f32 --arch llama --dtype f32 --untie --mlp-bias
mk qwen2 --arch qwen2 --dtype f16
mk qwen3 --arch qwen3 --sliding-window 4
mk gemma3 --arch gemma3_text --layer-types s,f
mk gemma3mm --arch gemma3
mk sharded --arch llama --untie --shards 2 --layers 1
for m in llama llama_f32 qwen2 qwen3 gemma3 gemma3mm; do
    cp "$T/$m/model.safetensors" "$OUT/safetensors/seed_$m"
    cp "$T/$m/config.json" "$OUT/config/seed_$m"
done
cp "$T/sharded/config.json" "$OUT/config/seed_sharded"
"$HERE/frame.sh" index "$OUT/index/seed_sharded" "$T/sharded"

TEXT=$'Hello world <|eot_id|> 123  tabs\tand\nnewlines w\xc3\xb6rld \xe4\xb8\xad\xe6\x96\x87 !!'
"$HERE/frame.sh" tokenizer "$OUT/tokenizer/seed_synth" "$T/llama/tokenizer.json" "$TEXT"
for t in mini_bytelevel mini_spm; do
    "$HERE/frame.sh" tokenizer "$OUT/tokenizer/seed_$t" "$HERE/../tests/data/tokenizer/$t/tokenizer.json" "$TEXT"
done
du -sh "$OUT"/{safetensors,index,config,tokenizer}
