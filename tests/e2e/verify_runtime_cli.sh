#!/bin/bash
# anemll chat / generate / verify on a converted tiny Llama: a prompt longer than the prefill
# batch, a generation that runs past the end of the context (the window shifts, as chat_full.py
# does) with the reference shifting the same way, memory that does not grow per generated token
# (pool allocations and resident memory over 300 tokens), one-shot and interactive chat with
# speed figures, sampling options, and errors.
set -euo pipefail
: "${ANEMLL:?} ${MKMODEL:?} ${TEST_TMP:?}"
T=$TEST_TMP/verify_runtime_cli
rm -rf "$T" && mkdir -p "$T"
fail() { echo "FAIL: $*" >&2; exit 1; }
has() { grep -qF -- "$2" <<<"$1" || fail "$3: expected '$2' in:
$1"; }
json() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }

"$MKMODEL" --arch llama --out "$T/model" --layers 4 >/dev/null
"$ANEMLL" convert --model "$T/model" --output "$T/out" --context 64 --batch 16 --chunk 2 --lut2 "" --lut3 "" \
    --threads 1 >"$T/convert.log" 2>&1 || fail "convert: $(tail -20 "$T/convert.log")"
META=$T/out/meta.yaml

# past the end of the context: 40 prompt tokens (two prefill batches + 8 singles), 60 generated
# in a context of 64; the reference shifts its window identically, so they still agree
PROMPT=$(seq -s, 3 5 200)
out=$("$ANEMLL" verify --meta "$META" --model "$T/model" --tokens "$PROMPT" --max-new 60 --min-cosine 0.9999 --json) ||
    fail "verify across shifts: $out"
[ "$(json "d['positions'] == 60 and d['shifts'] >= 1 and d['agreement'] >= 0.95" <<<"$out")" = True ] ||
    fail "verify across shifts: $out"

# memory over 300 generated tokens (several shifts): no pool allocation after the first two tokens,
# resident memory flat
"$ANEMLL" generate --meta "$META" --tokens "$PROMPT" --max-new 300 --stats >"$T/gen.txt" 2>"$T/gen.err" ||
    fail "generate: $(cat "$T/gen.err")"
[ "$(tr ',' '\n' <"$T/gen.txt" | wc -l)" -eq 300 ] || fail "generate produced $(tr ',' '\n' <"$T/gen.txt" | wc -l) tokens"
stats=$(cat "$T/gen.err")
shifts=$(sed -n 's/^context shifts: //p' <<<"$stats")
[ "$shifts" -ge 5 ] || fail "expected context shifts: $stats"
read -r warm end warm_rss end_rss < <(sed -n 's/.*after 2 tokens \([0-9]*\), at the end \([0-9]*\);.*rss after 2 tokens \([0-9]*\) KB, at the end \([0-9]*\) KB.*/\1 \2 \3 \4/p' <<<"$stats")
[ -n "${warm:-}" ] || fail "no memory line: $stats"
[ "$warm" -eq "$end" ] || fail "pool allocations grew from $warm to $end: $stats"
[ $((end_rss - warm_rss)) -lt 1024 ] || fail "resident memory grew by $((end_rss - warm_rss)) KB: $stats"
has "$stats" "decode: " "generate --stats"

# chat: one reply, speed on stderr
"$ANEMLL" chat --meta "$META" --prompt "Hello there" --max-tokens 8 >"$T/chat.out" 2>"$T/chat.err" ||
    fail "chat: $(cat "$T/chat.err")"
has "$(cat "$T/chat.err")" "[prefill: " "chat stats"
has "$(cat "$T/chat.err")" "t/s | decode: " "chat stats"
# sampling is reproducible with a seed
a=$("$ANEMLL" chat --meta "$META" --prompt "Hi" --max-tokens 12 --temperature 0.9 --top-k 40 --top-p 0.95 --seed 7 --no-stats)
b=$("$ANEMLL" chat --meta "$META" --prompt "Hi" --max-tokens 12 --temperature 0.9 --top-k 40 --top-p 0.95 --seed 7 --no-stats)
[ "$a" = "$b" ] || fail "sampling with one seed differs"
# interactive: one reply per line, /reset, end of input leaves
printf 'Hi\n/reset\nHello again\n' | "$ANEMLL" chat --meta "$META" --max-tokens 4 >"$T/int.out" 2>"$T/int.err" ||
    fail "interactive chat: $(cat "$T/int.err")"
[ "$(grep -c '^\[prefill' "$T/int.err")" -eq 2 ] || fail "expected two replies: $(cat "$T/int.err")"

# errors
set +e
msg=$("$ANEMLL" generate --meta "$T/nope/meta.yaml" --tokens 1,2 2>&1)
[ $? -eq 1 ] || fail "missing meta.yaml: wrong exit status"
has "$msg" "nope/meta.yaml" "missing meta.yaml"
"$ANEMLL" verify --meta "$META" >/dev/null 2>&1
[ $? -eq 2 ] || fail "verify without --model must be a usage error"
msg=$("$ANEMLL" generate --meta "$META" --tokens 1,100000 2>&1)
[ $? -eq 1 ] || fail "out-of-vocabulary token: wrong exit status"
has "$msg" "outside the vocabulary" "out-of-vocabulary token"
set -e
echo "ok"
