#!/bin/bash
# anemll convert: two runs give byte-identical output; --restart N runs steps N..8 and rewrites
# byte-identical packages; --only N runs step N alone (steps 3 and 4 alone equal the joint pass;
# --only 6 says compiling needs macOS; --only 8 checks every package and catches a broken one);
# a step whose inputs are missing fails before writing anything.
set -euo pipefail
: "${ANEMLL:?} ${MKMODEL:?} ${TEST_TMP:?}"
T=$TEST_TMP/convert_restart
rm -rf "$T" && mkdir -p "$T"
fail() { echo "FAIL: $*" >&2; exit 1; }

"$MKMODEL" --arch llama --out "$T/m" --layers 3 --vocab 384 >/dev/null
OPTS=(--context 64 --batch 8 --chunk 2 --lut1 4 --lut2 6,4 --lut3 4)
conv() { local out=$1; shift; "$ANEMLL" convert --model "$T/m" --output "$out" "${OPTS[@]}" "$@"; }

# Every file under a folder with its checksum.
digest() { (cd "$1" && find . -type f | LC_ALL=C sort | xargs sha256sum); }
same_tree() { [ "$(digest "$1")" = "$(digest "$2")" ] || { diff <(digest "$1") <(digest "$2") >&2; fail "$3"; }; }

conv "$T/a" >"$T/a.log"
conv "$T/b" >"$T/b.log"
same_tree "$T/a" "$T/b" "two runs differ"
echo "ok two runs are byte-identical"

# --restart 5: steps 1-4 are skipped, 5-8 run, combined packages come back identical -- copied
# from the step-3/4 packages, where the full run had step 3 write their weights as it went
grep -q "weights of 2 combined packages were written by step 3" "$T/a.log" ||
    fail "the full run did not write the combined packages' weights in step 3"
cp -r "$T/a" "$T/r"
rm -rf "$T/r"/llama_FFN_PF_* "$T/r/meta.yaml"
touch -d '2000-01-01' "$T/r"/llama_embeddings_lut4.mlpackage/Manifest.json
conv "$T/r" --restart 5 >"$T/r.log"
for s in 1 2 3 4; do grep -q "^Skipping step $s:" "$T/r.log" || fail "--restart 5 did not skip step $s"; done
for s in 5 6 7 8; do grep -q "^Step $s:" "$T/r.log" || fail "--restart 5 did not run step $s"; done
! grep -q "written by step 3" "$T/r.log" || fail "--restart 5 claims step 3 wrote the combined weights"
[ "$(stat -c %Y "$T/r/llama_embeddings_lut4.mlpackage/Manifest.json")" -lt 1000000000 ] ||
    fail "--restart 5 rewrote the embeddings"
same_tree "$T/a" "$T/r" "--restart 5 output differs from a full run"
echo "ok --restart 5"

# --restart 1 over an existing output: everything rewritten, identical
conv "$T/r" >/dev/null
same_tree "$T/a" "$T/r" "a rerun over existing output differs"

# --only 3 and --only 4: each step alone writes the same packages as the joint pass
rm -rf "$T/r"/llama_FFN_lut6_* "$T/r"/llama_prefill_lut6_*
conv "$T/r" --only 3 >"$T/only3.log"
ls "$T/r"/llama_prefill_lut6_* >/dev/null 2>&1 && fail "--only 3 wrote prefill packages"
[ "$(grep -c '^Step' "$T/only3.log")" = 1 ] || fail "--only 3 ran more than one step"
conv "$T/r" --only 4 >/dev/null
same_tree "$T/a" "$T/r" "--only 3 / --only 4 differ from the joint pass"
echo "ok --only 3, --only 4"

# --only 6: no Core ML compiler here; the step says so and succeeds
if ! command -v xcrun >/dev/null; then
    conv "$T/r" --only 6 >"$T/only6.log"
    grep -q "needs macOS" "$T/only6.log" || fail "--only 6 should explain that compiling needs macOS"
    grep -q "first load" "$T/only6.log" || fail "--only 6 should say Core ML compiles on first load"
    echo "ok --only 6 (no xcrun)"
fi

# --only 6 where a Core ML compiler exists: a stand-in xcrun (records its arguments, writes an
# .mlmodelc) shows that every part is compiled once, into <name>.mlmodelc next to its package
mkdir -p "$T/fakebin"
cat >"$T/fakebin/xcrun" <<'EOF2'
#!/bin/sh
# xcrun coremlcompiler compile IN.mlpackage OUTDIR
echo "$*" >>"$(dirname "$0")/calls"
[ "$1 $2" = "coremlcompiler compile" ] || exit 2
name=$(basename "$3" .mlpackage)
mkdir -p "$4/$name.mlmodelc" && cp "$3/Manifest.json" "$4/$name.mlmodelc/compiled.stub"
EOF2
chmod +x "$T/fakebin/xcrun"
PATH=$T/fakebin:$PATH conv "$T/r" --only 6 >"$T/compile.log"
[ "$(wc -l <"$T/fakebin/calls")" = 4 ] || fail "--only 6 should compile 4 parts: $(cat "$T/fakebin/calls")"
for n in llama_embeddings_lut4 llama_lm_head_lut4 llama_FFN_PF_lut6_chunk_01of02 llama_FFN_PF_lut6_chunk_02of02; do
    [ -f "$T/r/$n.mlmodelc/compiled.stub" ] || fail "--only 6 did not produce $n.mlmodelc"
done
ls -d "$T/r"/.compile* >/dev/null 2>&1 && fail "--only 6 left its temporary folders"
rm -rf "$T/r"/*.mlmodelc
echo "ok --only 6 (stand-in xcrun)"

# --only 8: passes on good output, fails on a broken or wrong package
conv "$T/r" --only 8 >"$T/only8.log"
grep -q "4 packages read back" "$T/only8.log" || fail "--only 8 output"
cp -r "$T/r" "$T/broken"
cp -r "$T/r/llama_FFN_PF_lut6_chunk_01of02.mlpackage/." "$T/broken/llama_FFN_PF_lut6_chunk_02of02.mlpackage/"
if conv "$T/broken" --only 8 >"$T/broken.log" 2>&1; then fail "--only 8 accepted chunk 1 as chunk 2"; fi
grep -q "chunk_02of02.mlpackage" "$T/broken.log" || fail "--only 8 error should name the package"
truncate -s 100 "$T/broken/llama_lm_head_lut4.mlpackage/Data/com.apple.CoreML/weights/weight.bin"
if conv "$T/broken" --only 8 >"$T/broken.log" 2>&1; then fail "--only 8 accepted a truncated weight.bin"; fi
echo "ok --only 8"

# --only 5 without the step-3/4 packages: a clear error, nothing written
mkdir "$T/empty"
if conv "$T/empty" --only 5 >"$T/only5.log" 2>&1; then fail "--only 5 without inputs succeeded"; fi
grep -q "run step 3 first" "$T/only5.log" || fail "--only 5 error: $(cat "$T/only5.log")"
[ -z "$(ls -A "$T/empty")" ] || fail "--only 5 left files behind"
if conv "$T/empty" --restart 8 >"$T/r8.log" 2>&1; then fail "--restart 8 without packages succeeded"; fi
grep -q "step 8 needs llama_embeddings_lut4.mlpackage" "$T/r8.log" || fail "--restart 8 error: $(cat "$T/r8.log")"
echo "ok missing inputs"

# the wrapper takes the same options and writes the same files
ANEMLL=$ANEMLL anemll/utils/convert_model.sh --model "$T/m" --output "$T/w" "${OPTS[@]}" >/dev/null
same_tree "$T/a" "$T/w" "convert_model.sh output differs from anemll convert"
echo "ok convert_model.sh"
