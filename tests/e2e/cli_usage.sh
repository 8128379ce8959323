#!/bin/bash
# The command line as a whole: every subcommand answers --help (status 0, its usage on stdout);
# bad option values are usage errors (status 2) that name the option, the accepted range and
# the value given; `anemll compile` checks its packages, then compiles them with xcrun (a
# stand-in here) or, without xcrun, fails with the note that compiling needs macOS.
set -euo pipefail
: "${ANEMLL:?} ${MKMODEL:?} ${TEST_TMP:?}"
T=$TEST_TMP/cli_usage
rm -rf "$T" && mkdir -p "$T"
fail() { echo "FAIL: $*" >&2; exit 1; }

commands=$("$ANEMLL" --help | awk '/^commands:/ { on = 1; next } on && NF { print $1 }')
for c in convert preflight chunks chat generate inspect compile reference tokenize verify; do
    grep -qx "$c" <<<"$commands" || fail "'anemll --help' does not list $c"
done
for c in $commands; do
    out=$("$ANEMLL" "$c" --help) || fail "$c --help exited $?"
    grep -q "^usage: anemll $c" <<<"$out" || fail "$c --help: no usage line: $out"
done

expect_usage() {   # expect_usage MESSAGE ARGS...
    local msg=$1 st=0; shift
    "$ANEMLL" "$@" >"$T/out" 2>"$T/err" || st=$?
    [ $st -eq 2 ] || fail "anemll $*: status $st, wanted 2 ($(cat "$T/err"))"
    grep -qF -- "$msg" "$T/err" || fail "anemll $*: wanted '$msg' in: $(cat "$T/err")"
}
expect_usage "--tokens wants comma-separated integers, got '1,x'" generate --meta m --tokens 1,x
expect_usage "--threads wants an integer 1..1024, got '0'" generate --meta m --tokens 1 --threads 0
expect_usage "--max-new wants an integer 0..1000000, got '-1'" reference --model m --tokens 1 --max-new -1
expect_usage "--max-new wants an integer 1..100000, got '0'" verify --meta m --model m --max-new 0
expect_usage "--max-tokens wants an integer 1..1000000, got '0'" chat --meta m --max-tokens 0
expect_usage "--max-tokens wants an integer 1..4096, got '5000'" preflight --model m --max-tokens 5000
expect_usage "--tokens wants comma-separated integers, got ''" preflight --model m --tokens ""
expect_usage "give at least one PKG.mlpackage" compile
expect_usage "unknown option '--bogus'" compile --bogus x.mlpackage

# compile: a converted embeddings package, with and without a compiler on PATH
"$MKMODEL" --arch llama --out "$T/m" >/dev/null
"$ANEMLL" convert --model "$T/m" --output "$T/out1" --only 1 --context 32 --batch 8 >/dev/null
pkg=$T/out1/llama_embeddings.mlpackage
[ -d "$pkg" ] || fail "step 1 wrote no $pkg"
st=0
env PATH=/usr/bin:/bin "$ANEMLL" compile "$pkg" 2>"$T/err" || st=$?
[ $st -eq 1 ] && grep -q "compiling needs macOS" "$T/err" && grep -q "1 package checked fine" "$T/err" ||
    fail "compile without xcrun: status $st: $(cat "$T/err")"
mkdir -p "$T/fakebin" "$T/compiled"
cat >"$T/fakebin/xcrun" <<'EOS'
#!/bin/sh
[ "$1 $2" = "coremlcompiler compile" ] || exit 2
name=$(basename "$3" .mlpackage)
mkdir -p "$4/$name.mlmodelc" && cp "$3/Manifest.json" "$4/$name.mlmodelc/compiled.stub"
EOS
chmod +x "$T/fakebin/xcrun"
PATH=$T/fakebin:$PATH "$ANEMLL" compile "$pkg" --output "$T/compiled" >"$T/out" || fail "compile: $(cat "$T/out")"
cmp -s "$pkg/Manifest.json" "$T/compiled/llama_embeddings.mlmodelc/compiled.stub" || fail "compile --output: no model"
[ -z "$(find "$T/compiled" -name '.compile.*')" ] || fail "compile left its scratch folder"
PATH=$T/fakebin:$PATH "$ANEMLL" compile "$pkg/" >/dev/null || fail "compile beside the package"
[ -f "$T/out1/llama_embeddings.mlmodelc/compiled.stub" ] || fail "compile did not write beside the package"
# a broken package never reaches the compiler
cp -r "$pkg" "$T/broken.mlpackage"
truncate -s 100 "$T/broken.mlpackage/Data/com.apple.CoreML/model.mlmodel"
st=0
PATH=$T/fakebin:$PATH "$ANEMLL" compile "$T/broken.mlpackage" --output "$T/compiled" 2>"$T/err" || st=$?
[ $st -eq 1 ] && [ ! -e "$T/compiled/broken.mlmodelc" ] || fail "broken package: status $st: $(cat "$T/err")"
# xcrun failing is reported, nothing left behind
printf '#!/bin/sh\nexit 3\n' >"$T/fakebin/xcrun"
st=0
PATH=$T/fakebin:$PATH "$ANEMLL" compile "$pkg" --output "$T/compiled" 2>"$T/err" || st=$?
[ $st -eq 1 ] && grep -q "coremlcompiler compile .* failed" "$T/err" || fail "failing xcrun: status $st: $(cat "$T/err")"
[ -z "$(find "$T/compiled" -name '.compile.*')" ] || fail "a failed compile left its scratch folder"
echo "ok"
