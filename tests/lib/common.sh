# What every shell test shares (sourced by tests/*/lib.sh and standalone test
# scripts, never run). The caller sets TEST_NAME first. A test that cannot run
# here exits 77, which ctest reports as skipped (never as passed).
skip() { echo "SKIP: $TEST_NAME: $*" >&2; exit 77; }
fail() { echo "FAIL: $TEST_NAME: $*" >&2; exit 1; }
note() { echo "== $*" >&2; }
need() {  # TOOL...: skip unless each is on PATH
  local t
  for t in "$@"; do command -v "$t" >/dev/null 2>&1 || skip "$t is not installed (scripts/install-deps.sh)"; done
}
# The rootless tests run as the unprivileged users of tests/lib/rootless-users.sh,
# which only root can create and drop to.
need_root() { [[ $(id -u) -eq 0 ]] || skip "needs root to create the test users and drop to them"; }
