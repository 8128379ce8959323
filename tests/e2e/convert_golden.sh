#!/bin/bash
# Drop-in compatibility with what ANEMLL 0.3.5 writes ($SHARED/golden/anemll): a generated
# checkpoint with the shapes of the golden llama3_tiny and qwen3_tiny models, converted with the
# golden's options (context 256, batch 32, 2 chunks), gives FFN_PF packages whose functions,
# inputs, states, outputs and com.anemll.* metadata keys/values are those of ANEMLL's packages,
# and a meta.yaml whose parameters are the golden's, key for key and value for value.
# Skips when $SHARED is absent, unless REQUIRE_SHARED=1.
set -euo pipefail
: "${ANEMLL:?} ${MKMODEL:?} ${TEST_TMP:?}"
T=$TEST_TMP/convert_golden
rm -rf "$T" && mkdir -p "$T"
fail() { echo "FAIL: $*" >&2; exit 1; }
G=${SHARED:-../shared}/golden/anemll
if [ ! -d "$G" ]; then
    [ "${REQUIRE_SHARED:-0}" = 1 ] && fail "no $G"
    echo "skip: no $G"
    exit 0
fi

# The interface part of `anemll inspect`: function headers, inputs, states, outputs.
interface() { "$ANEMLL" inspect "$1" | sed -n '/^functions/,/^weights/p' | grep -v '^  ops (' | grep -v '^weights'; }
# com.anemll.* metadata except the converter's name.
anemll_meta() { "$ANEMLL" inspect "$1" | grep -o 'com\.anemll\.[a-z_]* = .*' | grep -v 'com.anemll.info' | sort; }
# meta.yaml parameters block.
params() { sed -n '/^  parameters:/,/^$/p' "$1" | grep '^    '; }

# name arch golden-subdir prefix mkmodel-options
check() {
    local name=$1 arch=$2 golden=$3 prefix=$4; shift 4
    "$MKMODEL" --arch "$arch" --out "$T/$name" "$@" >/dev/null
    local opts=(--model "$T/$name" --context 256 --batch 32 --chunk 2 --lut3 "")
    "$ANEMLL" convert "${opts[@]}" --output "$T/$name.nolut" --lut2 "" >"$T/$name.log" 2>&1 ||
        { cat "$T/$name.log"; fail "$name: convert failed"; }
    # the lut variant needs only steps 3-5 (the golden's LM head LUT is not compared: fp16 is faster here)
    for s in 3 4 5; do
        "$ANEMLL" convert "${opts[@]}" --output "$T/$name.lut" --lut2 4 --only $s >"$T/$name.lut.log" 2>&1 ||
            { cat "$T/$name.lut.log"; fail "$name: convert --lut2 4 --only $s failed"; }
    done
    for v in nolut lut; do
        local out=$T/$name.$v suffix=
        [ $v = lut ] && suffix=_lut4
        for c in 01 02; do
            local pkg=${prefix}_FFN_PF${suffix}_chunk_${c}of02.mlpackage
            diff <(interface "$G/$golden/$v/$pkg") <(interface "$out/$pkg") ||
                fail "$name $v: $pkg interface differs from ANEMLL's (left: golden)"
            diff <(anemll_meta "$G/$golden/$v/$pkg") <(anemll_meta "$out/$pkg") ||
                fail "$name $v: $pkg metadata differs from ANEMLL's (left: golden)"
        done
    done
    # the nolut golden meta.yaml was written for exactly these options (the lut one for --lut3 6)
    diff <(params "$G/$golden/nolut/meta.yaml") <(params "$T/$name.nolut/meta.yaml") ||
        fail "$name: meta.yaml parameters differ from ANEMLL's (left: golden)"
    grep -q "^  name: anemll-$name-ctx256$" "$T/$name.nolut/meta.yaml" || fail "$name: meta.yaml name"
    echo "ok $name: FFN_PF interfaces, metadata and meta.yaml parameters match ANEMLL's"
}

check llama3_tiny llama llama3_tiny llama --hidden 128 --layers 4 --heads 4 --kv-heads 2 --head-dim 32 \
    --intermediate 384 --vocab 128256 --rope-scaling llama3:32,1,4,8192
check qwen3_tiny qwen3 qwen3_tiny qwen --hidden 128 --layers 4 --heads 4 --kv-heads 2 --head-dim 64 \
    --intermediate 384 --vocab 151936
