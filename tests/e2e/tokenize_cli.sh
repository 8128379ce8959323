#!/bin/bash
# anemll tokenize from the command line: encode / decode / --chat / --info on a mkmodel
# tokenizer and (when $SHARED has them) the real Llama 3, Qwen3 and Gemma 3 tokenizers;
# option validation and error messages.
set -euo pipefail
: "${ANEMLL:?} ${MKMODEL:?} ${TEST_TMP:?}"
T=$TEST_TMP/tokenize_cli
rm -rf "$T" && mkdir -p "$T"
fail() { echo "FAIL: $*" >&2; exit 1; }
expect_status() { # status, then the command
    local want=$1; shift
    set +e; "$@" >"$T/out" 2>"$T/err"; local got=$?; set -e
    [ "$got" = "$want" ] || fail "'$*' exited $got, want $want: $(cat "$T/err")"
}
ids_of() { sed 's/.*"ids": \[\([^]]*\)\].*/\1/; s/ //g'; }

# -- a mkmodel tokenizer: byte-level BPE whose post-processor prepends <|begin_of_text|>
"$MKMODEL" --arch llama --out "$T/m" >/dev/null
bos=$("$ANEMLL" tokenize --tokenizer "$T/m" --info | sed 's/.*"bos": {"id": \([0-9]*\).*/\1/')
[ -n "$bos" ] || fail "--info has no bos"
out=$("$ANEMLL" tokenize --tokenizer "$T/m" --text "Hello world" --tokens)
ids=$(echo "$out" | ids_of)
[ "${ids%%,*}" = "$bos" ] || fail "encode does not start with bos $bos: $out"
echo "$out" | grep -q '"tokens": \["<|begin_of_text|>", ' || fail "--tokens: $out"
[ "$("$ANEMLL" tokenize --tokenizer "$T/m" --decode "$ids" --skip-special)" = '{"text": "Hello world"}' ] \
    || fail "decode --skip-special of $ids"
"$ANEMLL" tokenize --tokenizer "$T/m" --decode "$ids" | grep -q '^{"text": "<|begin_of_text|>Hello world"}$' \
    || fail "decode keeps special tokens by default"
noids=$("$ANEMLL" tokenize --tokenizer "$T/m" --text "Hello world" --no-special | ids_of)
[ "$bos,$noids" = "$ids" ] || fail "--no-special: $noids vs $ids"

# round trip of a file with newlines, tabs, quotes and non-ASCII text
printf 'line one\n\tline "two" \xc3\xbcn\xc3\xaf \xe6\x9d\xb1\xe4\xba\xac \xf0\x9f\x99\x82\n' >"$T/in.txt"
fids=$("$ANEMLL" tokenize --tokenizer "$T/m" --file "$T/in.txt" --no-special | ids_of)
got=$("$ANEMLL" tokenize --tokenizer "$T/m" --decode "$fids")
want='{"text": "line one\n\tline \"two\" ünï 東京 🙂\n"}'
[ "$got" = "$want" ] || fail "file round trip: $got"
sids=$("$ANEMLL" tokenize --tokenizer "$T/m" --file - --no-special <"$T/in.txt" | ids_of)
[ "$sids" = "$fids" ] || fail "--file - differs from --file"

chat=$("$ANEMLL" tokenize --tokenizer "$T/m" --chat --text " Hi ")
echo "$chat" | grep -qF '"format": "llama3", "prompt": "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"' \
    || fail "--chat: $chat"
echo "$chat" | grep -q '"stop_ids": \[[0-9]' || fail "--chat has no stop ids: $chat"
echo "ok mkmodel tokenizer"

# -- the real tokenizers
if [ -d "${SHARED:-}/tokenizers/qwen3" ]; then
    R=$SHARED/tokenizers
    q=$("$ANEMLL" tokenize --tokenizer "$R/qwen3" --chat --system "Be brief." --text "2+2?" --no-think)
    echo "$q" | grep -qF '"prompt": "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\n2+2?<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"' \
        || fail "qwen3 --chat --no-think: $q"
    g=$("$ANEMLL" tokenize --tokenizer "$R/gemma3" --text "Hello")
    [ "$g" = '{"ids": [2, 9259], "count": 2}' ] || fail "gemma3 encode: $g"
    "$ANEMLL" tokenize --tokenizer "$R/llama3" --info | grep -q '"vocab_size": 128256, .*"chat_format": "llama3"' \
        || fail "llama3 --info"
    # "Hello , world ." -> clean_up_tokenization_spaces (on in Llama 3's config) unless --no-cleanup
    l=$("$ANEMLL" tokenize --tokenizer "$R/llama3" --text "Hello , world .")
    [ "$l" = '{"ids": [9906, 1174, 1917, 662], "count": 4}' ] || fail "llama3 encode: $l"
    c=$(echo "$l" | ids_of)
    [ "$("$ANEMLL" tokenize --tokenizer "$R/llama3" --decode "$c")" = '{"text": "Hello, world."}' ] \
        || fail "llama3 decode with clean-up"
    [ "$("$ANEMLL" tokenize --tokenizer "$R/llama3" --decode "$c" --no-cleanup)" = '{"text": "Hello , world ."}' ] \
        || fail "llama3 decode --no-cleanup"
    echo "ok real tokenizers"
elif [ "${REQUIRE_SHARED:-0}" = 1 ]; then
    fail "\$SHARED/tokenizers not found and REQUIRE_SHARED=1"
else
    echo "SKIP: \$SHARED/tokenizers not found; real-tokenizer checks skipped"
fi

# -- options and errors
"$ANEMLL" tokenize --help | grep -q "usage: anemll tokenize" || fail "--help"
expect_status 2 "$ANEMLL" tokenize --text hi
expect_status 2 "$ANEMLL" tokenize --tokenizer "$T/m"
expect_status 2 "$ANEMLL" tokenize --tokenizer "$T/m" --text hi --decode 1
expect_status 2 "$ANEMLL" tokenize --tokenizer "$T/m" --decode 1,x
grep -q "comma-separated integers" "$T/err" || fail "bad --decode message"
expect_status 2 "$ANEMLL" tokenize --tokenizer "$T/m" --text hi --system x
expect_status 2 "$ANEMLL" tokenize --tokenizer "$T/m" --text hi --chat --format jinja
expect_status 2 "$ANEMLL" tokenize --tokenizer "$T/m" --text hi --frobnicate
expect_status 1 "$ANEMLL" tokenize --tokenizer "$T/none" --text hi
grep -q "$T/none does not exist" "$T/err" || fail "missing folder message: $(cat "$T/err")"
mkdir -p "$T/empty"
expect_status 1 "$ANEMLL" tokenize --tokenizer "$T/empty" --text hi
grep -q "tokenizer.json not found" "$T/err" || fail "missing tokenizer.json message"
printf 'ok\xff' >"$T/bad.txt"
expect_status 1 "$ANEMLL" tokenize --tokenizer "$T/m" --file "$T/bad.txt"
grep -q "not valid UTF-8 (byte 2 of 3)" "$T/err" || fail "invalid UTF-8 message: $(cat "$T/err")"
mkdir -p "$T/broken" && head -c 300 "$T/m/tokenizer.json" >"$T/broken/tokenizer.json"
expect_status 1 "$ANEMLL" tokenize --tokenizer "$T/broken" --text hi
grep -q "broken/tokenizer.json: invalid JSON: unexpected end of file" "$T/err" || fail "truncated file message: $(cat "$T/err")"
echo "ok options and errors"
