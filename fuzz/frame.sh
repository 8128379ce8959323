#!/bin/bash
# frame.sh - writes fuzz inputs for the targets that take several files in one input
# (framing: u32 little-endian length, then the bytes; see fuzz/fuzz_index.c, fuzz_tokenizer.c).
#   frame.sh index OUT DIR           DIR/model.safetensors.index.json and its two shards
#                                    model-0000{1,2}-of-00002.safetensors
#   frame.sh tokenizer OUT JSON TEXT a tokenizer.json file and a text to encode
set -euo pipefail
le32() { local n=$1; printf "$(printf '\\x%02x\\x%02x\\x%02x\\x%02x' $((n & 255)) $((n >> 8 & 255)) $((n >> 16 & 255)) $((n >> 24 & 255)))"; }
case ${1:-} in
index)
    out=$2 dir=$3
    { le32 "$(stat -c %s "$dir/model.safetensors.index.json")"; cat "$dir/model.safetensors.index.json"
      le32 "$(stat -c %s "$dir/model-00001-of-00002.safetensors")"; cat "$dir/model-00001-of-00002.safetensors"
      cat "$dir/model-00002-of-00002.safetensors"; } >"$out" ;;
tokenizer)
    out=$2 json=$3 text=$4
    { le32 "$(stat -c %s "$json")"; cat "$json"; printf '%s' "$text"; } >"$out" ;;
*)
    echo "usage: frame.sh index OUT DIR | frame.sh tokenizer OUT JSON TEXT" >&2
    exit 2 ;;
esac
