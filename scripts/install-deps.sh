#!/usr/bin/env bash
# Installs every Debian 12 package moat needs to build, test and benchmark.
# Idempotent: packages already present are not fetched again.
set -euo pipefail

PKGS=(
  build-essential cmake ninja-build pkg-config git time
  libarchive-dev zlib1g-dev libzstd-dev libssl-dev nlohmann-json3-dev
  libtbb-dev libspdlog-dev libcli11-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  libvectorscan-dev libre2-dev libcurl4-openssl-dev
  # independent producers of real images and helpers used by the tests
  skopeo umoci podman buildah uidmap fuse-overlayfs
  zstd gzip tar python3 jq attr
)

missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  SUDO=""
  [[ $(id -u) -ne 0 ]] && SUDO="sudo"
  echo "install-deps: installing ${missing[*]}" >&2
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
