#!/bin/bash
# make demo: make a tiny Llama-style checkpoint (random weights, built-in tokenizer), convert it
# with the seed's script anemll/utils/convert_model.sh, and chat with it once the CPU runtime
# (`anemll chat`) exists. Everything goes under $DEMO_DIR (default build/demo).
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
echo "== 3. chat"
if bin/anemll chat --help >/dev/null 2>&1; then
    bin/anemll chat --meta "$DEMO_DIR/converted/meta.yaml" --prompt "Hello" --max-tokens 24
else
    echo "anemll chat arrives with the CPU runtime; the converted model is in $DEMO_DIR/converted"
    echo "(ANEMLL on a Mac: python3 tests/chat.py --meta $DEMO_DIR/converted/meta.yaml)"
fi
