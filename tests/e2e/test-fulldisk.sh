#!/usr/bin/env bash
# A full disk during a pull (store torture, docs/fuzzing.md): the store is a
# small tmpfs that this test mounts as root and hands to the unprivileged test
# user moat-single, who pulls :big (~280 MB) into it:
#  - the pull exits 2 with a message that says the disk is full and a hint;
#  - nothing half-written is left: tmp/ is empty, layers/ holds only whole
#    layers (matching their index), images/ holds no record of :big;
#  - the store still works: `moat image prune` and a scan of a small image
#    exit 0 in it, and once space is freed (a bigger tmpfs) :big pulls.
source "$(dirname "$0")/lib.sh"
need skopeo python3 setpriv
need_images
[[ $(id -u) -eq 0 ]] || skip "needs root to mount a tmpfs and run as the test user"
id moat-single >/dev/null 2>&1 || skip "user moat-single missing: run tests/lib/rootless-users.sh as root"
AS_USER=$E2E_DIR/../lib/as-user.sh
L=$IMAGES/layout

chmod 0755 "$WORK"
mkdir -m 0755 "$WORK/pub" "$WORK/disk"
cp "$MOAT" "$WORK/pub/moat"
skopeo copy -q "oci:$L:big" "oci:$WORK/pub/img:big"
skopeo copy -q "oci:$L:v1" "oci:$WORK/pub/img:v1"
chmod -R a+rX "$WORK/pub"
uid=$(id -u moat-single) gid=$(id -g moat-single)
mount -t tmpfs -o size=96m,uid="$uid",gid="$gid",mode=0700 moat-fulldisk "$WORK/disk" || skip "cannot mount a tmpfs here"
unmount() { umount "$WORK/disk" 2>/dev/null || umount -l "$WORK/disk" 2>/dev/null || true; }
trap 'unmount; cleanup' EXIT
S=$WORK/disk/store

run_as() {  # EXPECTED ARGS...
  local want_rc=$1 rc=0; shift
  "$AS_USER" moat-single "$WORK/pub/moat" "$@" >"$WORK/out" 2>"$WORK/err" || rc=$?
  [[ $rc -eq $want_rc ]] || { cat "$WORK/out" "$WORK/err" >&2; fail "moat $* exited $rc, expected $want_rc"; }
}
check_clean() {
  [[ -z $(ls -A "$S/tmp" 2>/dev/null) ]] || fail "tmp/ holds leftovers: $(ls -A "$S/tmp")"
  local d
  for d in "$S"/layers/*; do
    [[ -e $d ]] || continue
    [[ -f $d/layer.json && -f $d/index.tsv && -d $d/diff ]] || fail "partial layer in layers/: $d"
    py check-store-layer "$S" "sha256:$(basename "$d")" >/dev/null || fail "layer $d does not match its index"
  done
}

note "pull :big into a 96 MB store"
run_as 2 image pull --store "$S" "oci:$WORK/pub/img:big"
cat "$WORK/err" >&2
expect_err "no space left|disk is full|full"
expect_err "hint:"
check_clean
[[ -z $(ls -A "$S/images" 2>/dev/null) ]] || fail "an image record was written by the failed pull: $(ls "$S/images")"
used=$(df --output=used -k "$WORK/disk" | tail -1)
note "after the failed pull the tmpfs holds ${used} KiB"

run_as 0 image prune --store "$S"
check_clean
run_as 0 scan --fail-on none --format json --store "$S" "oci:$WORK/pub/img:v1"
python3 -c 'import json,sys; j=json.load(open(sys.argv[1])); assert j["image"]["layers"], j' "$WORK/out" ||
  fail "the scan of a small image after the full disk gave no report"

note "more space: the pull succeeds"
mount -o remount,size=1g "$WORK/disk"
run_as 0 image pull --store "$S" "oci:$WORK/pub/img:big"
check_clean
echo "PASS: $TEST_NAME"
