#!/usr/bin/env bash
# Sets up a fresh Debian 12 machine and scans the bundled example image:
# installs what is missing, builds moat, and runs `moat scan` on examples/demo-image.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$(nproc)"
set +e
build/scanner/moat scan oci:examples/demo-image:latest "$@"
status=$?
set -e
echo "moat exited with status $status (0 clean, 1 policy failed, 2 scan failed)" >&2
exit $((status == 2 ? 2 : 0))
