#!/usr/bin/env bash
# containers-storage: rootless overlay stores that use fuse-overlayfs as
# mount_program, as podman makes them as moat-subuid: whiteouts are literal
# `.wh.` files in the layers' diff/, and with force_mask = "shared" every file
# is stored 0755/0644 as the user, its real owner and mode only in the
# user.containers.override_stat xattr (where c/storage 4.3 even drops the
# setuid bit). moat takes owners, modes and whiteouts from the tar-split's
# original headers, so both scans equal the scan of the OCI layout.
source "$(dirname "$0")/lib.sh"
need fuse-overlayfs getfattr
oci_report
for variant in plain force_mask; do
  note "fuse-overlayfs store ($variant)"
  G=$W/u/graph-$variant
  extra=""
  [[ $variant == force_mask ]] && extra='force_mask = "shared"'
  user_conf "[storage]
driver = \"overlay\"
graphroot = \"$G\"
runroot = \"$W/u/run-$variant\"
[storage.options.overlay]
mount_program = \"/usr/bin/fuse-overlayfs\"
$extra"
  # libpod keeps its own database of the store it last used: a fresh one per variant.
  as_user podman unshare rm -rf "$W/u/data/containers" 2>/dev/null || true
  podman_u pull -q "oci-archive:$W/pub/demo.tar" >/dev/null
  podman_u tag "$(podman_u images -q | head -1)" moat-test/demo:1
  [[ -n $(find "$G/overlay" -name .wh.aws-credentials) ]] || fail "expected a literal .wh. file in the $variant store"
  if [[ $variant == force_mask ]]; then
    f=$(find "$G/overlay" -path '*/diff/usr/local/bin/rootsh')
    getfattr --absolute-names -n user.containers.override_stat "$f" 2>/dev/null | grep -q override_stat ||
      fail "force_mask store without user.containers.override_stat"
    [[ $(stat -c %a "$f") != 4755 ]] || fail "force_mask kept the real mode on disk"
  fi
  moat_u 0 scan --store "$W/u/s-$variant" --fail-on none --format json -o "$W/u/out/$variant.json" containers-storage:moat-test/demo:1
  same_findings "$W/u/out/oci.json" "$W/u/out/$variant.json"
  jq -e '.findings[] | select(.path == "/usr/local/bin/rootsh" and .mode == "4755" and .owner.uid == 0)' \
    "$W/u/out/$variant.json" >/dev/null || fail "$variant: rootsh is not reported 4755 root"
  podman_u rmi -a -f >/dev/null 2>&1 || true
done
echo "PASS: $TEST_NAME"
