# Shared helpers for the registry tests (sourced, never run).
#
#   bash test-NAME.sh MOAT_BINARY FIXTURE_BINARY
# Real components on 127.0.0.1 only, on free ports, stopped by PID: Debian's
# docker-registry with TLS from a CA made here, htpasswd or token auth, the
# token server and the misbehaving proxy of this folder (python3), images made
# by moat-fixture and pushed with skopeo. Scans run as the unprivileged test
# user moat-subuid with its own store. Without root or a tool: exit 77 (skipped).
set -euo pipefail
MOAT_SRC=${1:?usage: $0 MOAT_BINARY FIXTURE_BINARY}
FIXTURE_SRC=${2:?usage: $0 MOAT_BINARY FIXTURE_BINARY}
REG_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
LIB=$REG_DIR/../lib
TEST_NAME=$(basename "$0" .sh)
PY=/usr/bin/python3

source "$LIB/common.sh"
need_root
need docker-registry skopeo openssl htpasswd jq setpriv
[[ -x $PY ]] || skip "$PY is missing"
$PY -c 'import cryptography' 2>/dev/null || skip "python3-cryptography is missing"
bash "$LIB/rootless-users.sh"

W=$(mktemp -d /tmp/moat-reg-"$TEST_NAME".XXXXXX)
chmod 0755 "$W"
PIDS=()
cleanup() {
  local p
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  chmod -R u+rwx "$W" 2>/dev/null || true
  rm -rf "$W"
}
trap cleanup EXIT
install -m 0755 "$MOAT_SRC" "$W/moat"
install -m 0755 "$FIXTURE_SRC" "$W/moat-fixture"
mkdir -m 0755 "$W/pub" "$W/certs"
mkdir -m 1777 "$W/users"

free_port() { $PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# wait_port PORT: until something listens (10 s).
wait_port() {
  local i
  for i in $(seq 100); do
    $PY -c "import socket,sys; s=socket.socket(); sys.exit(s.connect_ex(('127.0.0.1',$1)))" && return 0
    sleep 0.1
  done
  return 1
}

# The test CA and one server certificate for 127.0.0.1 and localhost.
# $W/certs/ca.crt is what a client trusts (certs.d style: $W/certs is a cert dir).
make_ca() {
  local d=$W/pki
  mkdir -p "$d"
  openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=moat test CA" \
    -keyout "$d/ca.key" -out "$d/ca.crt" 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -subj "/CN=127.0.0.1" -keyout "$d/server.key" -out "$d/server.csr" 2>/dev/null
  printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n' >"$d/ext"
  openssl x509 -req -in "$d/server.csr" -CA "$d/ca.crt" -CAkey "$d/ca.key" -CAcreateserial -days 2 \
    -extfile "$d/ext" -out "$d/server.crt" 2>/dev/null
  cp "$d/ca.crt" "$W/certs/ca.crt"
  chmod -R a+rX "$d" "$W/certs"
}

# start_registry NAME [AUTH_YAML]: docker-registry with TLS (NO_TLS=1: plain HTTP) on a free port.
# Sets REG_PORT_<NAME>; its log is $W/NAME.log (one line per request).
start_registry() {
  local name=$1 auth=${2:-} port
  port=$(free_port)
  mkdir -p "$W/$name-data"
  cat >"$W/$name.yml" <<YML
version: 0.1
log:
  level: info
  formatter: text
storage:
  filesystem:
    rootdirectory: $W/$name-data
http:
  addr: 127.0.0.1:$port
  secret: moat-test-secret
$auth
YML
  # NO_TLS=1: plain HTTP (an "insecure" registry)
  [[ ${NO_TLS:-0} == 1 ]] || sed -i "/^  secret:/a\\  tls:\\n    certificate: $W/pki/server.crt\\n    key: $W/pki/server.key" "$W/$name.yml"
  docker-registry serve "$W/$name.yml" >"$W/$name.log" 2>&1 &
  PIDS+=($!)
  wait_port "$port" || { cat "$W/$name.log" >&2; fail "docker-registry $name did not start"; }
  printf -v "REG_PORT_$name" '%s' "$port"
}

# build_fixture NAME <<<JSON: an OCI layout at $W/pub/NAME from a moat-fixture spec on stdin.
build_fixture() {
  local name=$1
  cat >"$W/pub/$name.json"
  "$W/moat-fixture" "$W/pub/$name.json" "$W/pub/$name" >"$W/pub/$name.built" || fail "moat-fixture $name"
  chmod -R a+rX "$W/pub/$name"
}

# push SRC DEST [skopeo args...]: skopeo copy into a test registry (trusting the test CA).
push() {
  local src=$1 dest=$2; shift 2
  skopeo copy -q --all --dest-cert-dir "$W/certs" "$@" "$src" "$dest" >/dev/null 2>"$W/push.err" ||
    { cat "$W/push.err" >&2; fail "skopeo copy $src $dest"; }
}

# moat_as USER EXPECTED_STATUS ARGS...: `moat ARGS` as USER; stdout $W/out, stderr $W/err.
# MOAT_ENV (optional) is a list of VAR=VALUE put in the user's environment.
moat_as() {
  local u=$1 want=$2 rc=0; shift 2
  (cd "$W" && "$LIB/as-user.sh" "$u" env ${MOAT_ENV:-} "$W/moat" "$@") >"$W/out" 2>"$W/err" || rc=$?
  if [[ $rc -ne $want ]]; then
    echo "--- stdout:" >&2; head -c 4000 "$W/out" >&2 || true
    echo "--- stderr:" >&2; head -c 6000 "$W/err" >&2 || true
    fail "as $u: moat $* exited $rc, expected $want"
  fi
}

# scan_as USER EXPECTED_STATUS IMAGE [ARGS...]: moat scan with the user's own store
# ($STORE when set), JSON report.
scan_as() {
  local u=$1 want=$2; shift 2
  moat_as "$u" "$want" scan --store "${STORE:-$W/users/$u.store}" --fail-on none -f json "$@"
}

# raw_manifest REF: the manifest's bytes as the registry serves them (skopeo, independent of moat).
raw_manifest() { skopeo inspect --raw --cert-dir "$W/certs" "$@"; }
manifest_digest() { echo "sha256:$(raw_manifest "$@" | sha256sum | cut -d' ' -f1)"; }

expect_err() { grep -qF -- "$1" "$W/err" || { cat "$W/err" >&2; fail "stderr lacks: $1"; }; }
expect_no_err() { if grep -qF -- "$1" "$W/err"; then cat "$W/err" >&2; fail "stderr has: $1"; fi; }

# count_requests LOG METHOD PATH_PART: moat's requests in a docker-registry access log.
count_requests() {
  grep -cE "\"$2 [^ \"]*$3[^ \"]* HTTP/[0-9.]+\" [0-9]+ [0-9]+ \"[^\"]*\" \"moat/" "$1" || true
}

# The standard tiny test image: 3 layers (gzip, zstd, plain), a setuid file to
# find, and 200 kB of random text (registries get compressed layers from skopeo:
# random text keeps a blob big enough to cut or flip in the middle).
tiny_image() {
  $PY - "$W/pub/${1:-tiny}.rand" <<'PYEOF'
import base64, json, os, sys
json.dump(base64.b64encode(os.urandom(150000)).decode(), open(sys.argv[1], "w"))
PYEOF
  build_fixture "${1:-tiny}" <<JSON
{"tag": "latest", "layers": [
  {"entries": [{"path": "etc/", "type": "dir"}, {"path": "etc/os-release", "content": "ID=moattest\n"},
               {"path": "bin/", "type": "dir"}, {"path": "bin/su", "mode": "04755", "content": {"repeat": "s", "size": 70000}}]},
  {"compression": "zstd", "entries": [{"path": "opt/", "type": "dir"}, {"path": "opt/data", "content": {"repeat": "d", "size": 300000}}]},
  {"compression": "none", "entries": [{"path": "opt/note", "content": $(cat "$W/pub/${1:-tiny}.rand")}]}
]}
JSON
}

make_ca
