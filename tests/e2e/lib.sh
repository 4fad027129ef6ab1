# Shared helpers for the end-to-end tests (sourced, never run).
#
# Every test script is run by ctest as:  bash TEST.sh MOAT_BINARY IMAGES_DIR
# IMAGES_DIR is made once per test run by make-images.sh (the e2e_images
# fixture). A test that cannot run here exits 77 (ctest: skipped, never passed).
set -euo pipefail

MOAT=${1:?usage: $0 MOAT_BINARY IMAGES_DIR}
IMAGES=${2:?usage: $0 MOAT_BINARY IMAGES_DIR}
E2E_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
py() { python3 "$E2E_DIR/e2e.py" "$@"; }
TEST_NAME=$(basename "$0" .sh)

source "$E2E_DIR/../lib/common.sh"

need_images() {
  [[ -f $IMAGES/READY ]] || skip "the e2e images were not made (see the e2e.images test: umoci/skopeo missing?)"
}

# A private temp dir, removed on exit whatever happens. Tests that start
# background processes register their pids in BG_PIDS; they are killed first.
BG_PIDS=()
WORK=$(mktemp -d /tmp/moat-e2e-"$TEST_NAME".XXXXXX)
cleanup() {
  local p
  for p in "${BG_PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  # Layers can hold 0500/0000 directories: make them removable first.
  chmod -R u+rwx "$WORK" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

# run_moat EXPECTED_STATUS ARGS...: runs moat, keeps stdout in $WORK/out and
# stderr in $WORK/err, and fails unless it exits with EXPECTED_STATUS.
run_moat() {
  local want=$1; shift
  local rc=0
  "$MOAT" "$@" >"$WORK/out" 2>"$WORK/err" || rc=$?
  if [[ $rc -ne $want ]]; then
    echo "--- stdout:" >&2; head -c 4000 "$WORK/out" >&2 || true
    echo "--- stderr:" >&2; head -c 4000 "$WORK/err" >&2 || true
    fail "moat $* exited $rc, expected $want"
  fi
}

# expect_err REGEX: the last run's stderr matches REGEX (grep -E, case-insensitive).
expect_err() {
  grep -Eqi -- "$1" "$WORK/err" || { cat "$WORK/err" >&2; fail "stderr does not match /$1/"; }
}

# The config's rootfs.diff_ids as skopeo reports them, one per line.
skopeo_diffids() {
  skopeo inspect --config "$1" | python3 -c 'import json,sys; print("\n".join(json.load(sys.stdin)["rootfs"]["diff_ids"]))'
}
