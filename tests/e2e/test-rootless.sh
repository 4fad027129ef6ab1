#!/usr/bin/env bash
# Rootless: as moat-subuid (a subordinate id range) and moat-single (none),
# pull the umoci-made 3-layer image (setuid files, owners 0/42/1000/1001, a
# 0000 dir, a char device, an opaque dir) into a store under the user's home
# and into the default store (~/.cache/moat):
#  - pull and `scan --format json` exit 0, the report says rootless and has
#    the config's diffIDs; the store dir is mode 0700 and the user's;
#  - every layer's disk matches its index.tsv, owners the user could not give
#    are in user.containers.override_stat, and the index.tsv files are
#    byte-identical to those of a store unpacked by root (the image's truth
#    does not depend on who unpacks it);
#  - a user cannot use another user's store (exit 2, a hint).
# Needs root (to become the test users) and tests/lib/rootless-users.sh's users.
source "$(dirname "$0")/lib.sh"
need skopeo python3 setpriv
need_images
[[ $(id -u) -eq 0 ]] || skip "needs root to run as the test users"
AS_USER=$E2E_DIR/../lib/as-user.sh
for u in moat-subuid moat-single; do
  id "$u" >/dev/null 2>&1 || skip "user $u missing: run tests/lib/rootless-users.sh as root"
done
L=$IMAGES/layout

# A 0755 dir the users can read: the binary and the image (the build tree may be private).
chmod 0755 "$WORK"
mkdir -m 0755 "$WORK/pub"
cp "$MOAT" "$WORK/pub/moat"; chmod 0755 "$WORK/pub/moat"
skopeo copy -q "oci:$L:t" "oci:$WORK/pub/img:t"
skopeo copy -q "oci:$L:t" "oci-archive:$WORK/pub/img.tar:t"
chmod -R a+rX "$WORK/pub"
want=$(skopeo_diffids "oci:$WORK/pub/img:t")

# The reference: the same image unpacked by root.
run_moat 0 image pull --store "$WORK/rootstore" "oci:$WORK/pub/img:t"

as() { local u=$1; shift; "$AS_USER" "$u" "$@"; }
run_as() {  # USER EXPECTED ARGS...: moat as USER, output in $WORK/out, $WORK/err
  local u=$1 want_rc=$2 rc=0; shift 2
  as "$u" "$WORK/pub/moat" "$@" >"$WORK/out" 2>"$WORK/err" || rc=$?
  [[ $rc -eq $want_rc ]] || { cat "$WORK/out" "$WORK/err" >&2; fail "as $u: moat $* exited $rc, expected $want_rc"; }
}

STORES=()
cleanup_stores() {
  local s
  for s in "${STORES[@]}"; do chmod -R u+rwx "$s" 2>/dev/null || true; rm -rf "$s" || true; done
}
trap 'cleanup_stores; cleanup' EXIT

for u in moat-subuid moat-single; do
  home=$(getent passwd "$u" | cut -d: -f6)
  S=$home/.cache/moat-e2e-$$
  D=$home/.cache/moat
  STORES+=("$S")
  [[ -e $D ]] && had_default=1 || { had_default=0; STORES+=("$D"); }
  note "$u: pull and scan into $S"
  # A store dir the user made 0755 is closed to 0700: it holds setuid files.
  as "$u" mkdir -p -m 0755 "$S"
  run_as "$u" 0 image pull -v --store "$S" "oci:$WORK/pub/img:t"
  expect_err "3 layers unpacked"
  [[ $(stat -c '%a %U' "$S") == "700 $u" ]] || fail "$u: store $S is $(stat -c '%a %U' "$S"), expected 700 $u"
  run_as "$u" 0 scan --fail-on none --format json --store "$S" "oci-archive:$WORK/pub/img.tar:t"
  [[ $(py json scan.rootless <"$WORK/out") == True ]] || fail "$u: the report does not say rootless"
  got=$(py json image.layers <"$WORK/out" | python3 -c 'import json,sys; [print(json.loads(l)["diff_id"]) for l in sys.stdin]')
  [[ $got == "$want" ]] || fail "$u: scan reports diffIDs $got"
  for d in $want; do
    h=${d#sha256:}
    [[ $(stat -c %U "$S/layers/$h/diff") == "$u" ]] || fail "$u: layer $h is not the user's"
    py check-store-layer "$S" "$d" || fail "$u: layer $h: disk and index.tsv disagree"
    cmp -s "$S/layers/$h/index.tsv" "$WORK/rootstore/layers/$h/index.tsv" || {
      diff "$WORK/rootstore/layers/$h/index.tsv" "$S/layers/$h/index.tsv" >&2 || true
      fail "$u: layer $h: index.tsv differs from root's unpack of the same layer"; }
  done
  # The image's truth survives the rootless unpack.
  py merged-from-store "$S" $want >"$WORK/user.json"
  py merged-from-store "$WORK/rootstore" $want >"$WORK/root.json"
  # Content and metadata from the index: identical whoever unpacked.
  py compare "$WORK/root.json" "$WORK/user.json" >/dev/null || fail "$u: the merged view differs from root's"
  [[ -z $(ls -A "$S/tmp") ]] || fail "$u: tmp/ not empty"

  note "$u: the default store"
  run_as "$u" 0 image pull "oci:$WORK/pub/img:t"
  [[ $(stat -c '%a %U' "$D") == "700 $u" ]] || fail "$u: default store $D is $(stat -c '%a %U' "$D" 2>&1)"
  run_as "$u" 0 image ls --json
  [[ $(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["store"])' "$WORK/out") == "$D" ]] ||
    fail "$u: the default store is not $D"
  [[ $had_default -eq 1 ]] || { chmod -R u+rwx "$D"; rm -rf "$D"; }
done

note "one user cannot use another's store"
S=$(getent passwd moat-subuid | cut -d: -f6)/.cache/moat-e2e-$$
run_as moat-single 2 image ls --store "$S"
expect_err "^moat: error: "
expect_err "store|permission"
echo "PASS: $TEST_NAME"
