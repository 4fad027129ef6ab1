#!/usr/bin/env bash
# docker:// against a TLS registry without authentication: the CA trusted
# through a cert dir and through the user's certs.d, a scan that finds what the
# image holds, a rescan of the unchanged tag that costs one manifest request and
# no blob request, pulls by digest, manifest-list platform choice, and the
# errors for an untrusted CA, a lone client key, a missing tag and a missing repository.
source "$(dirname "$0")/lib.sh" "$@"

tiny_image tiny
build_fixture multi <<'JSON'
{"tag": "latest", "platforms": [
  {"os": "linux", "arch": "amd64", "layers": [{"entries": [{"path": "amd64-file", "content": "x"}]}]},
  {"os": "linux", "arch": "arm64", "variant": "v8", "layers": [{"entries": [{"path": "arm64-file", "content": "y"}]}]}
]}
JSON
start_registry plain
R=127.0.0.1:$REG_PORT_plain
push oci:$W/pub/tiny:latest docker://$R/moat/tiny:1
push oci:$W/pub/multi:latest docker://$R/moat/multi:latest
: >"$W/empty.conf"
chmod a+r "$W/empty.conf"
export MOAT_ENV="CONTAINERS_REGISTRIES_CONF=$W/empty.conf"
LOG=$W/plain.log

note "first scan: the whole image comes over HTTPS, the CA from --cert-dir"
scan_as moat-subuid 0 docker://$R/moat/tiny:1 --cert-dir "$W/certs"
jq -e '.findings[] | select(.path == "/bin/su")' "$W/out" >/dev/null || fail "the setuid /bin/su was not reported"
[[ $(jq -r .image.reference "$W/out") == "docker://$R/moat/tiny:1" ]] || fail "report reference is $(jq -r .image.reference "$W/out")"
want_manifest=$(manifest_digest docker://$R/moat/tiny:1)
[[ $(jq -r .image.manifest_digest "$W/out") == "$want_manifest" ]] || fail "manifest digest $(jq -r .image.manifest_digest "$W/out") != $want_manifest"
[[ $(count_requests "$LOG" GET /blobs/) -eq 4 ]] || fail "first scan: $(count_requests "$LOG" GET /blobs/) blob requests, expected 4 (config + 3 layers)"

grep -qE '"GET /v2/moat/tiny/manifests/1 HTTP/2.0" 200 .*"moat/' "$LOG" || fail "moat did not use HTTP/2, which the registry offers"

note "second scan of the unchanged tag: one manifest request, no blob or config request"
m0=$(count_requests "$LOG" GET /manifests/); b0=$(count_requests "$LOG" GET /blobs/)
scan_as moat-subuid 0 docker://$R/moat/tiny:1 --cert-dir "$W/certs"
m1=$(count_requests "$LOG" GET /manifests/); b1=$(count_requests "$LOG" GET /blobs/)
[[ $((m1 - m0)) -eq 1 ]] || fail "second scan sent $((m1 - m0)) manifest requests, expected 1"
[[ $((b1 - b0)) -eq 0 ]] || fail "second scan sent $((b1 - b0)) blob requests, expected 0"

note "by digest, the CA from the user's own ~/.config/containers/certs.d/HOST:PORT/"
H=$W/home-certs
mkdir -p "$H/.config/containers/certs.d/$R"
cp "$W/certs/ca.crt" "$H/.config/containers/certs.d/$R/ca.crt"
chown -R moat-subuid "$H"
MOAT_ENV="$MOAT_ENV HOME=$H" STORE=$W/users/digest.store scan_as moat-subuid 0 "docker://$R/moat/tiny@$want_manifest"
jq -e '.findings[] | select(.path == "/bin/su")' "$W/out" >/dev/null || fail "by digest: /bin/su not reported"

note "no trusted CA: a TLS error naming the certs.d folders, exit 2, nothing stored"
MOAT_ENV="$MOAT_ENV HOME=$W/nohome" STORE=$W/users/notls.store scan_as moat-subuid 2 docker://$R/moat/tiny:1
expect_err "TLS failure talking to $R"
expect_err "/etc/containers/certs.d/$R"
expect_err "moat: hint:"
[[ -z $(ls -A "$W/users/notls.store/layers" 2>/dev/null) ]] || fail "a layer entered the store after a TLS failure"

note "--tls-verify=false: no verification, by flag only"
MOAT_ENV="$MOAT_ENV HOME=$W/nohome" STORE=$W/users/noverify.store scan_as moat-subuid 0 docker://$R/moat/tiny:1 --tls-verify=false -v
expect_err "not verified (--tls-verify=false)"

note "a client key without its certificate is an error naming the file"
mkdir -p "$W/lonekey" && cp "$W/certs/ca.crt" "$W/lonekey/" && cp "$W/pki/server.key" "$W/lonekey/client.key"
chmod -R a+rX "$W/lonekey"
scan_as moat-subuid 2 docker://$R/moat/tiny:1 --cert-dir "$W/lonekey"
expect_err "client key $W/lonekey/client.key has no certificate"

note "tag not found vs repository not found"
scan_as moat-subuid 2 docker://$R/moat/tiny:nosuchtag --cert-dir "$W/certs"
expect_err "manifest nosuchtag not found in $R/moat/tiny"
scan_as moat-subuid 2 docker://$R/moat/nosuchrepo:1 --cert-dir "$W/certs"
expect_err "repository $R/moat/nosuchrepo not found"

note "a manifest list: --platform picks the image, the default is the host's"
raw_manifest docker://$R/moat/multi:latest >"$W/multi.list"
amd=$(jq -r '.manifests[] | select(.platform.architecture == "amd64") | .digest' "$W/multi.list")
arm=$(jq -r '.manifests[] | select(.platform.architecture == "arm64") | .digest' "$W/multi.list")
scan_as moat-subuid 0 docker://$R/moat/multi:latest --cert-dir "$W/certs" --platform linux/arm64
[[ $(jq -r .image.manifest_digest "$W/out") == "$arm" ]] || fail "--platform linux/arm64 scanned $(jq -r .image.manifest_digest "$W/out")"
m0=$(count_requests "$LOG" GET /manifests/); b0=$(count_requests "$LOG" GET /blobs/)
scan_as moat-subuid 0 docker://$R/moat/multi:latest --cert-dir "$W/certs" --platform linux/arm64
[[ $(( $(count_requests "$LOG" GET /manifests/) - m0 )) -eq 1 ]] || fail "rescan of a manifest list: more than one manifest request"
[[ $(( $(count_requests "$LOG" GET /blobs/) - b0 )) -eq 0 ]] || fail "rescan of a manifest list: blob requests"
moat_as moat-subuid 0 image ls --store "$W/users/moat-subuid.store"
grep -qF "docker://$R/moat/multi:latest" "$W/out" || fail "moat image ls does not name docker://$R/moat/multi:latest"
if [[ $(uname -m) == x86_64 ]]; then
  scan_as moat-subuid 0 docker://$R/moat/multi:latest --cert-dir "$W/certs"
  [[ $(jq -r .image.manifest_digest "$W/out") == "$amd" ]] || fail "the host's platform was not chosen"
fi
scan_as moat-subuid 2 docker://$R/moat/multi:latest --cert-dir "$W/certs" --platform linux/s390x
expect_err "has no image for linux/s390x"

note "references: docker.io normalization and bad names"
moat_as moat-subuid 2 scan --store "$W/users/x.store" "docker://Bad Name"
expect_err "moat: hint:"
moat_as moat-subuid 2 scan --store "$W/users/x.store" "docker://$R/moat/tiny:1@sha256:$(printf '0%.0s' {1..64})"
expect_err "names both a tag and a digest"
echo "PASS: $TEST_NAME"
