#!/bin/bash
# anemll convert into a full file system: a size-limited tmpfs mounted by the test (root only).
# The conversion fails with "No space left on device" naming the file it could not write, says
# the file system is full and prints the --restart command; it leaves no temporary files, no
# package that looks complete but is not, and no meta.yaml. After the file system grows, the
# printed --restart finishes the conversion, byte-identical to one that never ran out of space.
# Cases: 2%, 45% and 80% of the space a conversion needs (failing in steps 1-5), one page
# short (failing on the last file of step 7), and a file system out of inodes (directories).
#
# Needs root (mount -t tmpfs): skipped with a notice otherwise, unless REQUIRE_ROOT_TESTS=1
# (CI), which makes that a failure.
set -euo pipefail
: "${ANEMLL:?} ${MKMODEL:?} ${TEST_TMP:?}"
T=$TEST_TMP/disk_full
M=$T/mnt
mountpoint -q "$M" 2>/dev/null && umount "$M"
rm -rf "$T" && mkdir -p "$M"
fail() { echo "FAIL: $*" >&2; exit 1; }

if ! mount -t tmpfs -o size=16m tmpfs "$M" 2>"$T/mount.err"; then
    if [ "${REQUIRE_ROOT_TESTS:-0}" = 1 ]; then
        fail "cannot mount a tmpfs, and REQUIRE_ROOT_TESTS=1: $(cat "$T/mount.err") (uid $(id -u))"
    fi
    echo "SKIP: disk-full test needs root to mount a tmpfs ($(cat "$T/mount.err")); set REQUIRE_ROOT_TESTS=1 to make this a failure"
    exit 0
fi
trap 'umount "$M" 2>/dev/null || true' EXIT

"$MKMODEL" --arch qwen3 --out "$T/m" --layers 2 --hidden 64 --heads 4 --kv-heads 2 --head-dim 16 --intermediate 128 \
    --vocab 384 >/dev/null
OPTS=(--context 64 --batch 8 --chunk 2 --lut1 4 --lut2 4 --lut3 4 --threads 1)
conv() { local out=$1; shift; "$ANEMLL" convert --model "$T/m" --output "$out" "${OPTS[@]}" "$@"; }
digest() { (cd "$1" && find . -type f | LC_ALL=C sort | xargs sha256sum); }
same_tree() { [ "$(digest "$1")" = "$(digest "$2")" ] || { diff <(digest "$1") <(digest "$2") >&2; fail "$3"; }; }

# the reference, and the space it takes on a tmpfs
conv "$M/ref" >/dev/null
need=$(df --output=used -B1 "$M" | tail -1)
cp -r "$M/ref" "$T/ref"
umount "$M"
echo "a conversion takes $need bytes of tmpfs"

# full LABEL MOUNT_OPTIONS: converts into a fresh tmpfs mounted with MOUNT_OPTIONS
full() {
    local label=$1 opts=$2
    mount -t tmpfs -o "$opts" tmpfs "$M"
    set +e
    conv "$M/out" >"$T/out.log" 2>"$T/err.log"
    local rc=$?
    set -e
    [ $rc = 1 ] || fail "$label: exit $rc, expected 1 (a failed conversion): $(cat "$T/err.log")"
    grep -q "No space left on device" "$T/err.log" || fail "$label: no 'No space left on device': $(cat "$T/err.log")"
    grep -q "^error: step [0-9] (.*$M/out/" "$T/err.log" || fail "$label: the error does not name the file: $(head -1 "$T/err.log")"
    grep -q "The file system of $M/out is full" "$T/err.log" || fail "$label: no 'file system is full' line: $(cat "$T/err.log")"
    local step
    step=$(grep -o -- '--restart [0-9]$' "$T/err.log" | tr -dc 0-9)
    [ -n "$step" ] || fail "$label: no --restart command printed: $(cat "$T/err.log")"
    grep -q "^error: step $step " "$T/err.log" || fail "$label: the --restart step is not the failed step"
    # nothing unfinished, nothing that looks finished but is not
    local junk
    junk=$(find "$M/out" -maxdepth 1 \( -name '*.tmp.*' -o -name '*.old.*' -o -name '.compile.*' -o -name '.anemll-*' \))
    [ -z "$junk" ] || fail "$label: temporary files left behind: $junk"
    [ ! -e "$M/out/meta.yaml" ] || fail "$label: a meta.yaml was left (the folder looks finished)"
    for p in "$M/out"/*.mlpackage; do
        [ -e "$p" ] || continue
        "$ANEMLL" inspect "$p" >/dev/null 2>"$T/inspect.err" ||
            fail "$label: $(basename "$p") is under its final name but does not open: $(cat "$T/inspect.err")"
    done
    # more space, then the printed command finishes the job
    mount -o remount,size=16m,nr_inodes=100000 "$M"
    conv "$M/out" --restart "$step" >"$T/resume.log" 2>&1 || fail "$label: resume --restart $step: $(tail -5 "$T/resume.log")"
    same_tree "$T/ref" "$M/out" "$label: resumed output differs from a conversion with enough space"
    umount "$M"
    printf 'ok %-22s failed in step %s: %s\n' "$label" "$step" "$(head -1 "$T/err.log" | sed "s|$M/||g" | cut -c1-150)"
}

page=4096
for pct in 2 45 80; do
    full "$pct% of the space" "size=$((need * pct / 100 / page * page))"
done
full "one page short" "size=$((need - page))"
full "out of inodes" "size=16m,nr_inodes=12"
echo "ok every full-disk failure was clean and resumed to identical bytes"
