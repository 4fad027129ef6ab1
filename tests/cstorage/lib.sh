# Shared helpers for the containers-storage tests (sourced, never run).
#
#   bash test-NAME.sh MOAT_BINARY
# Stores are made by real podman and buildah, as the unprivileged test user
# moat-subuid (and as root where a test says so), each in its own
# XDG_DATA_HOME/XDG_CONFIG_HOME under a fresh temp dir: the user's real store
# is never touched and tests can run side by side. Images come from the
# committed demo image (examples/demo-image) through a local oci-archive: no
# network. Without root, podman, buildah or the test users: exit 77 (skipped).
set -euo pipefail
MOAT_SRC=${1:?usage: $0 MOAT_BINARY}
CS_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SRC_ROOT=$(cd "$CS_DIR/../.." && pwd)
LIB=$SRC_ROOT/tests/lib
TEST_NAME=$(basename "$0" .sh)

source "$LIB/common.sh"
need_root
need podman buildah skopeo jq setpriv newuidmap
bash "$LIB/rootless-users.sh"

W=$(mktemp -d /tmp/moat-cs-"$TEST_NAME".XXXXXX)
chmod 0755 "$W"
U=${CS_USER:-moat-subuid}  # test-single.sh: moat-single (no subordinate ids)
cleanup() {
  # podman's files under $W belong to the user's subordinate ids: remove them from its namespace.
  if [[ -d $W/u ]]; then
    "$LIB/as-user.sh" $U env XDG_DATA_HOME="$W/u/data" XDG_CONFIG_HOME="$W/u/config" XDG_RUNTIME_DIR="$W/u/xdg" \
      podman unshare find "$W/u" -mindepth 1 -maxdepth 1 ! -name xdg -exec rm -rf {} + >/dev/null 2>&1 || true
    # rootless podman's pause process (one per XDG_RUNTIME_DIR: this test's own) ends by its pid.
    [[ -f $W/u/xdg/libpod/tmp/pause.pid ]] && kill "$(cat "$W/u/xdg/libpod/tmp/pause.pid")" 2>/dev/null || true
  fi
  chmod -R u+rwx "$W" 2>/dev/null || true
  rm -rf "$W"
}
trap cleanup EXIT
install -m 0755 "$MOAT_SRC" "$W/moat"
mkdir -m 0755 "$W/pub"
cp -r "$SRC_ROOT/examples/demo-image" "$W/pub/demo"
skopeo copy -q "oci:$W/pub/demo:latest" "oci-archive:$W/pub/demo.tar:latest"
chmod -R a+rX "$W/pub"
mkdir -m 0755 "$W/u"
chown $U: "$W/u"
mkdir -p "$W/u/config/containers" "$W/u/data" "$W/u/out" "$W/u/xdg"
chown -R $U: "$W/u"
chmod 0700 "$W/u/xdg"

# as_user CMD...: CMD as the test user ($U) with this test's podman world.
as_user() {
  (cd "$W" && "$LIB/as-user.sh" $U env XDG_DATA_HOME="$W/u/data" XDG_CONFIG_HOME="$W/u/config" \
    XDG_RUNTIME_DIR="$W/u/xdg" ${CS_ENV:-} "$@")
}
# user_conf TEXT: the user's storage.conf ($XDG_CONFIG_HOME/containers/storage.conf).
user_conf() {
  printf '%s\n' "$1" >"$W/u/config/containers/storage.conf"
  chown $U: "$W/u/config/containers/storage.conf"
}
podman_u() { as_user podman "$@" 2> >(grep -v 'is not a shared mount' >&2); }

# moat_u WANT_STATUS ARGS...: moat ARGS as the user; stdout in $W/out, stderr in $W/err.
moat_u() {
  local want=$1 rc=0; shift
  as_user "$W/moat" "$@" >"$W/out" 2>"$W/err" || rc=$?
  if [[ $rc -ne $want ]]; then
    echo "--- stdout:" >&2; head -c 4000 "$W/out" >&2 || true
    echo "--- stderr:" >&2; head -c 4000 "$W/err" >&2 || true
    fail "moat $* exited $rc, expected $want"
  fi
}

# The reference report: the same image scanned from its OCI layout, as the same user.
oci_report() {
  moat_u 0 scan --store "$W/u/ref.store" --fail-on none --format json -o "$W/u/out/oci.json" "oci:$W/pub/demo:latest"
}
# same_findings A.json B.json: identical reports apart from the reference and the duration.
same_findings() {
  local a=$1 b=$2
  diff <(jq -S 'del(.image.reference, .scan.duration_ms)' "$a") <(jq -S 'del(.image.reference, .scan.duration_ms)' "$b") >&2 ||
    fail "$b differs from $a beyond reference and duration"
}
# same_findings_reblobbed A.json B.json: the same, but the blobs were recompressed on the way
# (skopeo exporting buildah's uncompressed layers gzips them): manifest and blob digests differ.
same_findings_reblobbed() {
  local a=$1 b=$2 f='del(.image.reference, .scan.duration_ms, .image.manifest_digest, .image.layers[].digest)'
  diff <(jq -S "$f" "$a") <(jq -S "$f" "$b") >&2 || fail "$b differs from $a beyond reference, duration and blob digests"
}
# setuid_paths REPORT: the root-owned setuid files moat reports (not deleted ones).
setuid_paths() {
  jq -r '.findings[] | select(.category == "setuid" and .deleted == false and .owner.uid == 0) | .path' "$1" | sort -u
}
# podman_setuid IMAGE: what `podman unshare` + `podman image mount` + find show the user.
podman_setuid() {
  as_user podman unshare sh -c 'm=$(podman image mount "$1") && cd "$m" && find . -user root -perm -4000 | sed "s/^\.//" | sort -u; podman image unmount "$1" >/dev/null' sh "$1" 2> >(grep -v 'is not a shared mount' >&2)
}
# top_layer GRAPHROOT DRIVER NAME: podman's id of the top layer of the image NAME (read from images.json).
top_layer() {
  jq -r --arg n "$3" '.[] | select(.names | index($n)) | .layer' "$1/$2-images/images.json"
}

# built_setuid_image: buildah commits moat-test/built:1 from moat-test/demo:1
# with a setuid-root /usr/bin/moat-suid-tool (a layer c/storage makes from a
# container's diff); moat scans it from the store ($W/u/out/built-cs.json)
# and from skopeo's OCI export ($W/u/out/built-oci.json), and the two agree.
built_setuid_image() {
  cp /bin/true "$W/pub/tool"
  chmod 0755 "$W/pub/tool"
  local ctr
  ctr=$(as_user buildah from -q localhost/moat-test/demo:1 2>/dev/null)
  as_user buildah copy --chmod 4755 --chown 0:0 "$ctr" "$W/pub/tool" /usr/bin/moat-suid-tool >/dev/null 2>&1
  as_user buildah config --user 1000 "$ctr" >/dev/null 2>&1
  as_user buildah commit -q "$ctr" moat-test/built:1 >/dev/null 2>&1
  as_user buildah rm "$ctr" >/dev/null 2>&1
  as_user skopeo copy -q containers-storage:localhost/moat-test/built:1 "oci:$W/u/built:1" 2>/dev/null ||
    fail "skopeo could not export buildah's image"
  moat_u 0 scan --store "$W/u/ref.store" --fail-on none --format json -o "$W/u/out/built-oci.json" "oci:$W/u/built:1"
  moat_u 0 scan --store "$W/u/s1" --fail-on none --format json -o "$W/u/out/built-cs.json" containers-storage:moat-test/built:1
  same_findings_reblobbed "$W/u/out/built-oci.json" "$W/u/out/built-cs.json"
}
