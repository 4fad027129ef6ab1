#!/usr/bin/env bash
# make-debian-image.sh OUTDIR [PACKAGE,...]: a real, clean Debian 12 image
# built by independent tools, for tests/scan/test-debian.sh (and, with extra
# packages such as python3,git,openssh-server, for the secret precision test
# tests/secrets/test-debian-tools.sh).
#   OUTDIR/rootfs  the tree that is in the image (the reference for `find`, dpkg)
#   OUTDIR/layout  an OCI image layout, tag `bookworm`, one layer, made by umoci
#                  (made readable by everyone: the test users scan it)
# Must run as root (debootstrap, and umoci keeps owners only as root).
#
# The rootfs is `debootstrap --variant=minbase bookworm`, tidied the way the
# official Debian images are (debuerreotype): /dev emptied (the runtime
# provides it), apt's cache and lists removed, and the build host's
# /etc/resolv.conf and /etc/hostname dropped.
#
# Cache: the raw debootstrap is kept as a tarball in $MOAT_TEST_CACHE (default
# /var/cache/moat-tests) and reused; delete it to get a fresh one.
# Time: debootstrap ~30-35 s on a fast mirror (once), extract + umoci repack ~6 s.
#
# Exit: 0 done, 77 cannot be built here (no debootstrap, no network to the
# mirror), 1 anything else (a bug: the caller must not pass).
# Env: MOAT_TEST_CACHE, MOAT_DEBIAN_MIRROR (default http://deb.debian.org/debian).
set -euo pipefail
OUT=${1:?usage: $0 OUTDIR [PACKAGE,...]}
INCLUDE=${2:-}
MIRROR=${MOAT_DEBIAN_MIRROR:-http://deb.debian.org/debian}
CACHE=${MOAT_TEST_CACHE:-/var/cache/moat-tests}
SUITE=bookworm

skip() { echo "make-debian-image: cannot build the Debian image here: $*" >&2; exit 77; }
die() { echo "make-debian-image: $*" >&2; exit 1; }
[[ $(id -u) -eq 0 ]] || skip "must run as root (debootstrap, owners)"
for t in umoci tar zstd; do command -v "$t" >/dev/null || skip "$t is not installed (scripts/install-deps.sh)"; done

ARCH=$(dpkg --print-architecture)
FLAVOUR=minbase${INCLUDE:+-${INCLUDE//,/-}}
TARBALL=$CACHE/debian-$SUITE-$FLAVOUR-$ARCH.tar.zst
# GNU tar, keeping everything a layer can carry: numeric owners, modes, xattrs, ACLs.
TAR_KEEP=(--numeric-owner --xattrs --xattrs-include='*' --acls)

mkdir -p "$CACHE"
# One debootstrap at a time (tests may run concurrently); the others wait and reuse it.
exec 9>"$CACHE/.debian-$SUITE-$FLAVOUR.lock"
flock 9
if [[ ! -s $TARBALL ]]; then
  if ! command -v debootstrap >/dev/null; then
    echo "make-debian-image: installing debootstrap" >&2
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap; } >/dev/null 2>&1 ||
      skip "debootstrap is not installed and apt-get could not install it"
  fi
  # No mirror, no image: a skip, never a pass.
  wget -q -T 20 -t 2 -O /dev/null "$MIRROR/dists/$SUITE/InRelease" ||
    skip "the mirror $MIRROR is unreachable"
  BS=$(mktemp -d "$CACHE/debootstrap.XXXXXX")
  LOG=$BS.log
  echo "make-debian-image: debootstrap --variant=minbase ${INCLUDE:+--include=$INCLUDE }$SUITE from $MIRROR (no cache in $CACHE)" >&2
  t0=$SECONDS
  if ! debootstrap --variant=minbase ${INCLUDE:+--include="$INCLUDE"} "$SUITE" "$BS/rootfs" "$MIRROR" >"$LOG" 2>&1; then
    tail -n 20 "$LOG" >&2
    net=0
    # A download failure half-way is the network's fault; anything else is ours.
    grep -qiE "couldn't download|failed getting release|couldn't retrieve|unable to (connect|resolve)" "$LOG" && net=1
    rm -rf "$BS" "$LOG"
    [[ $net -eq 1 ]] && skip "debootstrap could not download from $MIRROR"
    die "debootstrap failed (log above)"
  fi
  echo "make-debian-image: debootstrap took $((SECONDS - t0)) s" >&2
  tar -C "$BS/rootfs" "${TAR_KEEP[@]}" --zstd -cpf "$TARBALL.tmp" .
  mv "$TARBALL.tmp" "$TARBALL"
  rm -rf "$BS" "$LOG"
else
  echo "make-debian-image: reusing $TARBALL" >&2
fi
flock -u 9

# The OCI image: an empty image, unpacked to a bundle, the rootfs put in
# the bundle, and repacked (umoci computes the layer from the tree as root,
# so owners, modes and xattrs are the tree's).
mkdir -p "$OUT"
L=$OUT/layout B=$OUT/bundle R=$OUT/bundle/rootfs
rm -rf "$L" "$B" "$OUT/rootfs"
umoci init --layout "$L"
umoci new --image "$L:$SUITE"
umoci config --image "$L:$SUITE" --os linux --architecture "$ARCH" --config.cmd /bin/bash \
  --config.env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  --no-history
umoci unpack --image "$L:$SUITE" "$B" >/dev/null
tar -C "$R" "${TAR_KEEP[@]}" --same-owner --zstd -xpf "$TARBALL"

# Tidy as the official images do (see the top).
find "$R/dev" -mindepth 1 -delete
rm -rf "$R"/var/cache/apt/archives/*.deb "$R"/var/cache/apt/*.bin "$R"/var/lib/apt/lists/*
mkdir -p "$R/var/lib/apt/lists/partial"
rm -f "$R/etc/resolv.conf" "$R/etc/hostname"

umoci repack --image "$L:$SUITE" --history.created_by "debootstrap --variant=minbase ${INCLUDE:+--include=$INCLUDE }$SUITE" "$B" >/dev/null
umoci gc --layout "$L"
mv "$R" "$OUT/rootfs"
rm -rf "$B"
chmod 0755 "$OUT"
chmod -R a+rX "$L"
