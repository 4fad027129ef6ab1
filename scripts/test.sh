#!/usr/bin/env bash
# The one command that sets up a fresh Debian 12 machine and runs every test:
# installs what is missing, builds from zero with warnings as errors, creates
# the unprivileged test users (when run as root), and runs ctest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
BUILD=${BUILD_DIR:-build}
rm -rf "$BUILD"
cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DMOAT_WERROR=ON
cmake --build "$BUILD" -j"$(nproc)"
if [[ $(id -u) -eq 0 ]]; then
  bash tests/lib/rootless-users.sh
else
  echo "test.sh: not root: rootless tests that need the test users will report as skipped" >&2
fi
ctest --test-dir "$BUILD" --output-on-failure -j"$(nproc)" --timeout 1200
