#!/usr/bin/env bash
# make-images.sh OUT: builds the images the e2e tests use, with real producers,
# once per test run (the ctest fixture e2e_images). Exits 77 when a producer
# is missing. Leaves OUT/READY when everything is there.
#
#   OUT/layout (OCI layout, made by umoci; layer 3 of :t is written by e2e.py
#   because no Debian producer emits opaque directories or cross-layer hardlinks)
#     :v1     1 layer  a small root fs: setuid/setgid files, owners 0/42/1000/1001,
#                      relative and absolute symlinks, a hardlink, a sticky dir,
#                      0500 and 0000 dirs, a fifo, a char device, odd names
#     :v2     2 layers + umoci diff: a deleted file (whiteout), a deleted dir,
#                      a rm -rf'd and recreated dir, chmod/chown/content changes
#     :t      3 layers + crafted: opaque dir, explicit whiteout, hardlink to a
#                      file of layer 1, a 0555 dir with content
#     :big    3 layers v1 + 2 x ~140 MB of base64 noise in ~90 files each
#                      (slow enough to catch a pull in the act)
#     :other  2 layers v1 + a different small layer (shares the base with :t)
#   OUT/buildah.tar   oci-archive made by buildah from :v1 plus a file (if buildah works)
set -euo pipefail
OUT=${1:?usage: make-images.sh OUT}
E2E_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
for t in umoci skopeo python3; do
  command -v $t >/dev/null || { echo "make-images.sh: $t is not installed" >&2; exit 77; }
done
[[ $(id -u) -eq 0 ]] || echo "make-images.sh: not root: owners other than yours cannot be made, using umoci --rootless" >&2
ROOTLESS=()
[[ $(id -u) -eq 0 ]] || ROOTLESS=(--rootless)

rm -rf "$OUT"
mkdir -p "$OUT"
L=$OUT/layout
B=$OUT/bundle
umoci init --layout "$L"
umoci new --image "$L:base"

# ---- layer 1 -------------------------------------------------------------
umoci unpack "${ROOTLESS[@]}" --image "$L:base" "$B"
R=$B/rootfs
mkdir -p "$R"/{bin,etc,usr/bin,usr/lib,home/alice,opt,srv,data,dev,var/cache/app,var/log/old,tmp}
printf '#!/bin/sh\necho busybox\n' > "$R/bin/busybox"
chmod 4755 "$R/bin/busybox"
ln "$R/bin/busybox" "$R/bin/ls"                 # hardlink inside the layer
ln -s busybox "$R/bin/sh"                       # relative symlink
ln -s /etc/passwd "$R/bin/abs-link"             # absolute symlink (must never be followed)
ln -s usr/lib "$R/lib"                          # symlink to a directory
printf 'newgrp\n' > "$R/usr/bin/newgrp"; chmod 2755 "$R/usr/bin/newgrp"
printf 'lib\n' > "$R/usr/lib/libc.so.6"
printf 'root:x:0:0:root:/root:/bin/sh\nalice:x:1000:1000::/home/alice:/bin/sh\n' > "$R/etc/passwd"
printf 'root:*:1::::::\n' > "$R/etc/shadow"; chmod 0640 "$R/etc/shadow"
printf 'profile\n' > "$R/home/alice/.profile"
printf 'bob\n' > "$R/home/alice/bobs-file"
printf 'secret-token\n' > "$R/opt/secret.txt"
printf 'keep\n' > "$R/opt/keep"
for i in 1 2 3; do printf 'cache %s\n' $i > "$R/var/cache/app/$i"; done
printf 'old log\n' > "$R/var/log/old/1.log"
mkdir -p "$R/srv/ro" "$R/srv/zero"
printf 'inside 0500\n' > "$R/srv/ro/file"; chmod 0500 "$R/srv/ro"
printf 'inside 0000\n' > "$R/srv/zero/file"; chmod 0000 "$R/srv/zero"
printf 'spaces\n' > "$R/data/name with spaces"
printf 'unicode\n' > "$R/data/ünïcødé"
: > "$R/data/empty"
head -c 70000 /dev/urandom > "$R/data/binary"
mkfifo "$R/data/fifo"
chmod 1777 "$R/tmp"
if [[ $(id -u) -eq 0 ]]; then
  mknod "$R/dev/null" c 1 3; chmod 0666 "$R/dev/null"
  chown 0:42 "$R/etc/shadow" "$R/usr/bin/newgrp"
  chown -R 1000:1000 "$R/home/alice"
  chown 1001:1001 "$R/home/alice/bobs-file"
  chmod 4755 "$R/bin/busybox"; chmod 2755 "$R/usr/bin/newgrp"   # chown clears them
fi
chmod 0700 "$R/home/alice"
umoci repack --refresh-bundle --history.created_by "layer 1: umoci base" --image "$L:v1" "$B"

# ---- layer 2: umoci's own diff of the changed bundle ----------------------
rm "$R/opt/secret.txt"                                   # a whiteout
rm -rf "$R/var/log/old"                                  # a deleted directory
rm -rf "$R/var/cache/app"; mkdir "$R/var/cache/app"      # recreated: whiteouts per entry
printf 'new cache\n' > "$R/var/cache/app/new"
printf 'bin:x:1:1::/bin:/bin/false\n' >> "$R/etc/passwd"  # content change
chmod 0755 "$R/usr/bin/newgrp"                           # setgid dropped
[[ $(id -u) -ne 0 ]] || chown 1000:1000 "$R/home/alice/bobs-file"
rm "$R/bin/sh"; ln -s /bin/busybox "$R/bin/sh"          # symlink retargeted
printf 'added in layer 2\n' > "$R/opt/new"
umoci repack --refresh-bundle --history.created_by "layer 2: umoci diff" --image "$L:v2" "$B"
chmod -R u+rwx "$B"; rm -rf "$B"

# ---- layer 3: crafted (opaque dir, explicit whiteout, cross-layer hardlink) -
python3 "$E2E_DIR/e2e.py" add-crafted-layer "$L" v2 t

# ---- :other, a second image on the same base ------------------------------
umoci unpack "${ROOTLESS[@]}" --image "$L:v1" "$B"
printf 'other image\n' > "$B/rootfs/opt/other"
umoci repack --history.created_by "other: one more file" --image "$L:other" "$B"
chmod -R u+rwx "$B"; rm -rf "$B"

# ---- :big ------------------------------------------------------------------
umoci unpack "${ROOTLESS[@]}" --image "$L:v1" "$B"
mkdir -p "$B/rootfs/big1" "$B/rootfs/big2"
head -c $((100 * 1024 * 1024)) /dev/urandom | base64 -w 0 | split -b 1600000 -a 3 - "$B/rootfs/big1/chunk."
umoci repack --refresh-bundle --history.created_by "big: noise 1" --image "$L:big" "$B"
head -c $((100 * 1024 * 1024)) /dev/urandom | base64 -w 0 | split -b 1600000 -a 3 - "$B/rootfs/big2/chunk."
umoci repack --history.created_by "big: noise 2" --image "$L:big" "$B"
chmod -R u+rwx "$B"; rm -rf "$B"

umoci gc --layout "$L"

# ---- buildah, an independent producer on the same base ---------------------
if command -v buildah >/dev/null; then
  BR=$OUT/buildah-root
  # buildah names the image after its path, which must be lowercase: a lowercase symlink.
  LC=/tmp/moat-e2e-buildah-src.$$
  ln -sfn "$L" "$LC"
  if ctr=$(buildah --root "$BR/root" --runroot "$BR/run" --storage-driver vfs from --pull-never "oci:$LC:v1" 2>"$OUT/buildah.log") &&
     printf 'from buildah\n' > "$OUT/buildah-file" &&
     buildah --root "$BR/root" --runroot "$BR/run" --storage-driver vfs copy "$ctr" "$OUT/buildah-file" /opt/buildah-file >>"$OUT/buildah.log" 2>&1 &&
     buildah --root "$BR/root" --runroot "$BR/run" --storage-driver vfs commit "$ctr" "oci-archive:$OUT/buildah.tar:latest" >>"$OUT/buildah.log" 2>&1; then
    :
  else
    echo "make-images.sh: buildah could not build (tests that need it will skip):" >&2
    cat "$OUT/buildah.log" >&2 || true
    rm -f "$OUT/buildah.tar"
  fi
  buildah --root "$BR/root" --runroot "$BR/run" --storage-driver vfs rm -a >/dev/null 2>&1 || true
  rm -f "$LC"
  chmod -R u+rwx "$BR" 2>/dev/null || true
  rm -rf "$BR"
fi

touch "$OUT/READY"
