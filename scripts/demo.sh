#!/usr/bin/env bash
# Sets up a fresh Debian 12 machine and scans the bundled example image:
# installs what is missing, builds moat, and runs `moat scan` on examples/demo-image.
# Only the `moat` binary is built, in its own directory (build-demo/) with the
# test suites and benchmarks switched off: building those was almost all of a
# first run's time. scripts/test.sh still builds and runs everything.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
BUILD=${DEMO_BUILD_DIR:-build-demo}
cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DMOAT_BUILD_TESTS=OFF -DMOAT_BUILD_BENCHMARKS=OFF >/dev/null
cmake --build "$BUILD" -j"$(nproc)" --target moat
set +e
"$BUILD"/scanner/moat scan oci:examples/demo-image:latest "$@"
status=$?
set -e
echo "moat exited with status $status (0 clean, 1 policy failed, 2 scan failed)" >&2
exit $((status == 2 ? 2 : 0))
