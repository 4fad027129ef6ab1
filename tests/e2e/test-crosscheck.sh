#!/usr/bin/env bash
# The store against independent readers of the same images:
#  - per layer: index.tsv against the layer tar itself (Python's tarfile):
#    every entry, type, mode with setuid/setgid/sticky, uid/gid, size, link
#    target, user xattrs, whiteouts and opaque markers; and index.tsv against
#    the layer's diff/ on disk (0:0 char devices for whiteouts, the opaque
#    xattr, owners when unpacked as root, device placeholders' override_stat);
#  - merged: the store's layers applied bottom-up from index.tsv (e2e.py)
#    against `umoci unpack` and `umoci raw unpack` (as root) of the same image:
#    path set, type, mode, uid/gid, size, symlink target, content sha256,
#    device numbers;
#  - umoci's unpacked tree of :t imported as dir: against the tree itself.
# Root only: umoci needs root to give files their real owners.
source "$(dirname "$0")/lib.sh"
need umoci skopeo python3
need_images
[[ $(id -u) -eq 0 ]] || skip "needs root (umoci unpack with real owners)"

L=$IMAGES/layout
S=$WORK/store
failed=0
check() { "$@" || { failed=1; echo "^^^ failed: ${*:1:4}" >&2; }; }

images=("$L:t" "$L:v2" "$L:other")
if [[ -f $IMAGES/buildah.tar ]]; then
  skopeo copy -q "oci-archive:$IMAGES/buildah.tar" "oci:$WORK/buildah:latest"
  images+=("$WORK/buildah:latest")
fi
for img in "${images[@]}"; do
  layout=${img%:*}
  note "$img"
  run_moat 0 image pull --store "$S" "oci:$img"
  ids=$(skopeo_diffids "oci:$img")
  blobs=$(skopeo inspect "oci:$img" | py json Layers)
  while read -r d b; do
    check py check-store-layer "$S" "$d"
    check py check-layer-tar "$S" "$d" "$layout/blobs/sha256/${b#sha256:}"
  done < <(paste -d' ' <(echo "$ids") <(echo "$blobs"))

  # shellcheck disable=SC2086
  py merged-from-store "$S" $ids >"$WORK/moat.json" || fail "$img: the store's layers do not apply"
  rm -rf "$WORK/bundle" "$WORK/raw"
  umoci unpack --image "$img" "$WORK/bundle" >/dev/null 2>"$WORK/umoci.log" || { cat "$WORK/umoci.log" >&2; fail "umoci unpack $img"; }
  py merged-from-fs "$WORK/bundle/rootfs" >"$WORK/umoci.json"
  note "$img: moat's store (A) against umoci unpack (B)"
  check py compare "$WORK/moat.json" "$WORK/umoci.json"
  if [[ $img == "$L:t" ]]; then
    note "$img: umoci's unpacked tree, imported by moat as dir:, against the tree itself"
    run_moat 0 image pull -v --store "$WORK/dirstore" "dir:$WORK/bundle/rootfs"
    expect_err "1 layers unpacked"
    h=$(cat "$WORK/out")
    check py check-store-layer "$WORK/dirstore" "sha256:$h"
    py merged-from-store "$WORK/dirstore" "sha256:$h" >"$WORK/dir.json"
    check py compare "$WORK/dir.json" "$WORK/umoci.json"
    run_moat 0 image pull -v --store "$WORK/dirstore" "dir:$WORK/bundle/rootfs"
    expect_err "0 layers unpacked, 1 reused"
  fi
  umoci raw unpack --image "$img" "$WORK/raw" >/dev/null 2>"$WORK/umoci.log" || { cat "$WORK/umoci.log" >&2; fail "umoci raw unpack $img"; }
  py merged-from-fs "$WORK/raw" >"$WORK/umoci-raw.json"
  note "$img: moat's store (A) against umoci raw unpack (B)"
  check py compare "$WORK/moat.json" "$WORK/umoci-raw.json"
  chmod -R u+rwx "$WORK/bundle" "$WORK/raw"; rm -rf "$WORK/bundle" "$WORK/raw"
done

# Spot checks of what the merged view must say, whatever umoci does.
py merged-from-store "$S" $(skopeo_diffids "oci:$L:t") >"$WORK/moat.json"
python3 - "$WORK/moat.json" <<'EOF' || failed=1
import json, sys
m = json.load(open(sys.argv[1]))
def want(p, **kw):
    e = m.get(p)
    assert e is not None, p + " missing"
    for k, v in kw.items():
        assert e.get(k) == v, "%s: %s is %r, expected %r" % (p, k, e.get(k), v)
def gone(p):
    assert p not in m, p + " should be hidden"
want("/bin/busybox", type="f", mode=0o4755, uid=0, gid=0)
want("/bin/ls", type="f", mode=0o4755)                      # hardlink inside layer 1
want("/usr/bin/bb-hardlink", type="f", mode=0o4755, sha256=m["/bin/busybox"]["sha256"])  # to layer 1
want("/usr/bin/newgrp", mode=0o755, gid=42)                 # setgid dropped in layer 2
want("/etc/shadow", mode=0o640, gid=42)
want("/tmp", type="d", mode=0o1777)
want("/bin/sh", type="l", link="/bin/busybox")
want("/bin/abs-link", type="l", link="/etc/passwd")
want("/lib", type="l", link="usr/lib")
want("/home/alice/bobs-file", uid=1000, gid=1000)
want("/var/cache/app/crafted", uid=1000, mode=0o600)
want("/var/cache/app", mode=0o750, gid=4)                   # the opaque dir keeps its own attributes
want("/srv/ro", mode=0o500); want("/srv/zero", mode=0); want("/srv/rx", mode=0o555)
want("/dev/null", type="c", dev="1:3", mode=0o666)
want("/data/fifo", type="p")
want("/data/ünïcødé", type="f"); want("/data/name with spaces", type="f")
gone("/opt/secret.txt"); gone("/opt/keep"); gone("/var/log/old"); gone("/var/log/old/1.log")
for n in ("1", "2", "3", "new"):
    gone("/var/cache/app/" + n)
EOF
[[ $failed -eq 0 ]] || fail "the store disagrees with the independent readers (see above)"
echo "PASS: $TEST_NAME"
