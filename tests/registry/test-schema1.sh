#!/usr/bin/env bash
# A Docker schema 1 manifest, as an old registry still serves it, is refused
# with a clear message (exit 2, nothing stored). docker-registry 2.8 accepts a
# schema 1 push only with `compatibility: schema1: enabled: true` and a valid
# libtrust JWS signature, so the manifest is signed here (python3-cryptography,
# an ephemeral P-256 key) and pushed with plain HTTP requests, as docker 1.x did.
source "$(dirname "$0")/lib.sh" "$@"
start_registry s1 "compatibility:
  schema1:
    enabled: true"
R=127.0.0.1:$REG_PORT_s1
: >"$W/empty.conf"
chmod a+r "$W/empty.conf"
export MOAT_ENV="CONTAINERS_REGISTRIES_CONF=$W/empty.conf"

note "push a signed schema 1 manifest (and its one layer) with python"
$PY - "$R" "$W/certs/ca.crt" <<'PYEOF' || fail "could not push a schema 1 manifest to docker-registry"
import base64, gzip, hashlib, http.client, io, json, ssl, sys, tarfile, time
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
host, ca = sys.argv[1], sys.argv[2]
ctx = ssl.create_default_context(cafile=ca)
def req(method, path, body=b"", headers=None):
    c = http.client.HTTPSConnection(host, context=ctx)
    c.request(method, path, body=body, headers=headers or {})
    r = c.getresponse()
    data = r.read()
    if r.status >= 300: sys.exit("%s %s: %d %s" % (method, path, r.status, data[:300]))
    return r
# One layer: a tar with one file.
raw = io.BytesIO()
with tarfile.open(fileobj=raw, mode="w") as t:
    info = tarfile.TarInfo("hello"); data = b"schema one\n"; info.size = len(data); t.addfile(info, io.BytesIO(data))
blob = gzip.compress(raw.getvalue(), mtime=0)
digest = "sha256:" + hashlib.sha256(blob).hexdigest()
loc = req("POST", "/v2/moat/old/blobs/uploads/").getheader("Location")
loc = loc[loc.index("/v2/"):] if "/v2/" in loc else loc
req("PUT", loc + ("&" if "?" in loc else "?") + "digest=" + digest, blob, {"Content-Type": "application/octet-stream"})
manifest = {"schemaVersion": 1, "name": "moat/old", "tag": "v1", "architecture": "amd64",
            "fsLayers": [{"blobSum": digest}],
            "history": [{"v1Compatibility": json.dumps({"id": "a" * 64, "created": "2016-01-01T00:00:00Z",
                                                          "architecture": "amd64", "os": "linux"})}]}
# libtrust's JSON signature (docker/libtrust jsonsign.go), as docker/distribution's schema1 package makes it.
b64 = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode()
content = json.dumps(manifest, indent=3).encode()
close = len(content.rstrip()) - 1
assert content[close:close + 1] == b"}"
fmt_len = len(content[:close].rstrip())
tail = content[fmt_len:]
key = ec.generate_private_key(ec.SECP256R1())
pub = key.public_key()
der = pub.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
kid32 = base64.b32encode(hashlib.sha256(der).digest()[:30]).decode()
kid = ":".join(kid32[i:i + 4] for i in range(0, 48, 4))
nums = pub.public_numbers()
jwk = {"crv": "P-256", "kid": kid, "kty": "EC", "x": b64(nums.x.to_bytes(32, "big")), "y": b64(nums.y.to_bytes(32, "big"))}
protected = b64(json.dumps({"formatLength": fmt_len, "formatTail": b64(tail),
                            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}).encode())
r_, s_ = decode_dss_signature(key.sign((protected + "." + b64(content)).encode(), ec.ECDSA(hashes.SHA256())))
sig = {"header": {"jwk": jwk, "alg": "ES256"}, "signature": b64(r_.to_bytes(32, "big") + s_.to_bytes(32, "big")),
       "protected": protected}
sigs = json.dumps([sig], indent=3).encode().replace(b"\n", b"\n   ")
signed = content[:fmt_len] + b',\n   "signatures": ' + sigs + tail
req("PUT", "/v2/moat/old/manifests/v1", signed, {"Content-Type": "application/vnd.docker.distribution.manifest.v1+prettyjws"})
PYEOF

note "moat scan of the schema 1 image: refused, naming schema 1 and the way out, nothing stored"
scan_as moat-subuid 2 "docker://$R/moat/old:v1" --cert-dir "$W/certs"
expect_err "is Docker schema 1, which is obsolete and unsupported"
expect_err "skopeo copy --format v2s2"
[[ -z $(ls -A "$W/users/moat-subuid.store/layers" 2>/dev/null) ]] || fail "a layer of the schema 1 image entered the store"
[[ -z $(ls -A "$W/users/moat-subuid.store/images" 2>/dev/null) ]] || fail "the schema 1 image was recorded in the store"
echo "PASS: $TEST_NAME"
