#!/usr/bin/env python3
"""trust.cases: the table of trust-policy cases, with skopeo as the oracle.

usage: cases.py MOAT_BINARY [REGISTRY_BINARY]

Everything is made here, in a temporary directory, by real producers:
  - OpenPGP keys in a temporary GNUPGHOME (a good key, a second key, a key that
    expired in 2021, a revoked key), never the user's ~/.gnupg;
  - images by umoci, copied to skopeo's dir: format by skopeo; a two-platform
    index; signatures by `skopeo standalone-sign` and, for crafted payloads
    (expired key, bad payloads), by gpg itself;
  - sigstore signatures (cosign's payload and annotations, in containers/image's
    dir: "sigstore-json" blob) made with the openssl command: ECDSA P-256,
    RSA and Ed25519 keys, and keyless ones with a test Fulcio CA and a test
    Rekor key;
  - docker:// cases (when the registry source is built in): Debian's
    docker-registry on 127.0.0.1, lookaside over file:// and over
    `python3 -m http.server` on 127.0.0.1, all on free ports, stopped by PID.

Each case runs `moat verify --policy P [--registries.d D] --format json IMAGE`
and checks the decision (exit 0 accepted, 1 rejected, 2 could not evaluate).
For every case marked oracle, `skopeo copy --policy P [--registries.d D]
IMAGE dir:OUT` runs too and moat's accept/not-accept must equal skopeo's.
Exit 77 (skipped) when a tool is missing.
"""
import base64
import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

MOAT = os.path.abspath(sys.argv[1])
HERE = os.path.dirname(os.path.abspath(__file__))
SCHEMA_CHECK = os.path.join(HERE, "..", "checks", "validate_json.py")
SCHEMA = os.path.join(HERE, "..", "..", "docs", "report.schema.json")

for tool in ("gpg", "skopeo", "umoci", "openssl"):
    if shutil.which(tool) is None:
        print(f"SKIP: {tool} is not installed (scripts/install-deps.sh)", file=sys.stderr)
        sys.exit(77)

W = tempfile.mkdtemp(prefix="moat-trust-")
os.chmod(W, 0o755)
GNUPG = os.path.join(W, "gnupg")
os.mkdir(GNUPG, 0o700)
ENV = dict(os.environ, GNUPGHOME=GNUPG, TMPDIR=W)
# The test must not depend on (or change) the host's containers configuration.
ENV["HOME"] = os.path.join(W, "home")
os.makedirs(ENV["HOME"])
CHILDREN = []


def cleanup():
    for p in CHILDREN:
        try:
            p.terminate()
            p.wait(timeout=5)
        except Exception:
            try:
                p.kill()
            except Exception:
                pass
    subprocess.run(["gpgconf", "--kill", "all"], env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    shutil.rmtree(W, ignore_errors=True)


def run(cmd, check=True, **kw):
    r = subprocess.run(cmd, env=kw.pop("env", ENV), stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw)
    if check and r.returncode != 0:
        raise RuntimeError(f"{cmd} failed ({r.returncode}): {r.stderr.decode(errors='replace')}")
    return r


def p(*parts):
    return os.path.join(W, *parts)


# ---------------------------------------------------------------- keys
def gen_key(name, faked=None, expire="never"):
    args = ["gpg", "--batch", "--passphrase", "", "--pinentry-mode", "loopback"]
    if faked:
        args += ["--faked-system-time", faked]
    run(args + ["--quick-gen-key", f"{name} <{name}@moat.test>", "ed25519", "sign", expire])
    out = run(["gpg", "--with-colons", "--list-keys", f"{name}@moat.test"]).stdout.decode()
    fpr = [l.split(":")[9] for l in out.splitlines() if l.startswith("fpr:")][0]
    return fpr


def export_key(fpr, name):
    os.makedirs(p("keys"), exist_ok=True)
    path = p("keys", name + ".asc")
    with open(path, "wb") as f:
        f.write(run(["gpg", "--armor", "--export", fpr]).stdout)
    return path


# ---------------------------------------------------------------- images
def make_images():
    L = p("layout")
    run(["umoci", "init", "--layout", L])
    for tag, arch, content in (("a", "amd64", "first"), ("b", "amd64", "second"), ("arm", "arm64", "arm")):
        run(["umoci", "new", "--image", f"{L}:{tag}"])
        run(["umoci", "config", "--image", f"{L}:{tag}", "--architecture", arch, "--os", "linux"])
        b = p("bundle-" + tag)
        run(["umoci", "unpack", "--image", f"{L}:{tag}", b])
        with open(os.path.join(b, "rootfs", "hello"), "w") as f:
            f.write(content + "\n")
        run(["umoci", "repack", "--image", f"{L}:{tag}", b])
        shutil.rmtree(b)
    # A two-platform index of :a (amd64) and :arm (arm64), tagged "multi".
    with open(os.path.join(L, "index.json")) as f:
        idx = json.load(f)
    by_tag = {m["annotations"]["org.opencontainers.image.ref.name"]: m for m in idx["manifests"]}
    plats = {"a": {"architecture": "amd64", "os": "linux"}, "arm": {"architecture": "arm64", "os": "linux"}}
    entries = []
    for tag in ("a", "arm"):
        d = {k: by_tag[tag][k] for k in ("mediaType", "digest", "size")}
        d["platform"] = plats[tag]
        entries.append(d)
    lst = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                      "manifests": entries}).encode()
    h = hashlib.sha256(lst).hexdigest()
    with open(os.path.join(L, "blobs", "sha256", h), "wb") as f:
        f.write(lst)
    idx["manifests"].append({"mediaType": "application/vnd.oci.image.index.v1+json", "digest": "sha256:" + h,
                             "size": len(lst), "annotations": {"org.opencontainers.image.ref.name": "multi"}})
    with open(os.path.join(L, "index.json"), "w") as f:
        json.dump(idx, f)
    os.makedirs(p("img"))
    run(["skopeo", "copy", "-q", f"oci:{L}:a", "dir:" + p("img", "base")])
    run(["skopeo", "copy", "-q", f"oci:{L}:b", "dir:" + p("img", "other")])
    run(["skopeo", "copy", "-q", "--all", f"oci:{L}:multi", "dir:" + p("img", "multi")])


def new_image(name, src="base"):
    d = p("cases", name, "img")
    shutil.copytree(p("img", src), d)
    return d


def standalone_sign(manifest, identity, fpr, out):
    run(["skopeo", "standalone-sign", manifest, identity, fpr, "-o", out])


def gpg_sign(payload, fpr, out, faked=None, extra=()):
    src = out + ".payload"
    with open(src, "wb") as f:
        f.write(payload)
    args = ["gpg", "--batch", "--yes", "--pinentry-mode", "loopback", "--passphrase", ""]
    if faked:
        args += ["--faked-system-time", faked]
    for k in [fpr] + list(extra):
        args += ["-u", k]
    run(args + ["--sign", "-o", out, src])
    os.unlink(src)


def simple_payload(digest, identity, typ="atomic container signature", extra_critical=None):
    crit = {"type": typ, "image": {"docker-manifest-digest": digest}, "identity": {"docker-reference": identity}}
    if extra_critical:
        crit.update(extra_critical)
    return json.dumps({"critical": crit, "optional": {"creator": "moat test"}}).encode()


def manifest_digest(path):
    with open(path, "rb") as f:
        return "sha256:" + hashlib.sha256(f.read()).hexdigest()


# ---------------------------------------------------------------- sigstore (openssl)
def openssl(*args, data=None):
    return run(["openssl"] + list(args), input=data).stdout


def make_sigstore_keys():
    k = p("sigkeys")
    os.makedirs(k)
    openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", f"{k}/ec.key")
    openssl("ec", "-in", f"{k}/ec.key", "-pubout", "-out", f"{k}/ec.pub")
    openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", f"{k}/ec2.key")
    openssl("ec", "-in", f"{k}/ec2.key", "-pubout", "-out", f"{k}/ec2.pub")
    openssl("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", f"{k}/rsa.key")
    openssl("pkey", "-in", f"{k}/rsa.key", "-pubout", "-out", f"{k}/rsa.pub")
    openssl("genpkey", "-algorithm", "ED25519", "-out", f"{k}/ed.key")
    openssl("pkey", "-in", f"{k}/ed.key", "-pubout", "-out", f"{k}/ed.pub")
    # Rekor's key and a test Fulcio CA (root) issuing a short-lived code-signing leaf.
    openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", f"{k}/rekor.key")
    openssl("ec", "-in", f"{k}/rekor.key", "-pubout", "-out", f"{k}/rekor.pub")
    openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", f"{k}/rekor2.key")
    openssl("ec", "-in", f"{k}/rekor2.key", "-pubout", "-out", f"{k}/rekor2.pub")
    for ca in ("ca", "ca2"):
        openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", f"{k}/{ca}.key")
        openssl("req", "-x509", "-new", "-key", f"{k}/{ca}.key", "-subj", f"/O=moat test/CN={ca}", "-days", "3650",
                "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign",
                "-out", f"{k}/{ca}.pem")
    return k


def make_leaf(k, name, email, issuer, eku="codeSigning", ca="ca", v2=False):
    """A Fulcio-like leaf: SAN email, the OIDC issuer extension, EKU."""
    openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", f"{k}/{name}.key")
    openssl("req", "-new", "-key", f"{k}/{name}.key", "-subj", "/O=sigstore.dev", "-out", f"{k}/{name}.csr")
    if v2:
        iss = f"1.3.6.1.4.1.57264.1.8=ASN1:UTF8String:{issuer}"
    else:
        iss = "1.3.6.1.4.1.57264.1.1=DER:" + issuer.encode().hex()
    ext = (f"subjectAltName=critical,email:{email}\nextendedKeyUsage={eku}\nkeyUsage=critical,digitalSignature\n"
           f"{iss}\n")
    with open(f"{k}/{name}.ext", "w") as f:
        f.write(ext)
    openssl("x509", "-req", "-in", f"{k}/{name}.csr", "-CA", f"{k}/{ca}.pem", "-CAkey", f"{k}/{ca}.key",
            "-CAcreateserial", "-days", "1", "-extfile", f"{k}/{name}.ext", "-out", f"{k}/{name}.pem")
    return f"{k}/{name}.key", f"{k}/{name}.pem"


def raw_sign(keyfile, data):
    src = p("tosign")
    with open(src, "wb") as f:
        f.write(data)
    with open(keyfile) as f:
        is_ed = "BEGIN PRIVATE KEY" in f.read() and b"ED25519" in openssl("pkey", "-in", keyfile, "-text", "-noout")
    if is_ed:
        return openssl("pkeyutl", "-sign", "-inkey", keyfile, "-rawin", "-in", src)
    return openssl("dgst", "-sha256", "-sign", keyfile, src)


def rekor_bundle(rekor_key, sig_b64, key_or_cert_pem, payload, when=None):
    body = {"apiVersion": "0.0.1", "kind": "hashedrekord",
            "spec": {"data": {"hash": {"algorithm": "sha256", "value": hashlib.sha256(payload).hexdigest()}},
                     "signature": {"content": sig_b64,
                                   "publicKey": {"content": base64.b64encode(key_or_cert_pem).decode()}}}}
    pl = {"body": base64.b64encode(json.dumps(body).encode()).decode(),
          "integratedTime": int(when if when is not None else time.time()), "logIndex": 7, "logID": "00" * 32}
    canon = json.dumps(pl, sort_keys=True, separators=(",", ":")).encode()
    set_sig = raw_sign(rekor_key, canon)
    return json.dumps({"SignedEntryTimestamp": base64.b64encode(set_sig).decode(), "Payload": pl})


def cosign_payload(digest, identity):
    return json.dumps({"critical": {"identity": {"docker-reference": identity},
                                    "image": {"docker-manifest-digest": digest},
                                    "type": "cosign container image signature"}, "optional": None}).encode()


def sigstore_blob(payload, sig, cert=None, bundle=None, mime="application/vnd.dev.cosign.simplesigning.v1+json"):
    ann = {"dev.cosignproject.cosign/signature": base64.b64encode(sig).decode()}
    if cert:
        ann["dev.sigstore.cosign/certificate"] = cert.decode()
    if bundle:
        ann["dev.sigstore.cosign/bundle"] = bundle
    j = {"mimeType": mime, "payload": base64.b64encode(payload).decode(), "annotations": ann}
    return b"\x00sigstore-json\n" + json.dumps(j).encode()


# ---------------------------------------------------------------- running
RESULTS = []


def moat_verify(image, policy, regd=None):
    args = [MOAT, "verify", "--policy", policy, "--format", "json", image]
    if regd:
        args[2:2] = ["--registries.d", regd]
    r = run(args, check=False)
    dec = {0: "accepted", 1: "rejected", 2: "error"}.get(r.returncode, f"exit {r.returncode}")
    return dec, r


def skopeo_accepts(image, policy, regd, out):
    args = ["skopeo", "copy", "-q", "--policy", policy]
    if regd:
        args += ["--registries.d", regd]
    r = run(args + [image, "dir:" + out], check=False)
    return r.returncode == 0, r.stderr.decode(errors="replace").strip()


def case(name, image, policy, expect, oracle=True, regd=None, want_text=None):
    d = p("cases", name)
    os.makedirs(d, exist_ok=True)
    pol = os.path.join(d, "policy.json")
    with open(pol, "wb") as f:
        f.write(policy if isinstance(policy, bytes) else json.dumps(policy).encode())
    dec, r = moat_verify(image, pol, regd)
    problems = []
    if dec != expect:
        problems.append(f"moat said {dec}, expected {expect}")
    out = r.stdout.decode(errors="replace")
    try:
        j = json.loads(out)
        if j["decision"] != ("error" if dec == "error" else dec):
            problems.append(f"JSON decision {j['decision']} disagrees with exit status ({dec})")
    except Exception as e:  # noqa: BLE001
        problems.append(f"moat verify printed no JSON ({e}): {out[:300]}")
    if want_text and want_text not in out:
        problems.append(f"the output does not say {want_text!r}")
    sk = None
    if oracle:
        ok, err = skopeo_accepts(image, pol, regd, os.path.join(d, "skopeo-out"))
        sk = "accepted" if ok else "not accepted"
        if ok != (dec == "accepted"):
            problems.append(f"skopeo {'accepts' if ok else 'does not accept'} ({err[:300]}), moat said {dec}")
    RESULTS.append((name, dec, sk, problems))
    status = "ok" if not problems else "FAIL"
    print(f"{status:4} {name:48} moat={dec:9} skopeo={sk or '-'}" + ("".join("\n       " + x for x in problems)),
          flush=True)
    if problems:
        print("       moat output:\n" + "\n".join("         " + l for l in out.splitlines()[:60]), flush=True)
        print("       moat stderr: " + r.stderr.decode(errors="replace")[:500], flush=True)


def signed_by(key, identity=None, **extra):
    r = {"type": "signedBy", "keyType": "GPGKeys", "keyPath": key}
    r.update(extra)
    if identity:
        r["signedIdentity"] = identity
    return r


def exact_ref(ref):
    return {"type": "exactReference", "dockerReference": ref}


def dir_policy(scope, reqs, default=None):
    return {"default": default or [{"type": "reject"}], "transports": {"dir": {scope: reqs}}}


def main():
    make_images()
    good = gen_key("good")
    other = gen_key("other")
    expired = gen_key("expired", faked="20200101T000000", expire="1y")
    revoked = gen_key("revoked")
    K = {"good": export_key(good, "good"), "other": export_key(other, "other"), "expired": export_key(expired, "expired")}
    C = p("cases")
    base_m = p("img", "base", "manifest.json")
    base_d = manifest_digest(base_m)
    other_d = manifest_digest(p("img", "other", "manifest.json"))
    REF = "registry.moat.test/app:1"

    def img_signed(name, fpr=good, identity=REF, src="base"):
        d = new_image(name, src)
        standalone_sign(os.path.join(d, "manifest.json"), identity, fpr, os.path.join(d, "signature-1"))
        return d

    # --- GPG simple signing, dir: images ----------------------------------
    d = img_signed("accepted-exact-reference")
    case("accepted-exact-reference", "dir:" + d, dir_policy(C, [signed_by(K["good"], exact_ref(REF))]), "accepted",
         want_text="valid signature")
    d = img_signed("accepted-exact-repository", identity="registry.moat.test/app:other-tag")
    case("accepted-exact-repository", "dir:" + d,
         dir_policy(C, [signed_by(K["good"], {"type": "exactRepository", "dockerRepository": "registry.moat.test/app"})]),
         "accepted")
    d = img_signed("rejected-identity-mismatch", identity="registry.moat.test/app:2")
    case("rejected-identity-mismatch", "dir:" + d, dir_policy(C, [signed_by(K["good"], exact_ref(REF))]), "rejected",
         want_text="policy requires exactly")
    d = img_signed("rejected-default-identity-no-docker-ref")
    case("rejected-default-identity-no-docker-ref", "dir:" + d, dir_policy(C, [signed_by(K["good"])]), "rejected",
         want_text="no docker reference")
    d = img_signed("rejected-wrong-key", fpr=other)
    case("rejected-wrong-key", "dir:" + d, dir_policy(C, [signed_by(K["good"], exact_ref(REF))]), "rejected",
         want_text="not one of the policy's keys")
    d = img_signed("accepted-keypaths", fpr=other)
    case("accepted-keypaths", "dir:" + d,
         dir_policy(C, [{"type": "signedBy", "keyType": "GPGKeys", "keyPaths": [K["good"], K["other"]],
                         "signedIdentity": exact_ref(REF)}]), "accepted")
    d = img_signed("accepted-keydata")
    with open(K["good"], "rb") as f:
        kd = base64.b64encode(f.read()).decode()
    case("accepted-keydata", "dir:" + d,
         dir_policy(C, [{"type": "signedBy", "keyType": "GPGKeys", "keyData": kd, "signedIdentity": exact_ref(REF)}]),
         "accepted")
    # Expired key: key made in 2020 valid for a year, signature made in 2020.
    d = new_image("rejected-expired-key")
    gpg_sign(simple_payload(base_d, REF), expired, os.path.join(d, "signature-1"), faked="20200601T000000")
    case("rejected-expired-key", "dir:" + d, dir_policy(C, [signed_by(K["expired"], exact_ref(REF))]), "rejected",
         want_text="expired")
    # Revoked key: signed first, then the key is revoked; the policy's key file carries the revocation.
    d = img_signed("rejected-revoked-key", fpr=revoked)
    rev = open(os.path.join(GNUPG, "openpgp-revocs.d", revoked + ".rev")).read().replace(":-----BEGIN", "-----BEGIN")
    with open(p("revoke.asc"), "w") as f:
        f.write(rev)
    run(["gpg", "--batch", "--import", p("revoke.asc")])
    K["revoked"] = export_key(revoked, "revoked")
    case("rejected-revoked-key", "dir:" + d, dir_policy(C, [signed_by(K["revoked"], exact_ref(REF))]), "rejected",
         want_text="revoked")
    d = img_signed("rejected-flipped-signature-byte")
    with open(os.path.join(d, "signature-1"), "r+b") as f:
        data = bytearray(f.read())
        data[len(data) - 20] ^= 0x01
        f.seek(0)
        f.write(data)
    case("rejected-flipped-signature-byte", "dir:" + d, dir_policy(C, [signed_by(K["good"], exact_ref(REF))]),
         "rejected")
    d = img_signed("rejected-tampered-manifest")
    with open(os.path.join(d, "manifest.json"), "ab") as f:
        f.write(b"\n")  # still the same JSON, other bytes: another digest
    case("rejected-tampered-manifest", "dir:" + d, dir_policy(C, [signed_by(K["good"], exact_ref(REF))]), "rejected",
         want_text="not for")
    d = new_image("rejected-unsigned")
    case("rejected-unsigned", "dir:" + d, dir_policy(C, [signed_by(K["good"], exact_ref(REF))]), "rejected",
         want_text="no signature exists")
    d = new_image("rejected-signature-for-other-digest")
    standalone_sign(p("img", "other", "manifest.json"), REF, good, os.path.join(d, "signature-1"))
    case("rejected-signature-for-other-digest", "dir:" + d, dir_policy(C, [signed_by(K["good"], exact_ref(REF))]),
         "rejected", want_text=other_d)
    d = img_signed("accepted-second-signature-valid", fpr=other)
    standalone_sign(os.path.join(d, "manifest.json"), REF, good, os.path.join(d, "signature-2"))
    case("accepted-second-signature-valid", "dir:" + d, dir_policy(C, [signed_by(K["good"], exact_ref(REF))]),
         "accepted")
    d = new_image("rejected-two-signers-one-message")
    gpg_sign(simple_payload(base_d, REF), good, os.path.join(d, "signature-1"), extra=[other])
    case("rejected-two-signers-one-message", "dir:" + d,
         dir_policy(C, [{"type": "signedBy", "keyType": "GPGKeys", "keyPaths": [K["good"], K["other"]],
                         "signedIdentity": exact_ref(REF)}]), "rejected", want_text="exactly one")
    d = new_image("rejected-payload-unknown-critical-key")
    gpg_sign(simple_payload(base_d, REF, extra_critical={"extra": 1}), good, os.path.join(d, "signature-1"))
    case("rejected-payload-unknown-critical-key", "dir:" + d, dir_policy(C, [signed_by(K["good"], exact_ref(REF))]),
         "rejected", want_text="unknown key")
    d = new_image("rejected-payload-wrong-type")
    gpg_sign(simple_payload(base_d, REF, typ="cosign container image signature"), good, os.path.join(d, "signature-1"))
    case("rejected-payload-wrong-type", "dir:" + d, dir_policy(C, [signed_by(K["good"], exact_ref(REF))]),
         "rejected", want_text="unrecognized signature type")
    d = new_image("rejected-garbage-signature-format")
    with open(os.path.join(d, "signature-1"), "wb") as f:
        f.write(b"A not a signature\n")
    case("rejected-garbage-signature-format", "dir:" + d, dir_policy(C, [signed_by(K["good"], exact_ref(REF))]),
         "rejected", want_text="unsupported signature format")
    d = new_image("error-signature-symlink-to-host-file")
    os.symlink("/etc/passwd", os.path.join(d, "signature-1"))
    case("error-signature-symlink-to-host-file", "dir:" + d, dir_policy(C, [signed_by(K["good"], exact_ref(REF))]),
         "error", want_text="symbolic links")
    # oci: layouts hold no signatures (neither in containers/image); scopes are the layout's path and parents.
    L = p("layout")
    case("rejected-oci-layout-has-no-signatures", f"oci:{L}:a",
         {"default": [{"type": "reject"}], "transports": {"oci": {W: [signed_by(K["good"], exact_ref(REF))]}}},
         "rejected", want_text="no signature exists")
    case("accepted-oci-layout-path-scope", f"oci:{L}:a",
         {"default": [{"type": "reject"}], "transports": {"oci": {L: [{"type": "insecureAcceptAnything"}],
                                                                  W: [{"type": "reject"}]}}}, "accepted")
    # An oversized signature (5 MiB, over the 4 MiB limit) is not read and never accepted; the others count.
    d = img_signed("accepted-oversized-second-signature-ignored")
    with open(os.path.join(d, "signature-2"), "wb") as f:
        f.write(b"\xa3" + os.urandom(5 << 20))
    case("accepted-oversized-second-signature-ignored", "dir:" + d,
         dir_policy(C, [signed_by(K["good"], exact_ref(REF))]), "accepted", want_text="not read")
    d = new_image("rejected-only-oversized-signature")
    with open(os.path.join(d, "signature-1"), "wb") as f:
        f.write(b"\xa3" + os.urandom(5 << 20))
    case("rejected-only-oversized-signature", "dir:" + d, dir_policy(C, [signed_by(K["good"], exact_ref(REF))]),
         "rejected", want_text="larger than")
    # An unpacked tree (dir: without skopeo's files) has no manifest, so nothing can sign it.
    tree = p("cases", "rejected-unpacked-tree", "tree")
    os.makedirs(os.path.join(tree, "etc"))
    with open(os.path.join(tree, "etc", "hostname"), "w") as f:
        f.write("tree\n")
    case("rejected-unpacked-tree", "dir:" + tree, dir_policy(C, [signed_by(K["good"], exact_ref(REF))]), "rejected",
         want_text="no manifest")
    d = new_image("rejected-reject")
    case("rejected-reject", "dir:" + d, dir_policy(C, [{"type": "reject"}]), "rejected", want_text="rejects every image")
    d = new_image("accepted-insecure-accept-anything")
    case("accepted-insecure-accept-anything", "dir:" + d, dir_policy(C, [{"type": "insecureAcceptAnything"}]),
         "accepted", want_text="nothing was verified")
    d = new_image("accepted-transport-default-scope")
    case("accepted-transport-default-scope", "dir:" + d,
         dir_policy("", [{"type": "insecureAcceptAnything"}]), "accepted", want_text='transports[\\"dir\\"][\\"\\"]')
    d = new_image("rejected-most-specific-scope-wins")
    case("rejected-most-specific-scope-wins", "dir:" + d,
         {"default": [{"type": "insecureAcceptAnything"}],
          "transports": {"dir": {C: [{"type": "insecureAcceptAnything"}], d: [{"type": "reject"}]}}}, "rejected")
    d = new_image("accepted-parent-scope-over-default")
    case("accepted-parent-scope-over-default", "dir:" + d,
         {"default": [{"type": "reject"}], "transports": {"dir": {C: [{"type": "insecureAcceptAnything"}]}}},
         "accepted")
    d = img_signed("rejected-all-requirements-must-pass")
    case("rejected-all-requirements-must-pass", "dir:" + d,
         dir_policy(C, [{"type": "insecureAcceptAnything"}, signed_by(K["other"], exact_ref(REF))]), "rejected")
    d = img_signed("accepted-two-requirements")
    case("accepted-two-requirements", "dir:" + d,
         dir_policy(C, [signed_by(K["good"], exact_ref(REF)),
                        signed_by(K["good"], {"type": "exactRepository", "dockerRepository": "registry.moat.test/app"})]),
         "accepted")
    # Two-platform index: the amd64 instance is evaluated with its own signatures, never the list's.
    amd64 = json.load(open(p("img", "multi", "manifest.json")))["manifests"][0]["digest"].split(":")[1]
    d = new_image("accepted-two-platform-index-signed-instance", src="multi")
    standalone_sign(os.path.join(d, amd64 + ".manifest.json"), REF, good, os.path.join(d, amd64 + ".signature-1"))
    case("accepted-two-platform-index-signed-instance", "dir:" + d,
         dir_policy(C, [signed_by(K["good"], exact_ref(REF))]), "accepted", want_text=amd64 + ".signature-1")
    d = new_image("rejected-two-platform-index-only-list-signed", src="multi")
    standalone_sign(os.path.join(d, "manifest.json"), REF, good, os.path.join(d, "signature-1"))
    case("rejected-two-platform-index-only-list-signed", "dir:" + d,
         dir_policy(C, [signed_by(K["good"], exact_ref(REF))]), "rejected")
    d = new_image("rejected-two-platform-index-unsigned", src="multi")
    case("rejected-two-platform-index-unsigned", "dir:" + d, dir_policy(C, [signed_by(K["good"], exact_ref(REF))]),
         "rejected")
    # Broken policies: moat cannot evaluate (exit 2); skopeo refuses too.
    d = img_signed("error-duplicate-key-policy")
    good_pol = json.dumps(dir_policy(C, [signed_by(K["good"], exact_ref(REF))]))
    case("error-duplicate-key-policy", "dir:" + d,
         b'{"default": [{"type": "insecureAcceptAnything"}], "default": [{"type": "reject"}]}', "error",
         want_text="duplicate key")
    case("error-duplicate-nested-key-policy", "dir:" + d,
         good_pol.replace('"keyType": "GPGKeys"', '"keyType": "GPGKeys", "keyPath": "' + K["other"] + '"', 1).encode(),
         "error", want_text="duplicate key")
    case("error-unknown-key-policy", "dir:" + d,
         json.dumps({"default": [{"type": "insecureAcceptAnything"}], "defaults": []}).encode(), "error",
         want_text="unknown key")
    case("error-trailing-data-policy", "dir:" + d,
         (json.dumps({"default": [{"type": "insecureAcceptAnything"}]}) + ' {"default": []}').encode(), "error")
    case("error-empty-requirements", "dir:" + d, {"default": []}, "error", want_text="must not be empty")
    case("error-relative-dir-scope", "dir:" + d,
         {"default": [{"type": "insecureAcceptAnything"}], "transports": {"dir": {"relative/x": [{"type": "reject"}]}}},
         "error", want_text="absolute path")
    case("error-missing-key-file", "dir:" + d, dir_policy(C, [signed_by(p("keys", "missing.asc"), exact_ref(REF))]),
         "error", want_text="missing.asc")
    case("error-signedby-without-keytype", "dir:" + d,
         dir_policy(C, [{"type": "signedBy", "keyPath": K["good"]}]), "error", want_text="keyType")

    # --- sigstore, dir: images (containers/image's "sigstore-json" blobs) --
    k = make_sigstore_keys()
    SREF = "registry.moat.test/app:1"

    def sig_image(name, keyfile, identity=SREF, digest=None, mutate=None, cert=None, bundle_key=None, when=None,
                  keypem_for_bundle=None):
        d = new_image(name)
        payload = cosign_payload(digest or base_d, identity)
        sig = raw_sign(keyfile, payload)
        bundle = None
        if bundle_key:
            pem = cert if cert else open(keypem_for_bundle, "rb").read()
            bundle = rekor_bundle(bundle_key, base64.b64encode(sig).decode(), pem, payload, when)
        if mutate:
            sig = mutate(sig)
        with open(os.path.join(d, "signature-1"), "wb") as f:
            f.write(sigstore_blob(payload, sig, cert, bundle))
        return d

    def sigstore_req(**kw):
        r = {"type": "sigstoreSigned"}
        r.update(kw)
        r.setdefault("signedIdentity", {"type": "exactRepository", "dockerRepository": "registry.moat.test/app"})
        return r

    # Debian's skopeo 1.9.3 reads sigstore signatures of dir: images: it is the oracle here too when it accepts
    # the plainly valid case; otherwise these cases follow the documented semantics only.
    d = sig_image("sigstore-accepted-ecdsa", f"{k}/ec.key")
    pol = dir_policy(C, [sigstore_req(keyPath=f"{k}/ec.pub")])
    probe = os.path.join(W, "probe-policy.json")
    with open(probe, "w") as f:
        json.dump(pol, f)
    sk_ok, _ = skopeo_accepts("dir:" + d, probe, None, p("probe-out"))
    so = sk_ok
    case("sigstore-accepted-ecdsa", "dir:" + d, pol, "accepted", oracle=so)
    d = sig_image("sigstore-accepted-rsa", f"{k}/rsa.key")
    case("sigstore-accepted-rsa", "dir:" + d, dir_policy(C, [sigstore_req(keyPath=f"{k}/rsa.pub")]), "accepted",
         oracle=so)
    d = sig_image("sigstore-accepted-ed25519", f"{k}/ed.key")
    case("sigstore-accepted-ed25519", "dir:" + d, dir_policy(C, [sigstore_req(keyPath=f"{k}/ed.pub")]), "accepted",
         oracle=False)  # containers/image 5.23 (Debian's skopeo) has no Ed25519 for sigstore
    d = sig_image("sigstore-rejected-wrong-key", f"{k}/ec2.key")
    case("sigstore-rejected-wrong-key", "dir:" + d, dir_policy(C, [sigstore_req(keyPath=f"{k}/ec.pub")]), "rejected",
         oracle=so, want_text="verification failed")
    d = sig_image("sigstore-accepted-keydatas", f"{k}/ec2.key")
    case("sigstore-accepted-keydatas", "dir:" + d,
         dir_policy(C, [sigstore_req(keyDatas=[base64.b64encode(open(f"{k}/ec.pub", "rb").read()).decode(),
                                               base64.b64encode(open(f"{k}/ec2.pub", "rb").read()).decode()])]),
         "accepted", oracle=False)  # keyDatas is newer than Debian's skopeo
    d = sig_image("sigstore-rejected-flipped-signature", f"{k}/ec.key",
                  mutate=lambda s: s[:-3] + bytes([s[-3] ^ 1]) + s[-2:])
    case("sigstore-rejected-flipped-signature", "dir:" + d, dir_policy(C, [sigstore_req(keyPath=f"{k}/ec.pub")]),
         "rejected", oracle=so)
    d = sig_image("sigstore-rejected-other-digest", f"{k}/ec.key", digest=other_d)
    case("sigstore-rejected-other-digest", "dir:" + d, dir_policy(C, [sigstore_req(keyPath=f"{k}/ec.pub")]),
         "rejected", oracle=so, want_text="not for")
    d = sig_image("sigstore-rejected-identity-other-repo", f"{k}/ec.key", identity="registry.moat.test/evil:1")
    case("sigstore-rejected-identity-other-repo", "dir:" + d, dir_policy(C, [sigstore_req(keyPath=f"{k}/ec.pub")]),
         "rejected", oracle=so)
    d = sig_image("sigstore-rejected-gpg-requirement", f"{k}/ec.key")
    case("sigstore-rejected-gpg-requirement", "dir:" + d, dir_policy(C, [signed_by(K["good"], exact_ref(REF))]),
         "rejected", oracle=so, want_text="simple-signing")
    # Public key with a Rekor SET.
    d = sig_image("sigstore-accepted-key-with-rekor", f"{k}/ec.key", bundle_key=f"{k}/rekor.key",
                  keypem_for_bundle=f"{k}/ec.pub")
    case("sigstore-accepted-key-with-rekor", "dir:" + d,
         dir_policy(C, [sigstore_req(keyPath=f"{k}/ec.pub", rekorPublicKeyPath=f"{k}/rekor.pub")]), "accepted",
         oracle=so)
    d = sig_image("sigstore-rejected-rekor-wrong-key", f"{k}/ec.key", bundle_key=f"{k}/rekor2.key",
                  keypem_for_bundle=f"{k}/ec.pub")
    case("sigstore-rejected-rekor-wrong-key", "dir:" + d,
         dir_policy(C, [sigstore_req(keyPath=f"{k}/ec.pub", rekorPublicKeyPath=f"{k}/rekor.pub")]), "rejected",
         oracle=so, want_text="Rekor")
    # Keyless: a Fulcio leaf from the test CA, logged in the test Rekor.
    iss = "https://issuer.moat.test"
    leaf_key, leaf_pem = make_leaf(k, "leaf", "dev@moat.test", iss)
    cert = open(leaf_pem, "rb").read()
    fulcio = {"caPath": f"{k}/ca.pem", "oidcIssuer": iss, "subjectEmail": "dev@moat.test"}

    def keyless(name, fulcio_cfg, leaf=(leaf_key, cert), rekor_key=f"{k}/rekor.key", when=None, expect="accepted",
                text=None, oracle=so):
        d = sig_image(name, leaf[0], cert=leaf[1], bundle_key=rekor_key, when=when)
        case(name, "dir:" + d,
             dir_policy(C, [sigstore_req(fulcio=fulcio_cfg, rekorPublicKeyPath=f"{k}/rekor.pub")]), expect,
             oracle=oracle, want_text=text)

    keyless("sigstore-keyless-accepted", fulcio)
    keyless("sigstore-keyless-rejected-email", dict(fulcio, subjectEmail="other@moat.test"), expect="rejected",
            text="required email")
    keyless("sigstore-keyless-rejected-issuer", dict(fulcio, oidcIssuer="https://other.moat.test"),
            expect="rejected", text="OIDC issuer")
    keyless("sigstore-keyless-rejected-other-ca", dict(fulcio, caPath=f"{k}/ca2.pem"), expect="rejected",
            text="CA")
    keyless("sigstore-keyless-rejected-rekor-time-outside-cert", fulcio, when=time.time() - 30 * 86400,
            expect="rejected", text="certificate")
    lk2, lp2 = make_leaf(k, "leaf-serverauth", "dev@moat.test", iss, eku="serverAuth")
    keyless("sigstore-keyless-rejected-not-code-signing", fulcio, leaf=(lk2, open(lp2, "rb").read()),
            expect="rejected", text="code signing")
    lk3, lp3 = make_leaf(k, "leaf-v2", "dev@moat.test", iss, v2=True)
    keyless("sigstore-keyless-accepted-issuer-v2-extension", fulcio, leaf=(lk3, open(lp3, "rb").read()))
    keyless("sigstore-keyless-rejected-rekor-wrong-key", fulcio, rekor_key=f"{k}/rekor2.key", expect="rejected",
            text="Rekor")
    # pki: an X.509 chain to the policy's roots, no Rekor.
    def pki_case(name, pki_cfg, leaf=(leaf_key, cert), expect="accepted", text=None):
        d = sig_image(name, leaf[0], cert=leaf[1])
        case(name, "dir:" + d, dir_policy(C, [sigstore_req(pki=pki_cfg)]), expect, oracle=False, want_text=text)

    pki_case("sigstore-pki-accepted-email", {"caRootsPath": f"{k}/ca.pem", "subjectEmail": "dev@moat.test"})
    pki_case("sigstore-pki-rejected-other-root", {"caRootsPath": f"{k}/ca2.pem", "subjectEmail": "dev@moat.test"},
             expect="rejected", text="pki roots")
    pki_case("sigstore-pki-rejected-hostname", {"caRootsPath": f"{k}/ca.pem", "subjectHostname": "build.moat.test"},
             expect="rejected", text="not for host")
    pki_case("sigstore-pki-rejected-not-code-signing", {"caRootsPath": f"{k}/ca.pem", "subjectEmail": "dev@moat.test"},
             leaf=(lk2, open(lp2, "rb").read()), expect="rejected", text="code signing")
    # OCI layouts: cosign's attachment kept in the layout under the sha256-HEX.sig tag (beyond containers/image).
    def oci_with_attachment(name, keyfile, identity=SREF):
        lay = p("cases", name, "layout")
        shutil.copytree(p("layout"), lay)
        with open(os.path.join(lay, "index.json")) as f:
            idx = json.load(f)
        dig = [m["digest"] for m in idx["manifests"]
               if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == "a"][0]
        payload = cosign_payload(dig, identity)

        def blob(data):
            h = hashlib.sha256(data).hexdigest()
            with open(os.path.join(lay, "blobs", "sha256", h), "wb") as f:
                f.write(data)
            return "sha256:" + h

        sig = base64.b64encode(raw_sign(keyfile, payload)).decode()
        man = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                          "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": blob(b"{}"),
                                     "size": 2},
                          "layers": [{"mediaType": "application/vnd.dev.cosign.simplesigning.v1+json",
                                      "digest": blob(payload), "size": len(payload),
                                      "annotations": {"dev.cosignproject.cosign/signature": sig}}]}).encode()
        idx["manifests"].append({"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": blob(man),
                                 "size": len(man),
                                 "annotations": {"org.opencontainers.image.ref.name": "sha256-" + dig[7:] + ".sig"}})
        with open(os.path.join(lay, "index.json"), "w") as f:
            json.dump(idx, f)
        return f"oci:{lay}:a"

    case("sigstore-oci-layout-attachment-accepted", oci_with_attachment("sigstore-oci-layout-attachment-accepted",
                                                                        f"{k}/ec.key"),
         {"default": [{"type": "reject"}], "transports": {"oci": {"": [sigstore_req(keyPath=f"{k}/ec.pub")]}}},
         "accepted", oracle=False, want_text=".sig layer 0")
    case("sigstore-oci-layout-attachment-wrong-key",
         oci_with_attachment("sigstore-oci-layout-attachment-wrong-key", f"{k}/ec2.key"),
         {"default": [{"type": "reject"}], "transports": {"oci": {"": [sigstore_req(keyPath=f"{k}/ec.pub")]}}},
         "rejected", oracle=False)
    d = new_image("sigstore-unsupported-attachment-type")
    payload = b'{"_type": "https://in-toto.io/Statement/v0.1"}'
    with open(os.path.join(d, "signature-1"), "wb") as f:
        f.write(sigstore_blob(payload, raw_sign(f"{k}/ec.key", payload), mime="application/vnd.in-toto+json"))
    case("sigstore-unsupported-attachment-type", "dir:" + d, dir_policy(C, [sigstore_req(keyPath=f"{k}/ec.pub")]),
         "rejected", oracle=so, want_text="unsupported signature format")

    # --- moat scan --policy: the gate before any layer --------------------
    scan_checks(K, C, REF, good)
    rootless_check(K, C, REF)

    # --- docker:// (a real registry, lookaside, sigstore attachments) -----
    if shutil.which("docker-registry") is None:
        print("SKIPPED: docker:// cases: docker-registry is not installed", flush=True)
    else:
        registry_cases(K, good, other, k, base_d)

    failed = [r for r in RESULTS if r[3]]
    oracle_n = sum(1 for r in RESULTS if r[2] is not None)
    print(f"\n{len(RESULTS)} cases, {oracle_n} checked against skopeo, {len(failed)} failed")
    return 1 if failed else 0


def rootless_check(K, C, REF):
    """moat verify as the unprivileged user moat-single: its own temporary keyring, nothing of root's."""
    lib = os.path.join(HERE, "..", "lib")
    if os.getuid() != 0 or shutil.which("setpriv") is None:
        print("SKIPPED: rootless verify (needs root to create the test user)", flush=True)
        return
    subprocess.run(["bash", os.path.join(lib, "rootless-users.sh")], check=True, stdout=subprocess.DEVNULL)
    exe = p("moat-bin")
    shutil.copy(MOAT, exe)
    os.chmod(exe, 0o755)
    problems = []
    for name, want, rc_want in (("accepted-exact-reference", "accepted", 0), ("rejected-wrong-key", "rejected", 1)):
        pol = p("cases", name, "policy.json")
        r = subprocess.run([os.path.join(lib, "as-user.sh"), "moat-single", exe, "verify", "--policy", pol,
                            "dir:" + p("cases", name, "img")], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        if r.returncode != rc_want:
            problems.append(f"{name} as moat-single: exit {r.returncode}, expected {rc_want}: "
                            f"{(r.stdout + r.stderr).decode(errors='replace')[-500:]}")
    import pwd
    uid = pwd.getpwnam("moat-single").pw_uid
    leftovers = [d for d in os.listdir("/tmp") if d.startswith("moat-gpg-") and os.lstat("/tmp/" + d).st_uid == uid]
    if leftovers:
        problems.append(f"temporary keyrings of moat-single left behind in /tmp: {leftovers}")
    RESULTS.append(("rootless-verify-as-moat-single", "-", None, problems))
    print(f"{'ok' if not problems else 'FAIL':4} rootless-verify-as-moat-single" + "".join("\n       " + x for x in problems))


def scan_checks(K, C, REF, good):
    """moat scan --policy: a rejected image stops before any layer; JSON carries the trust result."""
    store = p("store")
    d = new_image("scan-rejected")
    pol = p("cases", "scan-rejected", "policy.json")
    with open(pol, "w") as f:
        json.dump(dir_policy(C, [signed_by(K["good"], exact_ref(REF))]), f)
    out = p("cases", "scan-rejected", "report.json")
    r = run([MOAT, "scan", "--store", store, "--policy", pol, "--fail-on", "none", "--format", "json", "-o", out,
             "dir:" + d], check=False)
    problems = []
    if r.returncode != 1:
        problems.append(f"exit {r.returncode}, expected 1 whatever --fail-on says: {r.stderr.decode()[:400]}")
    else:
        rep = json.load(open(out))
        tf = [f for f in rep["findings"] if f["category"] == "trust"]
        if rep["scan"]["trust"] != "rejected" or not tf or tf[0]["severity"] != "critical" or tf[0]["target"] != "image":
            problems.append("the report lacks scan.trust=rejected and a critical trust finding on the image")
        if not rep["trust"] or rep["trust"]["decision"] != "rejected" or not rep["trust"]["policy_sha256"]:
            problems.append("the report's trust object is incomplete")
        v = subprocess.run([sys.executable, SCHEMA_CHECK, SCHEMA, out], stderr=subprocess.PIPE)
        if v.returncode not in (0, 77):
            problems.append("report does not validate: " + v.stderr.decode()[:400])
    ls = json.loads(run([MOAT, "image", "ls", "--json", "--store", store]).stdout)
    if ls["layers"]:
        problems.append(f"the store holds layers of a rejected image: {ls['layers']}")
    # The same rejection in SARIF: one error-level result of rule trust-rejected on the image.
    out = p("cases", "scan-rejected", "report.sarif")
    r = run([MOAT, "scan", "--store", store, "--policy", pol, "--format", "sarif", "-o", out, "dir:" + d], check=False)
    try:
        res = json.load(open(out))["runs"][0]["results"]
        if r.returncode != 1 or [(x["ruleId"], x["level"]) for x in res] != [("trust-rejected", "error")]:
            problems.append(f"SARIF of a rejected scan: exit {r.returncode}, results {res}")
    except Exception as e:  # noqa: BLE001
        problems.append(f"SARIF of a rejected scan unreadable: {e}")
    RESULTS.append(("scan-rejected-before-any-layer", "rejected", None, problems))
    print(f"{'ok' if not problems else 'FAIL':4} scan-rejected-before-any-layer" + "".join("\n       " + x for x in problems))

    # The same gate for an unpacked tree scanned in place.
    problems = []
    tree = p("cases", "rejected-unpacked-tree", "tree")
    out = p("cases", "rejected-unpacked-tree", "report.json")
    r = run([MOAT, "scan", "--store", store, "--policy", pol, "--format", "json", "-o", out, "dir:" + tree], check=False)
    if r.returncode != 1 or json.load(open(out))["scan"]["trust"] != "rejected":
        problems.append(f"an unpacked tree under a signedBy policy was not rejected (exit {r.returncode})")
    RESULTS.append(("scan-unpacked-tree-rejected", "rejected", None, problems))
    print(f"{'ok' if not problems else 'FAIL':4} scan-unpacked-tree-rejected" + "".join("\n       " + x for x in problems))

    # --policy system on a host whose policy accepts anything: an info finding, never "trusted".
    problems = []
    os.makedirs(os.path.join(ENV["HOME"], ".config", "containers"), exist_ok=True)
    with open(os.path.join(ENV["HOME"], ".config", "containers", "policy.json"), "w") as f:
        json.dump({"default": [{"type": "insecureAcceptAnything"}]}, f)
    d = new_image("scan-system-insecure")
    out = p("cases", "scan-system-insecure", "report.json")
    r = run([MOAT, "scan", "--store", store, "--policy", "system", "--format", "json", "-o", out, "--mount",
             "userspace", "dir:" + d], check=False)
    if r.returncode not in (0, 1):
        problems.append(f"exit {r.returncode}: {r.stderr.decode()[:400]}")
    else:
        rep = json.load(open(out))
        tf = [f for f in rep["findings"] if f["rule_id"] == "trust-not-verified"]
        if rep["scan"]["trust"] != "accepted" or not tf or tf[0]["severity"] != "info":
            problems.append("no info finding saying nothing was verified")
        if not rep["trust"]["nothing_verified"]:
            problems.append("trust.nothing_verified is not true")
        v = subprocess.run([sys.executable, SCHEMA_CHECK, SCHEMA, out], stderr=subprocess.PIPE)
        if v.returncode not in (0, 77):
            problems.append("report does not validate: " + v.stderr.decode()[:400])
    RESULTS.append(("scan-policy-system-insecure", "accepted", None, problems))
    print(f"{'ok' if not problems else 'FAIL':4} scan-policy-system-insecure" + "".join("\n       " + x for x in problems))

    # Without --policy: scan.trust is not-evaluated.
    problems = []
    out = p("cases", "scan-system-insecure", "report2.json")
    r = run([MOAT, "scan", "--store", store, "--format", "json", "-o", out, "--mount", "userspace", "dir:" + d],
            check=False)
    rep = json.load(open(out)) if os.path.exists(out) else {}
    if rep.get("scan", {}).get("trust") != "not-evaluated" or "trust" in rep:
        problems.append(f"scan.trust is not not-evaluated (exit {r.returncode})")
    RESULTS.append(("scan-without-policy-not-evaluated", "-", None, problems))
    print(f"{'ok' if not problems else 'FAIL':4} scan-without-policy-not-evaluated" + "".join("\n       " + x for x in problems))


# ---------------------------------------------------------------- docker://
def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_port(port, proc, what):
    for _ in range(200):
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited early")
        with socket.socket() as c:
            if c.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"{what} did not start on port {port}")


def start(cmd, log, what, port):
    f = open(log, "wb")
    proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, env=ENV)
    CHILDREN.append(proc)
    wait_port(port, proc, what)
    return proc


def start_registry():
    pki = p("pki")
    os.makedirs(pki)
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=moat trust test CA",
            "-keyout", f"{pki}/ca.key", "-out", f"{pki}/ca.crt")
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1", "-keyout", f"{pki}/server.key",
            "-out", f"{pki}/server.csr")
    with open(f"{pki}/ext", "w") as f:
        f.write("subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n")
    openssl("x509", "-req", "-in", f"{pki}/server.csr", "-CA", f"{pki}/ca.crt", "-CAkey", f"{pki}/ca.key",
            "-CAcreateserial", "-days", "2", "-extfile", f"{pki}/ext", "-out", f"{pki}/server.crt")
    port = free_port()
    cfg = p("registry.yml")
    with open(cfg, "w") as f:
        f.write(f"""version: 0.1
log:
  level: info
  formatter: text
storage:
  filesystem:
    rootdirectory: {p('registry-data')}
  delete:
    enabled: true
http:
  addr: 127.0.0.1:{port}
  secret: moat-trust-test
  tls:
    certificate: {pki}/server.crt
    key: {pki}/server.key
""")
    start(["docker-registry", "serve", cfg], p("registry.log"), "docker-registry", port)
    return port


# A lookaside server: python's http.server for a directory, answering 500 under /broken/.
LOOKASIDE_SERVER = r"""
import http.server, sys, functools
class H(http.server.SimpleHTTPRequestHandler):
    def do_GET(self):
        if self.path.startswith("/broken/"):
            self.send_error(500, "broken on purpose")
            return
        super().do_GET()
    def log_message(self, *a):
        sys.stderr.write("%s\n" % (a[0] % a[1:]))
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), functools.partial(H, directory=sys.argv[2])).serve_forever()
"""


def start_lookaside(root):
    port = free_port()
    script = p("lookaside.py")
    with open(script, "w") as f:
        f.write(LOOKASIDE_SERVER)
    start([sys.executable, script, str(port), root], p("lookaside.log"), "lookaside http server", port)
    return port


def registry_request(port, method, path, body=b"", ctype=None):
    import http.client
    import ssl
    ctx = ssl.create_default_context(cafile=p("pki", "ca.crt"))
    c = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=30)
    headers = {"Content-Length": str(len(body))}
    if ctype:
        headers["Content-Type"] = ctype
    c.request(method, path, body=body, headers=headers)
    r = c.getresponse()
    data = r.read()
    loc = r.getheader("Location")
    c.close()
    if r.status >= 300:
        raise RuntimeError(f"{method} {path}: HTTP {r.status} {data[:200]!r}")
    return loc


def push_blob(port, repo, data):
    import urllib.parse
    d = "sha256:" + hashlib.sha256(data).hexdigest()
    loc = registry_request(port, "POST", f"/v2/{repo}/blobs/uploads/")
    u = urllib.parse.urlsplit(loc)
    q = (u.query + "&" if u.query else "") + "digest=" + d
    registry_request(port, "PUT", f"{u.path}?{q}", data, "application/octet-stream")
    return d


def push_manifest(port, repo, tag, doc, media_type):
    data = json.dumps(doc).encode()
    registry_request(port, "PUT", f"/v2/{repo}/manifests/{tag}", data, media_type)
    return "sha256:" + hashlib.sha256(data).hexdigest()


OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"


def push_attachment(port, repo, digest, layers):
    """cosign's attachment: an OCI manifest tagged sha256-HEX.sig, one layer per signature."""
    cfg = b"{}"
    cd = push_blob(port, repo, cfg)
    descs = []
    for payload, annotations, mt in layers:
        descs.append({"mediaType": mt, "digest": push_blob(port, repo, payload), "size": len(payload),
                      "annotations": annotations})
    doc = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
           "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": len(cfg)},
           "layers": descs}
    return push_manifest(port, repo, "sha256-" + digest.split(":")[1] + ".sig", doc, OCI_MANIFEST)


def registry_cases(K, good, other, k, base_d):
    port = start_registry()
    host = f"127.0.0.1:{port}"
    os.makedirs(p("certsd"))  # certs.d style: the CA only (a *.key there would be read as a client pair)
    shutil.copy(p("pki", "ca.crt"), p("certsd", "ca.crt"))
    tls = ["--dest-cert-dir", p("certsd")]
    sigs = p("sigstore")  # the lookaside's files: skopeo writes them (lookaside-staging), http.server serves them
    os.makedirs(os.path.join(sigs, "broken"))
    hport = start_lookaside(sigs)

    def regd(name, yaml_text):
        d = p("regd", name)
        os.makedirs(d)
        with open(os.path.join(d, "default.yaml"), "w") as f:
            f.write(yaml_text)
        return d

    RD_HTTP = regd("http", f"docker:\n  {host}:\n    lookaside: http://127.0.0.1:{hport}\n"
                           f"    lookaside-staging: file://{sigs}\n")
    RD_FILE = regd("file", f"default-docker:\n  lookaside: file://{sigs}\n")
    RD_500 = regd("broken", f"docker:\n  {host}:\n    lookaside: http://127.0.0.1:{hport}/broken\n")
    RD_ATT = regd("attach", f"docker:\n  {host}:\n    lookaside: file://{sigs}\n    use-sigstore-attachments: true\n")
    RD_NOATT = regd("noattach", f"docker:\n  {host}:\n    lookaside: file://{sigs}\n    use-sigstore-attachments: false\n")

    L = p("layout")
    # Signed by skopeo itself while pushing (the lookaside-staging of registries.d).
    run(["skopeo", "copy", "-q", "--registries.d", RD_HTTP, "--sign-by", good] + tls +
        [f"oci:{L}:a", f"docker://{host}/app:1"])
    run(["skopeo", "copy", "-q"] + tls + [f"oci:{L}:a", f"docker://{host}/app:2"])  # same digest, unsigned tag
    run(["skopeo", "copy", "-q"] + tls + [f"oci:{L}:b", f"docker://{host}/app:unsigned"])
    run(["skopeo", "copy", "-q", "--registries.d", RD_HTTP, "--sign-by", good] + tls +
        [f"oci:{L}:b", f"docker://{host}/ns/app:1"])
    run(["skopeo", "copy", "-q", "--registries.d", RD_HTTP, "--sign-by", other] + tls +
        [f"oci:{L}:b", f"docker://{host}/wrongkey:1"])
    # A mirror whose signatures name the upstream (remapIdentity).
    run(["skopeo", "copy", "-q"] + tls + [f"oci:{L}:a", f"docker://{host}/mirror/app:1"])
    a_digest = base_d
    # (base_d is the manifest of :a as skopeo's dir: wrote it; the pushed one is the same bytes.)
    mdir = os.path.join(sigs, "mirror", "app@sha256=" + a_digest.split(":")[1])
    os.makedirs(mdir)
    mf = p("a-manifest.json")
    shutil.copy(p("img", "base", "manifest.json"), mf)
    standalone_sign(mf, "registry.moat.test/app:1", good, os.path.join(mdir, "signature-1"))

    def img(ref):
        return f"docker://{host}/{ref}"

    def dcase(name, ref, policy, expect, rd, oracle=True, text=None, extra=()):
        d = p("cases", name)
        os.makedirs(d, exist_ok=True)
        pol = os.path.join(d, "policy.json")
        with open(pol, "w") as f:
            json.dump(policy, f)
        args = [MOAT, "verify", "--cert-dir", p("certsd"), "--policy", pol, "--registries.d", rd, "--format", "json",
                *extra, img(ref)]
        r = run(args, check=False)
        dec = {0: "accepted", 1: "rejected", 2: "error"}.get(r.returncode, f"exit {r.returncode}")
        problems = [] if dec == expect else [f"moat said {dec}, expected {expect}"]
        out = r.stdout.decode(errors="replace")
        if text and text not in out:
            problems.append(f"the output does not say {text!r}")
        sk = None
        if oracle:
            sr = run(["skopeo", "copy", "-q", "--src-cert-dir", p("certsd"), "--policy", pol, "--registries.d", rd,
                      img(ref), "dir:" + os.path.join(d, "skopeo-out")], check=False)
            sk = "accepted" if sr.returncode == 0 else "not accepted"
            if (sr.returncode == 0) != (dec == "accepted"):
                problems.append(f"skopeo {sk} ({sr.stderr.decode(errors='replace')[:300]}), moat said {dec}")
        RESULTS.append((name, dec, sk, problems))
        print(f"{'ok' if not problems else 'FAIL':4} {name:48} moat={dec:9} skopeo={sk or '-'}" +
              "".join("\n       " + x for x in problems), flush=True)
        if problems:
            print("       moat output:\n" + "\n".join("         " + l for l in out.splitlines()[:60]), flush=True)
            print("       moat stderr: " + r.stderr.decode(errors="replace")[:600], flush=True)

    def dpol(reqs, scope=None, default=None):
        return {"default": default or [{"type": "reject"}], "transports": {"docker": {scope or host: reqs}}}

    G = signed_by(K["good"])
    dcase("docker-accepted-by-tag-http-lookaside", "app:1", dpol([G]), "accepted", RD_HTTP, text="valid signature")
    dcase("docker-accepted-by-tag-file-lookaside", "app:1", dpol([G]), "accepted", RD_FILE)
    dcase("docker-accepted-by-digest", "app@" + a_digest, dpol([G]), "accepted", RD_HTTP)
    dcase("docker-rejected-other-tag-same-digest", "app:2", dpol([G]), "rejected", RD_HTTP,
          text="the image is " + host + "/app:2")
    dcase("docker-accepted-other-tag-match-repository", "app:2",
          dpol([signed_by(K["good"], {"type": "matchRepository"})]), "accepted", RD_HTTP)
    dcase("docker-rejected-match-exact-by-digest", "app@" + a_digest,
          dpol([signed_by(K["good"], {"type": "matchExact"})]), "rejected", RD_HTTP)
    dcase("docker-rejected-unsigned", "app:unsigned", dpol([G]), "rejected", RD_HTTP, text="no signature exists")
    dcase("docker-rejected-wrong-key", "wrongkey:1", dpol([G]), "rejected", RD_HTTP)
    dcase("docker-error-lookaside-500", "app:1", dpol([G]), "error", RD_500, text="HTTP status 500")
    dcase("docker-accepted-remap-identity", "mirror/app:1",
          dpol([signed_by(K["good"], {"type": "remapIdentity", "prefix": f"{host}/mirror",
                                      "signedPrefix": "registry.moat.test"})]), "accepted", RD_FILE)
    dcase("docker-rejected-without-remap", "mirror/app:1", dpol([G]), "rejected", RD_FILE)
    # Scopes: the full reference, a namespace, the host, a *. wildcard (built without the port), the transport default.
    ins = [{"type": "insecureAcceptAnything"}]
    rej = [{"type": "reject"}]
    dcase("docker-scope-full-reference", "app:unsigned",
          {"default": rej, "transports": {"docker": {f"{host}/app:unsigned": ins, host: rej}}}, "accepted", RD_HTTP)
    dcase("docker-scope-namespace", "ns/app:1",
          {"default": ins, "transports": {"docker": {f"{host}/ns": [G], host: rej}}}, "accepted", RD_HTTP)
    dcase("docker-scope-namespace-rejects", "ns/app:1",
          {"default": ins, "transports": {"docker": {f"{host}/ns": rej, host: ins}}}, "rejected", RD_HTTP)
    dcase("docker-scope-wildcard", "app:unsigned",
          {"default": ins, "transports": {"docker": {"*.0.1": rej}}}, "rejected", RD_HTTP,
          text='transports[\\"docker\\"][\\"*.0.1\\"]')
    dcase("docker-scope-wildcard-with-port-never-matches", "app:unsigned",
          {"default": ins, "transports": {"docker": {f"*.0.1:{port}": rej}}}, "accepted", RD_HTTP)
    dcase("docker-scope-transport-default", "app:unsigned",
          {"default": rej, "transports": {"docker": {"": ins}}}, "accepted", RD_HTTP)

    # sigstore attachments (sha256-HEX.sig), made here with OpenSSL.
    def attach(repo, digest, keyfile, identity, mt="application/vnd.dev.cosign.simplesigning.v1+json"):
        payload = cosign_payload(digest, identity)
        sig = base64.b64encode(raw_sign(keyfile, payload)).decode()
        push_attachment(port, repo, digest, [(payload, {"dev.cosignproject.cosign/signature": sig}, mt)])

    attach("app", a_digest, f"{k}/ec.key", f"{host}/app:1")
    S = {"type": "sigstoreSigned", "keyPath": f"{k}/ec.pub"}
    dcase("docker-sigstore-accepted-attachment", "app:1", dpol([S]), "accepted", RD_ATT, oracle=False,
          text=".sig layer 0")
    dcase("docker-sigstore-rejected-other-tag-default-identity", "app:2", dpol([S]), "rejected", RD_ATT, oracle=False)
    dcase("docker-sigstore-accepted-match-repository", "app:2",
          dpol([dict(S, signedIdentity={"type": "matchRepository"})]), "accepted", RD_ATT, oracle=False)
    dcase("docker-sigstore-rejected-attachments-disabled", "app:1", dpol([S]), "rejected", RD_NOATT, oracle=False,
          text="use-sigstore-attachments is off")
    dcase("docker-sigstore-rejected-wrong-key", "app:1", dpol([dict(S, keyPath=f"{k}/ec2.pub")]), "rejected",
          RD_ATT, oracle=False)
    dcase("docker-both-gpg-and-sigstore-required", "app:1", dpol([G, S]), "accepted", RD_ATT, oracle=False)
    # A Notation signature found through the referrers tag schema: unsupported, never "unsigned".
    unsigned_d = "sha256:" + hashlib.sha256(open(p("img", "other", "manifest.json"), "rb").read()).hexdigest()
    cfg = b"{}"
    cd = push_blob(port, "app", cfg)
    sigblob = b'{"notation": "not read by moat"}'
    art = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": "application/vnd.cncf.notary.signature",
           "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": cd, "size": 2},
           "layers": [{"mediaType": "application/jose+json", "digest": push_blob(port, "app", sigblob),
                       "size": len(sigblob)}],
           "subject": {"mediaType": OCI_MANIFEST, "digest": unsigned_d, "size": 1}}
    art_d = push_manifest(port, "app", "notation-sig", art, OCI_MANIFEST)
    ref_index = {"schemaVersion": 2, "mediaType": OCI_INDEX,
                 "manifests": [{"mediaType": OCI_MANIFEST, "digest": art_d, "size": len(json.dumps(art)),
                                "artifactType": "application/vnd.cncf.notary.signature"}]}
    push_manifest(port, "app", "sha256-" + unsigned_d.split(":")[1], ref_index, OCI_INDEX)
    dcase("docker-unsupported-notation-signature", "app:unsigned", dpol([S]), "rejected", RD_ATT, oracle=False,
          text="unsupported signature format")
    # Two-platform index in the registry: the amd64 instance is evaluated with its own attachment.
    run(["skopeo", "copy", "-q", "--all"] + tls + [f"oci:{L}:multi", f"docker://{host}/multi:1"])
    amd64 = json.load(open(p("img", "multi", "manifest.json")))["manifests"][0]["digest"]
    attach("multi", amd64, f"{k}/ec.key", f"{host}/multi:1")
    dcase("docker-two-platform-instance-attachment", "multi:1", dpol([S]), "accepted", RD_ATT, oracle=False,
          text=amd64)
    dcase("docker-two-platform-arm64-unsigned", "multi:1", dpol([S]), "rejected", RD_ATT, oracle=False,
          extra=["--platform", "linux/arm64"], text="linux/arm64")

    # A rejected image: moat scan stops before any layer; the registry log shows no layer blob request.
    problems = []
    pol = p("cases", "docker-scan-gate.json")
    with open(pol, "w") as f:
        json.dump(dpol([G]), f)
    layers = [l["digest"] for l in json.load(open(p("img", "other", "manifest.json")))["layers"]]
    before = len(open(p("registry.log"), errors="replace").read())
    r = run([MOAT, "scan", "--store", p("store-docker"), "--cert-dir", p("certsd"), "--policy", pol,
             "--registries.d", RD_HTTP, "--format", "json", "-o", p("cases", "docker-scan-gate.report.json"),
             img("app:unsigned")], check=False)
    time.sleep(0.5)
    log = open(p("registry.log"), errors="replace").read()[before:]  # only what this scan asked for
    if r.returncode != 1:
        problems.append(f"moat scan exited {r.returncode}, expected 1: {r.stderr.decode()[:400]}")
    for l in layers:
        if f"/v2/app/blobs/{l}" in log:
            problems.append(f"the registry served layer {l} of a rejected image")
    if "/v2/app/manifests/unsigned" not in log:
        problems.append("the registry log does not show the scan's manifest request (is the log read right?)")
    RESULTS.append(("docker-scan-rejected-no-layer-request", "rejected", None, problems))
    print(f"{'ok' if not problems else 'FAIL':4} docker-scan-rejected-no-layer-request" +
          "".join("\n       " + x for x in problems), flush=True)
    # The same scan with the image signed: layers are fetched (the check above can fail).
    problems = []
    before = len(open(p("registry.log"), errors="replace").read())
    r = run([MOAT, "scan", "--store", p("store-docker"), "--cert-dir", p("certsd"), "--policy", pol,
             "--registries.d", RD_HTTP, "--mount", "userspace", "--format", "json", "-o",
             p("cases", "docker-scan-accepted.json"), img("ns/app:1")], check=False)
    log = open(p("registry.log"), errors="replace").read()[before:]
    if r.returncode not in (0, 1) or not any(f"/v2/ns/app/blobs/{l}" in log for l in layers):
        problems.append(f"an accepted image's layers were not fetched (exit {r.returncode}): {r.stderr.decode()[:300]}")
    RESULTS.append(("docker-scan-accepted-fetches-layers", "accepted", None, problems))
    print(f"{'ok' if not problems else 'FAIL':4} docker-scan-accepted-fetches-layers" +
          "".join("\n       " + x for x in problems), flush=True)


if __name__ == "__main__":
    try:
        rc = main()
    except RuntimeError as e:
        print(f"FAIL: setup: {e}", file=sys.stderr)
        rc = 1
    finally:
        cleanup()
    sys.exit(rc)
