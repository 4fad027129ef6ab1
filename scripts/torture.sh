#!/usr/bin/env bash
# Store torture (docs/fuzzing.md), the long form of the ctest label `torture`:
#   1. the kill campaign: RUNS (default 50) SIGKILLs of `moat image pull` /
#      `moat scan` at random moments, each followed by a scan whose report
#      must equal a clean run's and a prune that must leave tmp/ empty
#      (tests/e2e/test-killed.sh with KILL_RUNS=RUNS);
#   2. eight concurrent scans of overlapping images on one store, :big among
#      them (tests/e2e/test-concurrent.sh with CONCURRENT_BIG=1), straced to
#      check that no lock wait lasts longer than the slowest unpack (LOCK_TRACE=1);
#   3. a full disk during a pull (tests/e2e/test-fulldisk.sh; needs root).
#
#   scripts/torture.sh [RUNS] [MOAT_BINARY]
#
# Builds the e2e images once (tests/e2e/make-images.sh) into a temp dir.
# KILL_SEED=N replays a campaign. Exits non-zero on the first failure.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
RUNS=${1:-50}
MOAT=${2:-$ROOT/build/scanner/moat}
[[ -x $MOAT ]] || { echo "torture.sh: no moat binary at $MOAT (build it: ninja -C build moat)" >&2; exit 2; }
IMG=$(mktemp -d /tmp/moat-torture-images.XXXXXX)
trap 'chmod -R u+rwx "$IMG" 2>/dev/null; rm -rf "$IMG"' EXIT
echo "torture.sh: making the e2e images" >&2
nice bash "$ROOT/tests/e2e/make-images.sh" "$IMG" >/dev/null 2>&1
start=$SECONDS
for t in killed concurrent fulldisk; do
  t0=$SECONDS
  rc=0
  KILL_RUNS=$RUNS CONCURRENT_BIG=1 LOCK_TRACE=1 bash "$ROOT/tests/e2e/test-$t.sh" "$MOAT" "$IMG" || rc=$?
  case $rc in
    0) echo "torture.sh: $t passed in $((SECONDS - t0)) s" >&2 ;;
    77) echo "torture.sh: $t skipped (see above)" >&2 ;;
    *) echo "torture.sh: $t FAILED (exit $rc)" >&2; exit 1 ;;
  esac
done
echo "torture.sh: all passed in $((SECONDS - start)) s" >&2
