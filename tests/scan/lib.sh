# Shared helpers for the scan tests (sourced, never run).
#
#   bash test-NAME.sh MOAT_BINARY FIXTURE_BINARY
# Needs root only to create the unprivileged test users and drop to them
# (tests/lib/rootless-users.sh): every scan runs as moat-subuid or
# moat-single. Without root, or without a tool, the test exits 77 (skipped).
set -euo pipefail
MOAT_SRC=${1:?usage: $0 MOAT_BINARY FIXTURE_BINARY}
FIXTURE_SRC=${2:?usage: $0 MOAT_BINARY FIXTURE_BINARY}
SCAN_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
LIB=$SCAN_DIR/../lib
TEST_NAME=$(basename "$0" .sh)

source "$LIB/common.sh"
need_root
need jq python3 setpriv
bash "$LIB/rootless-users.sh"

# W: a fresh world-traversable dir (the build tree may sit under a 0700 home)
# holding the binaries, the images (pub/) and one store per user (users/).
W=$(mktemp -d /tmp/moat-scan-"$TEST_NAME".XXXXXX)
chmod 0755 "$W"
cleanup() { chmod -R u+rwx "$W" 2>/dev/null || true; rm -rf "$W"; }
trap cleanup EXIT
install -m 0755 "$MOAT_SRC" "$W/moat"
install -m 0755 "$FIXTURE_SRC" "$W/moat-fixture"
mkdir -m 0755 "$W/pub"
mkdir -m 1777 "$W/users"

# build_fixture NAME <<<JSON: builds an OCI layout at $W/pub/NAME from a moat-fixture spec on stdin.
build_fixture() {
  local name=$1
  cat >"$W/pub/$name.json"
  "$W/moat-fixture" "$W/pub/$name.json" "$W/pub/$name" >/dev/null || fail "moat-fixture $name"
  chmod -R a+rX "$W/pub/$name"
}

# scan_as USER EXPECTED_STATUS ARGS...: `moat scan ARGS` as USER with the
# user's own store; stdout in $W/out, stderr in $W/err.
scan_as() {
  local u=$1 want=$2 rc=0; shift 2
  (cd "$W" && "$LIB/as-user.sh" "$u" "$W/moat" scan --store "$W/users/$u.store" "$@") \
    >"$W/out" 2>"$W/err" || rc=$?
  if [[ $rc -ne $want ]]; then
    echo "--- stdout:" >&2; head -c 6000 "$W/out" >&2 || true
    echo "--- stderr:" >&2; head -c 6000 "$W/err" >&2 || true
    fail "as $u: moat scan $* exited $rc, expected $want"
  fi
}

# validate_report FILE: the JSON report against docs/report.schema.json.
validate_report() {
  python3 "$SCAN_DIR/../checks/validate_json.py" "$SCAN_DIR/../../docs/report.schema.json" "$1" ||
    fail "report $1 does not validate against docs/report.schema.json"
}
