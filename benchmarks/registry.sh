#!/usr/bin/env bash
# docker:// against what users do today, side by side in one run, store on tmpfs.
#
# The image is benchmarks/unpack.sh's ~340 MB (compressed) 3-layer OCI layout
# built from the machine's /usr (cached in the work dir), pushed with skopeo
# into Debian's docker-registry on 127.0.0.1 (TLS, a CA made here). Then, RUNS
# times each, every store and directory removed before every run:
#   A  moat scan docker://127.0.0.1:PORT/bench:latest                (empty store)
#   A' moat image pull docker://... (the pull alone, for the split)
#   B  skopeo copy docker://... oci:DIR  +  moat scan oci:DIR:latest (empty store)
# and through tests/registry/proxy.py holding the bandwidth to ~50 MB/s:
#   C  moat scan docker://127.0.0.1:PROXY/bench:latest               (empty store)
#   C' moat image pull docker://127.0.0.1:PROXY/bench:latest         (empty store)
#   D  skopeo copy docker://127.0.0.1:PROXY/bench:latest oci:DIR     (alone)
# Done-when targets (issue 9): A <= 0.5 x B, C <= 1.2 x D.
#
# Usage: benchmarks/registry.sh [--runs N] [--moat PATH] [--bps BYTES_PER_S]
# Environment: MOAT_BENCH_WORK (image cache, default /var/tmp/moat-bench-registry),
# MOAT_BENCH_TMPFS (default /dev/shm/moat-bench-registry: store, registry data, DIR).
# Runs as root (the registry, the proxy and the stores are its own). Not part
# of ctest: these are measurements, not assertions.
set -euo pipefail
export LC_ALL=C
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
RUNS=3
MOAT="$repo/build/scanner/moat"
BPS=50000000
while (($#)); do
  case $1 in
    --runs) RUNS=$2; shift 2 ;;
    --moat) MOAT=$2; shift 2 ;;
    --bps) BPS=$2; shift 2 ;;
    *) echo "usage: $0 [--runs N] [--moat PATH] [--bps BYTES_PER_S]" >&2; exit 2 ;;
  esac
done
WORK=${MOAT_BENCH_WORK:-/var/tmp/moat-bench-registry}
T=${MOAT_BENCH_TMPFS:-/dev/shm/moat-bench-registry}
PY=/usr/bin/python3
for t in docker-registry skopeo openssl "$PY" /usr/bin/time; do command -v "$t" >/dev/null || { echo "needs $t" >&2; exit 2; }; done
[[ -x $MOAT ]] || { echo "no moat binary at $MOAT (build it, or pass --moat)" >&2; exit 2; }

MOAT_BENCH_WORK=$WORK bash "$here/unpack.sh" --build-only --no-large --moat "$MOAT" >/dev/null
rm -rf "$T"; mkdir -p "$T/pki" "$T/certs" "$T/reg"
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$T"; }
trap cleanup EXIT
free_port() { $PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 100); do $PY -c "import socket,sys; s=socket.socket(); sys.exit(s.connect_ex(('127.0.0.1',$1)))" && return 0; sleep 0.1; done; return 1; }

openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=bench CA" -keyout "$T/pki/ca.key" -out "$T/pki/ca.crt" 2>/dev/null
openssl req -newkey rsa:2048 -nodes -subj "/CN=127.0.0.1" -keyout "$T/pki/server.key" -out "$T/pki/server.csr" 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1\n' >"$T/pki/ext"
openssl x509 -req -in "$T/pki/server.csr" -CA "$T/pki/ca.crt" -CAkey "$T/pki/ca.key" -CAcreateserial -days 2 \
  -extfile "$T/pki/ext" -out "$T/pki/server.crt" 2>/dev/null
cp "$T/pki/ca.crt" "$T/certs/"
PORT=$(free_port)
cat >"$T/reg.yml" <<YML
version: 0.1
log: {level: error}
storage: {filesystem: {rootdirectory: $T/reg}}
http: {addr: 127.0.0.1:$PORT, tls: {certificate: $T/pki/server.crt, key: $T/pki/server.key}}
YML
docker-registry serve "$T/reg.yml" >"$T/reg.log" 2>&1 &
PIDS+=($!)
wait_port "$PORT"
skopeo copy -q --dest-cert-dir "$T/certs" "oci:$WORK/image:latest" "docker://127.0.0.1:$PORT/bench:latest"
PPORT=$(free_port); APORT=$(free_port)
echo "throttle:$BPS" >"$T/mode"
$PY "$repo/tests/registry/proxy.py" "$PPORT" "$APORT" "$T/pki/server.crt" "$T/pki/server.key" "$T/pki/ca.crt" \
  "https://127.0.0.1:$PORT" "$T/mode" /dev/null 2>"$T/proxy.err" &
PIDS+=($!)
wait_port "$PPORT"

R=127.0.0.1:$PORT; P=127.0.0.1:$PPORT
export MOAT_USERNS_STORE=0
fresh() { rm -rf "$T/store" "$T/dir"; sync; }
secs() { /usr/bin/time -f %e -o "$T/t" "$@" >/dev/null 2>"$T/err" || { cat "$T/err" >&2; echo "failed: $*" >&2; exit 1; }; cat "$T/t"; }
scan_opts=(--store "$T/store" -q --fail-on none -f json -o /dev/null)
declare -A sum
add() { [[ -n $2 ]] || exit 1; sum[$1]=$(echo "${sum[$1]:-0} + $2" | bc -l); printf '  %-40s %6.2f s\n' "$1" "$2"; }
for i in $(seq "$RUNS"); do
  echo "run $i/$RUNS"
  fresh; add "A moat scan docker://" "$(secs "$MOAT" scan "docker://$R/bench:latest" --cert-dir "$T/certs" "${scan_opts[@]}")"
  fresh; add "A' moat image pull docker://" "$(secs "$MOAT" image pull "docker://$R/bench:latest" --cert-dir "$T/certs" --store "$T/store" -q)"
  fresh
  c=$(secs skopeo copy -q --src-cert-dir "$T/certs" "docker://$R/bench:latest" "oci:$T/dir:latest")
  s=$(secs "$MOAT" scan "oci:$T/dir:latest" "${scan_opts[@]}")
  add "B skopeo copy" "$c"; add "B moat scan oci:" "$s"; add "B total" "$(echo "$c + $s" | bc -l)"
  fresh; add "C moat scan docker:// (throttled)" "$(secs "$MOAT" scan "docker://$P/bench:latest" --cert-dir "$T/certs" "${scan_opts[@]}")"
  fresh; add "C' moat image pull docker:// (throttled)" "$(secs "$MOAT" image pull "docker://$P/bench:latest" --cert-dir "$T/certs" --store "$T/store" -q)"
  fresh; add "D skopeo copy (throttled)" "$(secs skopeo copy -q --src-cert-dir "$T/certs" "docker://$P/bench:latest" "oci:$T/dir:latest")"
done
echo "mean of $RUNS runs:"
for k in "A moat scan docker://" "A' moat image pull docker://" "B skopeo copy" "B moat scan oci:" "B total" "C moat scan docker:// (throttled)" \
         "C' moat image pull docker:// (throttled)" "D skopeo copy (throttled)"; do
  printf '  %-40s %6.2f s\n' "$k" "$(echo "${sum[$k]} / $RUNS" | bc -l)"
done
a=$(echo "${sum["A moat scan docker://"]} / ${sum["B total"]}" | bc -l)
c=$(echo "${sum["C moat scan docker:// (throttled)"]} / ${sum["D skopeo copy (throttled)"]}" | bc -l)
cp=$(echo "${sum["C' moat image pull docker:// (throttled)"]} / ${sum["D skopeo copy (throttled)"]}" | bc -l)
printf 'A / B = %.2f (target <= 0.5)\nC / D = %.2f (target <= 1.2); pull only: %.2f\n' "$a" "$c" "$cp"
