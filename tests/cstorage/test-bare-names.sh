#!/usr/bin/env bash
# Bare names (`moat scan NAME`, no transport) as a podman user expects: the
# image of that name in the user's containers-storage first, else the
# registry through registries.conf (unqualified-search-registries, here one
# TLS docker-registry on 127.0.0.1 started by the test). The report and
# `moat image ls` say where each image came from; an ambiguous short name is
# an error listing the candidates (moat never prompts).
source "$(dirname "$0")/lib.sh"
need docker-registry openssl
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
REG_PID=""
stop_registry() { if [[ -n $REG_PID ]]; then kill "$REG_PID" 2>/dev/null || true; wait "$REG_PID" 2>/dev/null || true; fi; REG_PID=""; }
trap 'stop_registry; cleanup' EXIT

note "a TLS registry on loopback with the demo image"
P=$W/pki
mkdir -p "$P" "$W/certs"
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=moat test CA" -keyout "$P/ca.key" -out "$P/ca.crt" 2>/dev/null
openssl req -newkey rsa:2048 -nodes -subj "/CN=127.0.0.1" -keyout "$P/server.key" -out "$P/server.csr" 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n' >"$P/ext"
openssl x509 -req -in "$P/server.csr" -CA "$P/ca.crt" -CAkey "$P/ca.key" -CAcreateserial -days 2 \
  -extfile "$P/ext" -out "$P/server.crt" 2>/dev/null
cp "$P/ca.crt" "$W/certs/ca.crt"
chmod -R a+rX "$P" "$W/certs"
port=$(free_port)
cat >"$W/registry.yml" <<YML
version: 0.1
storage:
  filesystem:
    rootdirectory: $W/registry-data
http:
  addr: 127.0.0.1:$port
  secret: moat-test-secret
  tls:
    certificate: $P/server.crt
    key: $P/server.key
YML
docker-registry serve "$W/registry.yml" >"$W/registry.log" 2>&1 &
REG_PID=$!
for i in $(seq 100); do
  python3 -c "import socket,sys; s=socket.socket(); sys.exit(s.connect_ex(('127.0.0.1',$port)))" && break
  sleep 0.1
done
skopeo copy -q --dest-cert-dir "$W/certs" "oci:$W/pub/demo:latest" "docker://127.0.0.1:$port/moat-test/remote:1" ||
  fail "skopeo could not push to the test registry"
printf 'unqualified-search-registries = ["127.0.0.1:%s"]\n' "$port" >"$W/registries.conf"
chmod 0644 "$W/registries.conf"
CS_ENV="CONTAINERS_REGISTRIES_CONF=$W/registries.conf"
oci_report

note "not in containers-storage: from the registry of unqualified-search-registries"
moat_u 0 scan --store "$W/u/s1" --cert-dir "$W/certs" --fail-on none --format json -o "$W/u/out/reg.json" moat-test/remote:1
same_findings "$W/u/out/oci.json" "$W/u/out/reg.json"
[[ $(jq -r .image.reference "$W/u/out/reg.json") == "docker://127.0.0.1:$port/moat-test/remote:1" ]] ||
  fail "reference: $(jq .image.reference "$W/u/out/reg.json")"

note "in containers-storage: the local image wins"
podman_u pull -q "oci-archive:$W/pub/demo.tar" >/dev/null
podman_u tag "$(podman_u images -q | head -1)" moat-test/remote:1
note "docker:// with the layers in the podman store: read from there, not downloaded"
# The registry writes a request's access-log line when its handler returns,
# which can come after the client has the whole body: wait (bounded) for the
# first pull's blob downloads (GET: the push's HEAD and PUT lines name the
# same digests), so the count below splits the two scans' requests.
# (No `... | grep -q` on the log: with pipefail, grep leaving early kills
# head or tail with SIGPIPE once the log outgrows a pipe buffer, which made
# this check fail, or the "not downloaded" check pass, by chance.)
got() { grep -c "\"GET /v2/[^ ]*blobs/$2" <<<"$1" || true; }
for i in $(seq 150); do
  missing=0
  log=$(cat "$W/registry.log")
  for dg in $(jq -r '.image.layers[].digest' "$W/u/out/oci.json"); do (($(got "$log" "$dg") > 0)) || missing=1; done
  ((missing == 0)) && break
  sleep 0.1
done
before=$(wc -l <"$W/registry.log")
moat_u 0 scan -v --store "$W/u/s2" --cert-dir "$W/certs" --fail-on none --format json -o "$W/u/out/reg2.json" \
  "docker://127.0.0.1:$port/moat-test/remote:1"
same_findings "$W/u/out/oci.json" "$W/u/out/reg2.json"
grep -q "3 of 3 layers read from the podman store" "$W/err" || fail "layers not taken from the podman store: $(cat "$W/err")"
first=$(head -n "$before" "$W/registry.log")
second=$(tail -n +"$((before + 1))" "$W/registry.log")
for dg in $(jq -r '.image.layers[].digest' "$W/u/out/oci.json"); do
  (($(got "$first" "$dg") > 0)) ||
    fail "the first pull's download of $dg is not in the registry log (waited 15 s; its blob GETs: $(grep -o '"GET /v2/[^ ]*blobs/[^ ]*' <<<"$first" | tr '\n' ' '))"
  (($(got "$second" "$dg") == 0)) || fail "layer $dg was downloaded"
done
grep -c "manifests/1" <<<"$second" >/dev/null || fail "the registry saw no manifest request (log format?)"

stop_registry   # nothing may come from the registry now
moat_u 0 scan --store "$W/u/s1" --cert-dir "$W/certs" --fail-on none --format json -o "$W/u/out/local.json" moat-test/remote:1
same_findings "$W/u/out/oci.json" "$W/u/out/local.json"
jq -e '.image.reference | startswith("containers-storage:[")' "$W/u/out/local.json" >/dev/null ||
  fail "reference: $(jq .image.reference "$W/u/out/local.json")"

note "moat image ls names both origins"
moat_u 0 image ls --store "$W/u/s1"
grep -q "docker://127.0.0.1:$port/moat-test/remote:1" "$W/out" && grep -q "containers-storage:\[" "$W/out" ||
  fail "image ls: $(cat "$W/out")"

note "an ambiguous short name lists the candidates"
printf 'unqualified-search-registries = ["127.0.0.1:9", "127.0.0.1:10"]\n' >"$W/registries.conf"
moat_u 2 scan --store "$W/u/s1" moat-test/elsewhere:1
grep -q "not in containers-storage" "$W/err" && grep -q "ambiguous" "$W/err" && grep -q "127.0.0.1:10/moat-test/elsewhere:1" "$W/err" ||
  fail "ambiguous: $(cat "$W/err")"
echo "PASS: $TEST_NAME"
