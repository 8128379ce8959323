#!/bin/bash
# make demo: make a tiny Llama-style checkpoint (random weights, built-in tokenizer), convert it
# with the seed's script anemll/utils/convert_model.sh, chat with it on the CPU (`anemll chat`) and
# print the verify report (`anemll verify`). Everything goes under $DEMO_DIR (default build/demo).
set -euo pipefail
cd "$(dirname "$0")/.."
DEMO_DIR=${DEMO_DIR:-build/demo}
[ -x bin/anemll ] && [ -x bin/anemll-mkmodel ] || { echo "error: run 'make' first" >&2; exit 1; }
mkdir -p "$DEMO_DIR"

echo "== 1. a tiny random-weight Llama checkpoint in Hugging Face layout"
bin/anemll-mkmodel --arch llama --out "$DEMO_DIR/model" --layers 4 --force

echo
echo "== 2. convert it: ./anemll/utils/convert_model.sh --model $DEMO_DIR/model --output $DEMO_DIR/converted"
rm -rf "$DEMO_DIR/converted"
ANEMLL=$PWD/bin/anemll ./anemll/utils/convert_model.sh --model "$DEMO_DIR/model" --output "$DEMO_DIR/converted" \
    --context 256 --batch 32 --chunk 2 --lut2 6 --lut3 6

echo
echo "== 3. chat with it on the CPU: bin/anemll chat --meta $DEMO_DIR/converted/meta.yaml --prompt Hello"
bin/anemll chat --meta "$DEMO_DIR/converted/meta.yaml" --prompt "Hello" --max-tokens 24
echo "(random weights: the reply is noise; on a Mac: python3 tests/chat.py --meta $DEMO_DIR/converted/meta.yaml)"

echo
echo "== 4. verify the packages against the reference forward pass of the checkpoint"
bin/anemll verify --meta "$DEMO_DIR/converted/meta.yaml" --model "$DEMO_DIR/model" --max-new 32

echo
echo "== 5. the same against the packages' own dequantized LUT weights (the conversion's error alone)"
bin/anemll verify --meta "$DEMO_DIR/converted/meta.yaml" --model "$DEMO_DIR/model" --max-new 32 --dequantized
