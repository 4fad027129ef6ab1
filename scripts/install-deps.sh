#!/usr/bin/env bash
# Installs every Debian 12 package moat needs to build, test and benchmark.
# Idempotent: packages already present are not fetched again.
set -euo pipefail

PKGS=(
  build-essential cmake ninja-build pkg-config git time
  libarchive-dev zlib1g-dev libzstd-dev libssl-dev nlohmann-json3-dev
  libtbb-dev libspdlog-dev libcli11-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  libvectorscan-dev libre2-dev libcurl4-openssl-dev libsqlite3-dev
  libgpgme-dev gnupg      # trust: OpenPGP simple signing (scanner/trust/)
  libyaml-cpp-dev         # trust: registries.d (scanner/trust/)
  libisal-dev  # ISA-L igzip: fast gzip layer inflate (storage/unpack.cc); zlib without it
  libtoml11-dev  # storage.conf (containers-storage:) and registries.conf (docker://)
  # independent producers of real images and helpers used by the tests
  skopeo umoci podman buildah uidmap fuse-overlayfs debootstrap
  zstd gzip tar python3 python3-jsonschema jq attr libcap2-bin procps util-linux
  docker-registry openssl apache2-utils  # a loopback TLS registry with htpasswd: tests/registry, tests/cstorage, tests/trust
  rpm db5.3-util  # rpmbuild, rpm --root, db5.3_load for the rpm images (tests/scan/test-rpm.sh)
  clang libclang-rt-14-dev  # libFuzzer with ASan/UBSan: tests/fuzz, scripts/fuzz.sh (fuzz.smoke in CI)
  strace  # scripts/torture.sh: lock waits of concurrent scans (tests/e2e/lock_waits.py)
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
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# The SARIF multitool validates moat's SARIF in the tests (npm registry). Best
# effort: without npm the SARIF validation test reports itself as skipped.
if [[ ! -x /opt/sarif/node_modules/.bin/sarif-multitool ]] && command -v npm >/dev/null; then
  SUDO=""
  [[ $(id -u) -ne 0 ]] && SUDO="sudo"
  if $SUDO npm install --silent --no-audit --no-fund --prefix /opt/sarif @microsoft/sarif-multitool@5.7.0 >/dev/null 2>&1; then
    # npm skips the package's postinstall, which marks its native binary executable.
    $SUDO find /opt/sarif/node_modules/@microsoft -type f -name 'Sarif.Multitool' -exec chmod u+x,go+rx {} + || true
  else
    echo "install-deps: npm could not install @microsoft/sarif-multitool; its test will be skipped" >&2
  fi
fi
