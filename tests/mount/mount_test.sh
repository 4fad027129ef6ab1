#!/usr/bin/env bash
# Rootless mount tests: the real binary, real kernel mounts, run as the
# unprivileged users of tests/lib/rootless-users.sh (moat-subuid has a range in
# /etc/subuid and /etc/subgid, moat-single has none). As root they would prove
# nothing about rootless, so the setup needs root and then drops to those users.
#
# usage: mount_test.sh MOAT_BINARY CASE
# Exits 77 (ctest: skipped) when not root or when the kernel here cannot do it.
set -euo pipefail
BIN=$1
CASE=$2
HERE=$(cd "$(dirname "$0")" && pwd)
LIB=$HERE/../lib

[[ $(id -u) -eq 0 ]] || { echo "SKIP: needs root to create the test users and drop to them" >&2; exit 77; }
for t in jq umoci python3 setpriv; do
  command -v $t >/dev/null || { echo "SKIP: $t missing (scripts/install-deps.sh)" >&2; exit 77; }
done
bash "$LIB/rootless-users.sh"

# Everything the users touch lives in a fresh world-traversable dir: the build
# tree may sit under a 0700 home. Each user gets a store of their own inside.
W=$(mktemp -d /tmp/moat-mount-test.XXXXXX)
chmod 0755 "$W"
cleanup() { rm -rf "$W"; }
trap cleanup EXIT
cp "$BIN" "$W/moat"
chmod 0755 "$W/moat"
mkdir "$W/img" "$W/users"
chmod 1777 "$W/users"

fail() { echo "FAIL [$CASE]: $*" >&2; exit 1; }
mkimg() { [[ -d $W/img/$1 ]] || python3 "$HERE/mkimage.py" "$2" "$W/img/$1"; chmod -R a+rX "$W/img/$1"; }
# as USER moat ARGS...: runs moat as USER with that user's own store.
as() {
  local u=$1; shift
  (cd "$W" && "$LIB/as-user.sh" "$u" env ${MOAT_ENV:-} "$W/moat" "$@" --store "$W/users/$u.store")
}
# mnt USER IMAGE [moat options] -- CMD...: moat mount (store option placed before --).
mnt() {
  local u=$1 img=$2; shift 2
  local opts=()
  while [[ $# -gt 0 && $1 != -- ]]; do opts+=("$1"); shift; done
  shift
  (cd "$W" && "$LIB/as-user.sh" "$u" env ${MOAT_ENV:-} "$W/moat" mount "oci:$W/img/$img" \
     --store "$W/users/$u.store" ${MNT_Q--q} "${opts[@]}" -- "$@")
}
# The image's files as root sees them on a merge made by another tool (umoci, as root).
reference() {
  [[ -d $W/ref-$1 ]] || umoci unpack --image "$W/img/$1:latest" "$W/ref-$1" >/dev/null 2>&1 ||
    fail "umoci unpack $1"
  echo "$W/ref-$1/rootfs"
}
# type and mode of every path but the root itself (the store's diff/ root is 0700
# when a layer has no "./" entry, umoci makes it 0755: not what these tests are about).
LISTING='find . -mindepth 1 -printf "%p %y %m\n" 2>/dev/null | sort'
host_mounts_clean() { ! grep -q "$W" /proc/self/mountinfo; }

case $CASE in

mapping)
  mkimg basic basic
  for u in moat-subuid:subuid moat-single:single; do
    user=${u%%:*} want=${u##*:}
    as "$user" scan --fail-on none --format json "oci:$W/img/basic" >"$W/$user.json" || fail "$user: scan failed"
    [[ $(jq -r .scan.mode "$W/$user.json") == overlay ]] || fail "$user: mode is not overlay"
    [[ $(jq -r .scan.id_mapping "$W/$user.json") == "$want" ]] || fail "$user: id_mapping is not $want"
    [[ $(jq -r .scan.rootless "$W/$user.json") == true ]] || fail "$user: not rootless"
    # moat scan (host side, threads) reads the merged root through the fd the session hands over.
    as "$user" scan --fail-on none -v "oci:$W/img/basic" 2>"$W/v.err" >/dev/null || fail "$user: scan -v failed"
    grep -q "8 entries at the root (8 seen here)" "$W/v.err" ||
      fail "$user: the scanning process does not see the session's merged root"
    # The namespace really maps what the report says.
    lines=$(mnt "$user" basic -- cat /proc/self/uid_map | wc -l)
    [[ $want == subuid && $lines -ge 2 || $want == single && $lines -eq 1 ]] || fail "$user: uid_map has $lines lines"
  done
  # Single mapping says so on stderr; subuid does not.
  MNT_Q= mnt moat-single basic -- true 2>&1 >/dev/null | grep -q "owners other than root are not mapped" ||
    fail "single mapping is not announced"
  ! MNT_Q= mnt moat-subuid basic -- true 2>&1 >/dev/null | grep -q "not mapped" || fail "subuid announced as single"
  # Real root: its own mount namespace, no mapping, nothing on the host.
  "$W/moat" scan --fail-on none --format json --store "$W/root.store" "oci:$W/img/basic" >"$W/root.json" || fail "root scan"
  [[ $(jq -r .scan.mode "$W/root.json") == overlay && $(jq -r .scan.id_mapping "$W/root.json") == none ]] ||
    fail "root: $(jq -c .scan "$W/root.json")"
  inside=$("$W/moat" mount -q --store "$W/root.store" "oci:$W/img/basic" -- grep -c ' - overlay ' /proc/self/mountinfo)
  [[ $inside -ge 1 ]] || fail "root: no overlay inside the namespace"
  host_mounts_clean || fail "root: a mount is visible on the host"
  ;;

merge)
  mkimg basic basic
  ref=$(reference basic)
  (cd "$ref" && eval "$LISTING") >"$W/want"
  for user in moat-subuid moat-single; do
    mnt "$user" basic -- sh -c "$LISTING" >"$W/got.$user"
    diff -u "$W/want" "$W/got.$user" || fail "$user: the kernel's merge differs from umoci's"
    # Whiteouts, an opaque directory and a whited-out directory are honoured by the kernel.
    mnt "$user" basic -- sh -c 'for p in etc/gone deleted/x deleted/sub usr/bin/sticky opaque/old1 opaque/olddir; do
        [ -e "$p" ] && { echo "visible: $p"; exit 1; }; done
      for p in deleted/y deleted/x2 opaque/new etc/passwd; do [ -e "$p" ] || { echo "missing: $p"; exit 1; }; done
      [ "$(cat usr/bin/plain)" = "$(printf "\177ELF now setuid")" ] || { echo "upper layer content not shown"; exit 1; }' ||
      fail "$user: whiteouts or opaque dirs not honoured"
    # A 0000 directory is readable by the namespace's root, as by real root.
    [[ $(mnt "$user" basic -- cat locked/inner) == "secret inside a 0000 dir" ]] || fail "$user: 0000 dir not readable"
    # MOAT_ROOT is the working directory; the command's exit status comes back.
    mnt "$user" basic -- sh -c '[ "$MOAT_ROOT" = "$(pwd)" ] && [ -f etc/passwd ]' || fail "$user: MOAT_ROOT/cwd wrong"
    set +e; mnt "$user" basic -- sh -c 'exit 7'; rc=$?; set -e
    [[ $rc -eq 7 ]] || fail "$user: exit status $rc, want 7"
    # Read-only, nosuid, nodev, noexec.
    mnt "$user" basic -- sh -c 'touch etc/new 2>/dev/null && exit 1;
      grep " - overlay " /proc/self/mountinfo | grep -q "ro,nodev,noexec,nosuid\|ro,nosuid,nodev,noexec" || grep " - overlay " /proc/self/mountinfo | grep -q "nosuid"' ||
      fail "$user: mount is writable or lacks nosuid"
  done
  ;;

setuid)
  mkimg basic basic
  ref=$(reference basic)
  # Done-when of issue 3: the podman workflow in one line, as a user with a subuid range ...
  (cd "$ref" && find . -user root -perm -4000 | sort) >"$W/want.4000"
  mnt moat-subuid basic -- find . -user root -perm -4000 | sort >"$W/got.4000"
  diff -u "$W/want.4000" "$W/got.4000" || fail "subuid: find -user root -perm -4000 differs from root's"
  [[ -s $W/want.4000 ]] || fail "the fixture has no setuid-root file"
  # ... and with a single mapping, find -perm /6000.
  (cd "$ref" && find . -perm /6000 | sort) >"$W/want.6000"
  mnt moat-single basic -- find . -perm /6000 | sort >"$W/got.6000"
  diff -u "$W/want.6000" "$W/got.6000" || fail "single: find -perm /6000 differs from root's"
  ;;

layers)
  mkimg one one
  mkimg many200 many:200
  for user in moat-subuid moat-single; do
    [[ $(mnt "$user" one -- cat hello) == hello ]] || fail "$user: 1-layer image"
    [[ $(mnt "$user" one -- find . -perm -4000) == ./dir/suid ]] || fail "$user: 1-layer setuid"
    n=$(mnt "$user" many200 -- sh -c 'ls layers | wc -l')
    [[ $n -eq 199 ]] || fail "$user: 200 layers show $n files, want 199"
    mnt "$user" many200 -- test ! -e layers/f0 || fail "$user: top-layer whiteout of a bottom file"
    [[ $(mnt "$user" many200 -- cat layers/f199) == 199 ]] || fail "$user: top layer content"
    # Kernels before 6.8 (no fsconfig lowerdir+): short names in the session's tmpfs.
    n=$(MOAT_ENV=MOAT_TEST_LEGACY_MOUNT=1 mnt "$user" many200 -- sh -c 'ls layers | wc -l')
    [[ $n -eq 199 ]] || fail "$user: legacy mount of 200 layers shows $n files"
    MOAT_ENV=MOAT_TEST_LEGACY_MOUNT=1 mnt "$user" one -- test -f hello || fail "$user: legacy mount of 1 layer"
    as "$user" scan --fail-on none --format json --mount overlay "oci:$W/img/many200" | jq -e '.scan.mode == "overlay"' >/dev/null ||
      fail "$user: 200-layer scan not in overlay mode"
  done
  ;;

owners)
  # MOAT_USERNS_STORE=1: moat runs as root of the subuid namespace, unpacks
  # with the true owners, and `moat mount` shows them all, as root sees them.
  mkimg owners owners
  ref=$(reference owners)
  OWNERS='find . -mindepth 1 -printf "%p %y %m %U %G\n" 2>/dev/null | sort'
  (cd "$ref" && eval "$OWNERS") >"$W/want"
  MOAT_ENV=MOAT_USERNS_STORE=1 mnt moat-subuid owners -- sh -c "$OWNERS" >"$W/got"
  diff -u "$W/want" "$W/got" || fail "owners differ from root's view"
  (cd "$ref" && find . -user root -perm -4000 | sort) >"$W/want.4000"
  MOAT_ENV=MOAT_USERNS_STORE=1 mnt moat-subuid owners -- find . -user root -perm -4000 | sort >"$W/got.4000"
  diff -u "$W/want.4000" "$W/got.4000" || fail "find -user root -perm -4000 differs from root's"
  grep -q usersuid "$W/want" || fail "fixture lacks the user-owned setuid file"
  MOAT_ENV=MOAT_USERNS_STORE=1 as moat-subuid scan --fail-on none --format json "oci:$W/img/owners" >"$W/o.json" || fail "scan"
  [[ $(jq -r '.scan | "\(.mode) \(.id_mapping) \(.rootless)"' "$W/o.json") == "overlay subuid true" ]] ||
    fail "scan in the namespace store: $(jq -c .scan "$W/o.json")"
  # The store's files belong to subordinate ids: rm and prune work from inside.
  MOAT_ENV=MOAT_USERNS_STORE=1 as moat-subuid image rm "oci:$W/img/owners" >/dev/null || fail "image rm"
  [[ -z $(ls -A "$W/users/moat-subuid.store/layers") ]] || fail "layers left after rm"
  # Without a range the variable is ignored, with a note.
  MOAT_ENV=MOAT_USERNS_STORE=1 as moat-single scan --fail-on none --format json "oci:$W/img/owners" 2>"$W/single.err" |
    jq -e '.scan.id_mapping == "single"' >/dev/null || fail "single user with MOAT_USERNS_STORE"
  grep -q "MOAT_USERNS_STORE ignored" "$W/single.err" || fail "no note for the ignored MOAT_USERNS_STORE"
  ;;

hostile)
  # Only .wh. entries decide what is hidden: forged overlay xattrs and a 0:0
  # device from the tar change nothing, in the kernel's view and in userspace.
  mkimg hostile hostile
  for user in moat-subuid moat-single; do
    for mode in overlay userspace; do
      mnt "$user" hostile --mount "$mode" -- sh -c '
        [ "$(cat d/keep)" = keep ] || { echo "d made opaque by a forged xattr"; exit 1; }
        [ -e d/keep2 ] && [ ! -c d/keep2 ] || { echo "a 0:0 device from the tar acted as a whiteout or was created"; exit 1; }
        [ "$(ls e)" = keep ] || { echo "a forged redirect changed e: $(ls e)"; exit 1; }
        [ -L host-passwd ] && [ -L up ] || { echo "symlinks not shown as symlinks"; exit 1; }
        [ "$(cat "name
with newline")" = nl ] || { echo "odd name lost"; exit 1; }' 2>&1 || fail "$user/$mode: hostile image"
    done
    as "$user" scan --fail-on none --format json "oci:$W/img/hostile" | jq -e '.scan.mode == "overlay"' >/dev/null ||
      fail "$user: hostile image scan"
  done
  ;;

many)
  # More than the kernel's 500 lowers: auto falls back with one line; overlay refuses.
  mkimg many501 many:501
  # (storage's own limit is 500 layers by default: raised here on purpose)
  as moat-subuid scan --fail-on none --max-layers 600 --format json "oci:$W/img/many501" >"$W/501.json" 2>"$W/501.err" || fail "501 layers: scan failed"
  [[ $(jq -r .scan.mode "$W/501.json") == userspace ]] || fail "501 layers: not userspace"
  [[ $(wc -l <"$W/501.err") -eq 1 ]] && grep -q "500" "$W/501.err" || fail "501 layers: stderr: $(cat "$W/501.err")"
  set +e; as moat-subuid scan --fail-on none --max-layers 600 --mount overlay "oci:$W/img/many501" >/dev/null 2>&1; rc=$?; set -e
  [[ $rc -eq 2 ]] || fail "501 layers with --mount overlay: exit $rc, want 2"
  n=$(mnt moat-subuid many501 --max-layers 600 -- sh -c 'ls layers | wc -l' 2>/dev/null)
  [[ $n -eq 500 ]] || fail "501 layers in userspace: $n files, want 500"
  ;;

kill)
  mkimg basic basic
  for user in moat-subuid moat-single; do
    mnt "$user" basic -- true  # pull first, so the kill hits the session, not the pull
    (cd "$W" && exec "$LIB/as-user.sh" "$user" "$W/moat" mount "oci:$W/img/basic" --store "$W/users/$user.store" -q \
       -- sleep 300) &
    pid=$!
    helper=""
    for _ in $(seq 100); do
      # Not necessarily a child: with a subuid range moat first re-runs itself in the user namespace.
      helper=$(pgrep -U "$(id -u "$user")" -x sleep || true)
      [[ -n $helper ]] && break
      sleep 0.1
    done
    [[ -n $helper ]] || fail "$user: the command never started"
    # The mount exists in the session's namespace only.
    grep -q ' - overlay ' "/proc/$helper/mountinfo" || fail "$user: no overlay in the session"
    host_mounts_clean || fail "$user: the overlay is visible in the host's mount table"
    kill -9 "$pid"
    wait "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$helper" 2>/dev/null || break; sleep 0.1; done
    ! kill -0 "$helper" 2>/dev/null || fail "$user: the command outlived a SIGKILLed moat"
    host_mounts_clean || fail "$user: a mount is left after SIGKILL"
    # Nothing to clean up: the next session works, and the mount point is an empty directory.
    mnt "$user" basic -- test -f etc/passwd || fail "$user: next session after a kill"
    [[ -z $(ls -A "$W/users/$user.store/mnt") ]] || fail "$user: leftovers in the mount point"
  done
  ;;

fallback)
  mkimg basic basic
  for user in moat-subuid moat-single; do
    as "$user" scan --fail-on none --format json "oci:$W/img/basic" >"$W/ov.json" 2>"$W/ov.err" || fail "$user: overlay scan"
    [[ ! -s $W/ov.err ]] || fail "$user: overlay scan printed: $(cat "$W/ov.err")"
    # Forced by flag: no attempt, no message.
    as "$user" scan --fail-on none --format json --mount userspace "oci:$W/img/basic" >"$W/us.json" 2>"$W/us.err" ||
      fail "$user: userspace scan"
    [[ $(jq -r .scan.mode "$W/us.json") == userspace && ! -s $W/us.err ]] || fail "$user: --mount userspace"
    # Same report in both modes, apart from how it was mounted and how long it took.
    strip='del(.scan.mode, .scan.id_mapping, .scan.duration_ms)'
    diff <(jq -S "$strip" "$W/ov.json") <(jq -S "$strip" "$W/us.json") || fail "$user: reports differ between modes"
    # Chosen automatically when the kernel refuses, at each stage it can refuse.
    for seam in 1 idmap mount; do
      MOAT_ENV=MOAT_TEST_DENY_USERNS=$seam as "$user" scan --fail-on none --format json "oci:$W/img/basic" >"$W/fb.json" 2>"$W/fb.err" ||
        fail "$user: auto with refusal '$seam' failed"
      [[ $(jq -r .scan.mode "$W/fb.json") == userspace ]] || fail "$user: refusal '$seam' did not fall back"
      [[ $(wc -l <"$W/fb.err") -eq 1 ]] || fail "$user: refusal '$seam': want one line, got: $(cat "$W/fb.err")"
      grep -q "using the userspace merge. To enable the overlay:" "$W/fb.err" || fail "$user: no how-to: $(cat "$W/fb.err")"
      diff <(jq -S "$strip" "$W/ov.json") <(jq -S "$strip" "$W/fb.json") || fail "$user: fallback report differs"
      set +e
      MOAT_ENV=MOAT_TEST_DENY_USERNS=$seam as "$user" scan --mount overlay "oci:$W/img/basic" >/dev/null 2>"$W/ov2.err"
      rc=$?
      set -e
      [[ $rc -eq 2 ]] || fail "$user: --mount overlay with refusal '$seam': exit $rc, want 2"
      grep -q "moat: hint:" "$W/ov2.err" || fail "$user: --mount overlay gives no hint: $(cat "$W/ov2.err")"
    done
    grep -q "apparmor" "$W/ov2.err" || fail "$user: an AppArmor-like mount refusal does not point to the profile"
    # moat mount in userspace mode: a private copy of the merged view, same entries and modes.
    mnt "$user" basic -- sh -c "$LISTING" | grep -v '^./locked/' >"$W/ov.list"
    mnt "$user" basic --mount userspace -- sh -c "$LISTING" 2>/dev/null | grep -v '^./locked/' >"$W/us.list"
    diff -u "$W/ov.list" "$W/us.list" || fail "$user: userspace view differs from the overlay"
    MOAT_ENV=MOAT_TEST_DENY_USERNS=1 mnt "$user" basic -- sh -c "$LISTING" 2>/dev/null | grep -v '^./locked/' >"$W/fb.list"
    diff -u "$W/ov.list" "$W/fb.list" || fail "$user: automatic userspace view differs"
    [[ -z $(ls -A "$W/users/$user.store/tmp") ]] || fail "$user: the userspace view was not removed"
  done
  # As root the userspace copy can read everything, 0000 directories included.
  "$W/moat" mount -q --store "$W/root.store" "oci:$W/img/basic" -- sh -c "$LISTING" >"$W/root.ov"
  "$W/moat" mount -q --mount userspace --store "$W/root.store" "oci:$W/img/basic" -- sh -c "$LISTING" >"$W/root.us"
  diff -u "$W/root.ov" "$W/root.us" || fail "root: userspace view differs from the overlay"
  ;;

*)
  echo "unknown case $CASE" >&2
  exit 2
  ;;
esac
echo "ok [$CASE]"
