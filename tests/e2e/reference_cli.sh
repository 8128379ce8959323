#!/bin/bash
# anemll reference and anemll-mkmodel from the command line: refvector continuations, JSON
# output, sharded == single-file, deterministic generator output, option validation.
set -euo pipefail
: "${ANEMLL:?} ${MKMODEL:?} ${TEST_TMP:?}"
T=$TEST_TMP/reference_cli
rm -rf "$T" && mkdir -p "$T"
fail() { echo "FAIL: $*" >&2; exit 1; }

# -- every refvector case: the 12 greedy ids of Hugging Face, through the CLI
for dir in tests/data/refvectors/*/; do
    name=$(basename "$dir")
    prompt=$(grep '"prompt_ids"' "$dir/expected.json" | sed 's/.*\[\(.*\)\].*/\1/; s/ //g')
    want=$(grep '"generated_ids"' "$dir/expected.json" | sed 's/.*\[\(.*\)\].*/\1/; s/ //g')
    got=$("$ANEMLL" reference --model "$dir" --tokens "$prompt" --max-new 12)
    [ "$got" = "$want" ] || fail "$name: got $got, want $want"
    json=$("$ANEMLL" reference --model "$dir" --tokens "$prompt" --max-new 12 --json)
    first=${want%%,*}
    echo "$json" | grep -q "^{\"tokens\": \[${want//,/, }\], \"logits_last_top5\": \[\[$first, " \
        || fail "$name: unexpected JSON: $json"
    echo "ok $name: $got"
done

# -- mkmodel: same seed, same bytes; sharded and single-file give the same continuation
"$MKMODEL" --arch llama --out "$T/a" --seed 3 >/dev/null
"$MKMODEL" --arch llama --out "$T/b" --seed 3 >/dev/null
"$MKMODEL" --arch llama --out "$T/s" --seed 3 --shards 2 >/dev/null
for f in config.json model.safetensors tokenizer.json tokenizer_config.json; do
    cmp -s "$T/a/$f" "$T/b/$f" || fail "mkmodel output differs in $f"
done
[ -f "$T/s/model-00002-of-00002.safetensors" ] && [ -f "$T/s/model.safetensors.index.json" ] || fail "no shards"
one=$("$ANEMLL" reference --model "$T/a" --tokens 315,40,41,42 --max-new 6 --json)
two=$("$ANEMLL" reference --model "$T/s" --tokens 315,40,41,42 --max-new 6 --json)
[ "$one" = "$two" ] || fail "sharded ($two) != single ($one)"
echo "ok sharded == single: $one"

# -- mkmodel --tokenizer without --vocab sizes the vocabulary from the tokenizer
if [ -f "${SHARED:-}/tokenizers/llama3/tokenizer.json" ]; then
    "$MKMODEL" --arch llama --out "$T/tok" --tokenizer "$SHARED/tokenizers/llama3" --hidden 32 --heads 2 \
        --kv-heads 1 --head-dim 16 --intermediate 32 --layers 1 | grep -q "vocab 128256" \
        || fail "mkmodel --tokenizer did not take the tokenizer's vocabulary size"
    grep -q '"vocab_size":[[:space:]]*128256' "$T/tok/config.json" || fail "config.json vocab_size"
    echo "ok mkmodel --tokenizer: vocab 128256"
elif [ "${REQUIRE_SHARED:-0}" = 1 ]; then
    fail "SHARED tokenizers missing"
fi

# -- options and errors
"$ANEMLL" reference --help | grep -q "usage: anemll reference" || fail "--help"
"$MKMODEL" --help | grep -q "usage: anemll-mkmodel" || fail "mkmodel --help"
expect_status() { # status, then the command
    local want=$1; shift
    set +e; "$@" >"$T/out" 2>"$T/err"; local got=$?; set -e
    [ "$got" = "$want" ] || fail "'$*' exited $got, want $want: $(cat "$T/err")"
}
expect_status 2 "$ANEMLL" reference --model "$T/a"
expect_status 2 "$ANEMLL" reference --model "$T/a" --tokens 1,x
expect_status 2 "$ANEMLL" reference --model "$T/a" --tokens 1 --max-new -1
expect_status 2 "$ANEMLL" reference --model "$T/a" --tokens 1 --frobnicate
expect_status 1 "$ANEMLL" reference --model "$T/nonexistent" --tokens 1
grep -q "config.json" "$T/err" || fail "missing-model error does not name config.json"
expect_status 1 "$ANEMLL" reference --model "$T/a" --tokens 1,99999
grep -q "outside the vocabulary" "$T/err" || fail "bad token id error"
expect_status 2 "$MKMODEL" --arch mistral --out "$T/m"
grep -q "supported model types" "$T/err" || fail "mkmodel unknown arch message"
expect_status 2 "$MKMODEL" --arch llama --out "$T/m" --hidden x
expect_status 2 "$MKMODEL" --arch llama --out "$T/m" --rope-scaling yarn:4
expect_status 1 "$MKMODEL" --arch llama --out "$T/a"
grep -q "already exists" "$T/err" || fail "mkmodel overwrite message"
[ ! -e "$T/m" ] || fail "mkmodel left $T/m behind after an error"
echo "ok options"
