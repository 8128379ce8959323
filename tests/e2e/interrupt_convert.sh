#!/bin/bash
# anemll convert killed with SIGKILL inside every step, then resumed with --restart at the step
# it was in (the last "Step N:" it printed): the result is byte-identical to an uninterrupted run.
# After each kill, every package under its final name opens (nothing half-written looks
# finished), meta.yaml is absent unless step 7 had written it (and `anemll generate` says the
# folder holds no finished conversion), and a --restart past the interrupted step refuses to
# start from incomplete inputs.
#
# Kill points come from the converter's test hook (src/common/killpoint.h): ANEMLL_KILL_LOG
# lists them (after each blob, package file, rename, atomic file write, package check);
# ANEMLL_KILL_AT=S:N kills at the Nth point of step S. Tried here: the first and last point of
# steps 1, 2, 3 (+ the middle one), 5, 6, 7 (+ middle), 8 of a fresh conversion (step 6 with a
# stand-in Core ML compiler);
# step 4 in a separate pass (--restart 4); and, over an existing output, the "old package moved
# aside" points of steps 1, 3, 5 and the "renamed into place" point of step 1.
set -euo pipefail
: "${ANEMLL:?} ${MKMODEL:?} ${TEST_TMP:?}"
T=$TEST_TMP/interrupt_convert
rm -rf "$T" && mkdir -p "$T"
fail() { echo "FAIL: $*" >&2; exit 1; }

"$MKMODEL" --arch llama --out "$T/m" --layers 2 --hidden 64 --heads 4 --kv-heads 2 --intermediate 128 --vocab 384 \
    >/dev/null
OPTS=(--context 64 --batch 8 --chunk 2 --lut1 4 --lut2 4 --lut3 4 --threads 1)
# step 6 compiles with a stand-in xcrun (as convert_restart.sh does): the .mlmodelc folders
# are part of the output
mkdir -p "$T/fakebin"
cat >"$T/fakebin/xcrun" <<'EOF2'
#!/bin/sh
[ "$1 $2" = "coremlcompiler compile" ] || exit 2
name=$(basename "$3" .mlpackage)
mkdir -p "$4/$name.mlmodelc" && cp "$3/Manifest.json" "$4/$name.mlmodelc/compiled.stub"
EOF2
chmod +x "$T/fakebin/xcrun"
export PATH=$T/fakebin:$PATH
conv() { local out=$1; shift; "$ANEMLL" convert --model "$T/m" --output "$out" "${OPTS[@]}" "$@"; }
digest() { (cd "$1" && find . -type f | LC_ALL=C sort | xargs sha256sum); }
same_tree() { [ "$(digest "$1")" = "$(digest "$2")" ] || { diff <(digest "$1") <(digest "$2") >&2; fail "$3"; }; }

# The reference, and the kill points of a fresh run (step, number, what, path).
ANEMLL_KILL_LOG=$T/points.fresh conv "$T/ref" >"$T/ref.log"
count() { awk -F'\t' -v s="$1" '$1 == s' "$2" | wc -l; }
what_at() { awk -F'\t' -v s="$1" -v n="$2" '$1 == s && $2 == n { print $3 " " $4 }' "$3"; }

# Invariants of an interrupted output folder (packages written by the killed run: newer than the stamp).
check_interrupted() {
    local out=$1 step=$2
    for p in $(find "$out" -maxdepth 1 -name '*.mlpackage' -newer "$T/stamp"); do
        "$ANEMLL" inspect "$p" >/dev/null 2>"$T/inspect.err" ||
            fail "after a kill in step $step, $(basename "$p") looks finished but does not open: $(cat "$T/inspect.err")"
    done
    if [ -e "$out/meta.yaml" ] && [ "$step" -lt 7 ]; then fail "a kill in step $step left a meta.yaml"; fi
    if [ ! -e "$out/meta.yaml" ]; then
        # the runtime says why it will not start
        if "$ANEMLL" generate --meta "$out/meta.yaml" --tokens 1,2 >/dev/null 2>"$T/gen.err"; then
            fail "generate ran on an unfinished conversion"
        fi
        grep -q "holds no finished conversion.*--restart" "$T/gen.err" || fail "generate error: $(cat "$T/gen.err")"
    fi
}

tried=0
# kill_and_resume LABEL STEP N SURVEY OUT [SETUP]: OUT is prepared by SETUP (default: empty), the
# run is killed at point N of STEP, and resumed with --restart at the step it printed last.
kill_and_resume() {
    local label=$1 step=$2 n=$3 survey=$4 out=$5 restart_opt=${6:-}
    touch -d '-1 second' "$T/stamp"
    set +e
    ANEMLL_KILL_AT=$step:$n conv "$out" $restart_opt >"$T/killed.log" 2>&1
    local rc=$?
    set -e
    [ $rc = 137 ] || fail "$label: expected SIGKILL (137) at point $n of step $step, exit $rc: $(tail -3 "$T/killed.log")"
    local last
    last=$(grep -o '^Step [0-9]*:' "$T/killed.log" | tail -1 | tr -dc 0-9)
    [ "$last" = "$step" ] || fail "$label: killed in step $step but the last step printed was '$last'"
    check_interrupted "$out" "$step"
    if [ "$step" = 3 ] && [ "$n" = 1 ] && [ -z "$restart_opt" ]; then
        # a later step does not start from the incomplete chunks
        if conv "$out" --restart 5 >"$T/wrong.log" 2>&1; then fail "$label: --restart 5 after a kill in step 3 ran"; fi
        grep -q "run step 3 first" "$T/wrong.log" || fail "$label: --restart 5 error: $(cat "$T/wrong.log")"
    fi
    conv "$out" --restart "$last" >"$T/resume.log" 2>&1 || fail "$label: resume with --restart $last: $(tail -5 "$T/resume.log")"
    same_tree "$T/ref" "$out" "$label: resumed output differs from an uninterrupted run"
    printf 'ok %-28s step %d point %3d/%-3d %s\n' "$label" "$step" "$n" "$(count "$step" "$survey")" \
        "$(what_at "$step" "$n" "$survey" | sed "s|$T/||")"
    tried=$((tried + 1))
}

# points TOTAL [N...]: the first and last point of a step and the given ones ("mid": the middle)
points() {
    local total=$1; shift
    { echo 1; echo "$total"; for x in "$@"; do [ "$x" = mid ] && x=$(((total + 1) / 2)); echo "$x"; done; } |
        awk -v t="$total" '$1 >= 1 && $1 <= t' | sort -n | uniq
}

# 1. a fresh conversion, killed inside every step that does work (4: see below)
for step in 1 2 3 5 6 7 8; do
    total=$(count "$step" "$T/points.fresh")
    [ "$total" -gt 0 ] || fail "no kill points in step $step"
    extra=()
    [ "$step" = 3 ] || [ "$step" = 7 ] && extra=(mid)
    for n in $(points "$total" "${extra[@]}"); do
        rm -rf "$T/out"
        kill_and_resume fresh "$step" "$n" "$T/points.fresh" "$T/out"
    done
done

# 2. step 4 alone (a full run writes the prefill packages in step 3's pass)
prefill_only() {
    rm -rf "$T/out" && cp -r "$T/ref" "$T/out"
    rm -rf "$T/out"/llama_prefill_* "$T/out"/llama_FFN_PF_* "$T/out/meta.yaml"
}
prefill_only
ANEMLL_KILL_LOG=$T/points.step4 conv "$T/out" --restart 4 >/dev/null
for n in $(points "$(count 4 "$T/points.step4")"); do
    prefill_only
    kill_and_resume step4-pass 4 "$n" "$T/points.step4" "$T/out" "--restart 4"
done

# 3. over an existing output: killed while a package is being replaced
rm -rf "$T/out" && cp -r "$T/ref" "$T/out"
ANEMLL_KILL_LOG=$T/points.rerun conv "$T/out" >/dev/null
for case in "1:old package moved aside" "1:package renamed into place" "3:old package moved aside" \
    "5:old package moved aside"; do
    step=${case%%:*} what=${case#*:}
    {
        n=$(awk -F'\t' -v s="$step" -v w="$what" '$1 == s && $3 == w { print $2; exit }' "$T/points.rerun")
        [ -n "$n" ] || fail "no '$what' point in step $step of a rerun"
        rm -rf "$T/out" && cp -r "$T/ref" "$T/out"
        kill_and_resume rerun "$step" "$n" "$T/points.rerun" "$T/out"
        # (check_interrupted ran: meta.yaml was retired before the first package was replaced)
    }
done

# one conversion at a time per output folder (the lock that makes removing leftovers safe)
mkdir -p "$T/locked"
if flock "$T/locked" "$ANEMLL" convert --model "$T/m" --output "$T/locked" "${OPTS[@]}" >"$T/locked.log" 2>&1; then
    fail "a conversion ran while another held the output folder"
fi
grep -q "another anemll convert is writing into this folder" "$T/locked.log" || fail "lock error: $(cat "$T/locked.log")"
echo "ok a second conversion into a locked folder is refused"

# the hook is inert without the variables: a plain run writes the reference bytes
rm -rf "$T/out"
conv "$T/out" >/dev/null
same_tree "$T/ref" "$T/out" "a plain run differs"
echo "ok $tried kill points, every resumed output byte-identical to the uninterrupted run"
