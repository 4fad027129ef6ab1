#!/usr/bin/env bash
# Builds examples/demo-image/, the small OCI image layout moat's demo scans and
# later checks are tested against. Everything in it is made here, from text in
# this script: no network, no host files.
#
# Reproducible: entries sorted, owners numeric (no user/group names), every
# mtime and the config's dates = SOURCE_DATE_EPOCH (default 2024-01-01),
# gzip headers with mtime 0 and no file name, JSON with sorted keys. Running it
# twice gives byte-identical output (same python3/zlib; Debian 12's here).
#
# Usage: examples/make-example.sh [OUTDIR]   (default: examples/demo-image)
# What is planted, layer by layer: examples/README.md.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=${1:-$here/demo-image}
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-1704067200}
rm -rf "$out"
mkdir -p "$out"
python3 - "$out" <<'PY'
import gzip, hashlib, io, json, os, sys, tarfile, time

out = sys.argv[1]
EPOCH = int(os.environ["SOURCE_DATE_EPOCH"])
CREATED = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(EPOCH))

# ---------------------------------------------------------------- contents --
# Fake secrets, made up for this demo; none of them is or was ever valid.
# The AWS key has the documented shape (AKIA + 16 of [A-Z2-7]) but is not the
# documentation's own example; the GitHub-style token fails GitHub's checksum.
FAKE_AWS_KEY_ID = "AKIA" + "MOATDEMO4Q7X2K5J"
FAKE_AWS_SECRET = "mOaTdEmO" + "7s2Kq9Vx4Lb8Nf3Rt6Yw1Zc5Hd0P" + "FAKE"
FAKE_GH_TOKEN = "ghp_" + "MoatDemoFakeToken000" + "aBcDeFgHiJkLmNoP"
assert len(FAKE_AWS_KEY_ID) == 20 and len(FAKE_AWS_SECRET) == 40 and len(FAKE_GH_TOKEN) == 40

PASSWD = """root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin
bin:x:2:2:bin:/bin:/usr/sbin/nologin
toor:x:0:0:backdoor root account:/root:/bin/sh
app:x:1000:1000:demo app:/opt/app:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin
"""
GROUP = """root:x:0:
daemon:x:1:
bin:x:2:
shadow:x:42:
app:x:1000:
nogroup:x:65534:
"""
# Password hashes are placeholders, not crypt output of anything.
SHADOW = """root:*:19723:0:99999:7:::
daemon:*:19723:0:99999:7:::
bin:*:19723:0:99999:7:::
toor:$6$moatdemo$notarealhashnotarealhashnotarealhashnotarealhash:19723:0:99999:7:::
app:!:19723:0:99999:7:::
nobody:*:19723:0:99999:7:::
"""
OS_RELEASE = """PRETTY_NAME="moat demo image"
NAME="moat-demo"
ID=moat-demo
ID_LIKE=debian
VERSION_ID="1"
"""
DPKG_STATUS = """Package: base-files
Status: install ok installed
Priority: required
Section: admin
Installed-Size: 8
Maintainer: moat demo <demo@example.invalid>
Architecture: amd64
Version: 12.4+deb12u5
Description: Debian base system miscellaneous files (demo)

Package: demo-tool
Status: install ok installed
Priority: optional
Section: utils
Installed-Size: 4
Maintainer: moat demo <demo@example.invalid>
Architecture: amd64
Version: 1.0-1
Description: a packaged tool (demo)

"""
BASE_FILES_LIST = "/.\n/etc\n/etc/group\n/etc/hostname\n/etc/os-release\n/etc/passwd\n/etc/shadow\n"
DEMO_TOOL_LIST = "/.\n/usr\n/usr/bin\n/usr/bin/demo-tool\n/usr/bin/demo-tool-alias\n"
CREDENTIALS = f"""[default]
aws_access_key_id = {FAKE_AWS_KEY_ID}
aws_secret_access_key = {FAKE_AWS_SECRET}
region = eu-west-1
"""
ROOTSH = '#!/bin/sh\n# demo: a setuid-root shell wrapper no package owns\nexec /bin/sh -p "$@"\n'
DEMO_TOOL = "#!/bin/sh\necho demo-tool 1.0\n"
DOTENV = """# demo settings, all values fake
DATABASE_URL=postgres://app:not-a-real-password@db:5432/app
SECRET_KEY=moat-demo-secret-key-0000-not-real
DEBUG=true
"""
APP_PY = 'import os\nprint("hello from the moat demo app", os.environ.get("APP_ENV", "dev"))\n'

# Entry: (path, kind, mode, uid, gid, data_or_target). kind: d dir, f file, l symlink, h hardlink, w whiteout, o opaque.
def d(path, mode=0o755, uid=0, gid=0): return (path, "d", mode, uid, gid, None)
def f(path, data, mode=0o644, uid=0, gid=0): return (path, "f", mode, uid, gid, data.encode())
def sym(path, target): return (path, "l", 0o777, 0, 0, target)
def hard(path, target, mode=0o755): return (path, "h", mode, 0, 0, target)

layers = [
    {
        "created_by": "/bin/sh -c #(nop) ADD file:moat-demo-rootfs in / ",
        "comment": "base filesystem, with AWS credentials baked in by mistake",
        "entries": [
            d("etc"),
            f("etc/passwd", PASSWD),                        # extra uid-0 account "toor"
            f("etc/group", GROUP),
            f("etc/shadow", SHADOW, mode=0o644, gid=42),    # shadow readable by everyone
            f("etc/hostname", "moat-demo\n"),
            f("etc/os-release", OS_RELEASE),
            sym("etc/localtime", "/usr/share/zoneinfo/Etc/UTC"),
            d("opt"),
            d("opt/app", uid=1000, gid=1000),
            d("opt/app/config", uid=1000, gid=1000),
            f("opt/app/config/aws-credentials", CREDENTIALS, mode=0o600, uid=1000, gid=1000),  # deleted in layer 2
            d("root", mode=0o700),
            d("tmp", mode=0o1777),                           # world-writable *with* sticky: fine
            d("usr"),
            d("usr/bin"),
            f("usr/bin/demo-tool", DEMO_TOOL, mode=0o755),
            hard("usr/bin/demo-tool-alias", "usr/bin/demo-tool"),
            d("usr/local"),
            d("usr/local/bin"),
            d("var"),
            d("var/cache"),
            d("var/cache/app"),
            f("var/cache/app/stale.txt", "stale cache, hidden by layer 3's opaque dir\n"),
            d("var/lib"),
            d("var/lib/dpkg"),
            d("var/lib/dpkg/info"),
            f("var/lib/dpkg/info/base-files.list", BASE_FILES_LIST),
            f("var/lib/dpkg/info/demo-tool.list", DEMO_TOOL_LIST),
            f("var/lib/dpkg/status", DPKG_STATUS),
            d("var/tmp", mode=0o1777),
        ],
    },
    {
        "created_by": "/bin/sh -c rm -f /opt/app/config/aws-credentials "
                      "&& install -m 4755 rootsh /usr/local/bin/rootsh "
                      "&& mkdir -m 0777 /var/tmp/uploads && tar -xf data.tar -C /opt/app/data",
        "entries": [
            d("opt"),
            d("opt/app", uid=1000, gid=1000),
            d("opt/app/config", uid=1000, gid=1000),
            ("opt/app/config/.wh.aws-credentials", "w", 0o644, 0, 0, None),  # the secret stays in layer 1's blob
            d("opt/app/data", uid=1000, gid=1000),
            f("opt/app/data/orphan.dat", "owned by uid 4242, which /etc/passwd does not know\n", uid=4242, gid=4242),
            d("usr"),
            d("usr/local"),
            d("usr/local/bin"),
            f("usr/local/bin/rootsh", ROOTSH, mode=0o4755),   # setuid root, in no package
            d("var"),
            d("var/tmp", mode=0o1777),
            d("var/tmp/uploads", mode=0o777),                 # world-writable, no sticky bit
        ],
    },
    {
        "created_by": "COPY .env app.py /opt/app/ # buildkit",
        "entries": [
            d("opt"),
            d("opt/app", uid=1000, gid=1000),
            f("opt/app/.env", DOTENV, mode=0o640, uid=1000, gid=1000),
            f("opt/app/app.py", APP_PY, uid=1000, gid=1000),
            d("var"),
            d("var/cache"),
            d("var/cache/app"),
            ("var/cache/app/.wh..wh..opq", "o", 0o644, 0, 0, None),
            f("var/cache/app/fresh.txt", "fresh cache\n"),
        ],
    },
]

def layer_tar(entries):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        for path, kind, mode, uid, gid, payload in sorted(entries, key=lambda e: e[0]):
            ti = tarfile.TarInfo(path)
            ti.mode, ti.uid, ti.gid, ti.mtime = mode, uid, gid, EPOCH
            ti.uname = ti.gname = ""
            data = None
            if kind == "d":
                ti.type = tarfile.DIRTYPE
            elif kind == "f":
                ti.type, ti.size, data = tarfile.REGTYPE, len(payload), io.BytesIO(payload)
            elif kind == "l":
                ti.type, ti.linkname = tarfile.SYMTYPE, payload
            elif kind == "h":
                ti.type, ti.linkname = tarfile.LNKTYPE, payload
            elif kind in ("w", "o"):
                ti.type, ti.size, data = tarfile.REGTYPE, 0, io.BytesIO(b"")
            t.addfile(ti, data)
    return buf.getvalue()

def gz(data):
    buf = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, compresslevel=9, mtime=0) as g:
        g.write(data)
    return buf.getvalue()

blobs = os.path.join(out, "blobs", "sha256")
os.makedirs(blobs)

def put(data):
    h = hashlib.sha256(data).hexdigest()
    with open(os.path.join(blobs, h), "wb") as fh:
        fh.write(data)
    return "sha256:" + h, len(data)

def dumps(obj):
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()

layer_descs, diff_ids = [], []
for l in layers:
    tar = layer_tar(l["entries"])
    diff_ids.append("sha256:" + hashlib.sha256(tar).hexdigest())
    digest, size = put(gz(tar))
    layer_descs.append({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": digest, "size": size})

history = [
    {"created": CREATED, "created_by": layers[0]["created_by"], "comment": layers[0]["comment"]},
    {"created": CREATED, "created_by": '/bin/sh -c #(nop)  CMD ["/bin/sh"]', "empty_layer": True},
    {"created": CREATED, "created_by": layers[1]["created_by"]},
    {"created": CREATED, "created_by": f"ENV GITHUB_TOKEN={FAKE_GH_TOKEN} APP_ENV=production", "comment": "buildkit.dockerfile.v0", "empty_layer": True},
    {"created": CREATED, "created_by": layers[2]["created_by"]},
    {"created": CREATED, "created_by": 'CMD ["python3", "/opt/app/app.py"]', "comment": "buildkit.dockerfile.v0", "empty_layer": True},
]
config = {
    "architecture": "amd64",
    "os": "linux",
    "created": CREATED,
    "author": "moat examples/make-example.sh",
    "config": {
        # No "User": the container runs as root.
        "Env": [
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            f"GITHUB_TOKEN={FAKE_GH_TOKEN}",
            "APP_ENV=production",
        ],
        "Cmd": ["python3", "/opt/app/app.py"],
        "WorkingDir": "/opt/app",
        "Labels": {"org.opencontainers.image.title": "moat demo image", "org.opencontainers.image.description": "planted findings for moat; all secrets are fake"},
    },
    "rootfs": {"type": "layers", "diff_ids": diff_ids},
    "history": history,
}
config_digest, config_size = put(dumps(config))
manifest = {
    "schemaVersion": 2,
    "mediaType": "application/vnd.oci.image.manifest.v1+json",
    "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config_size},
    "layers": layer_descs,
    "annotations": {"org.opencontainers.image.created": CREATED},
}
manifest_digest, manifest_size = put(dumps(manifest))
index = {
    "schemaVersion": 2,
    "mediaType": "application/vnd.oci.image.index.v1+json",
    "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": manifest_digest,
        "size": manifest_size,
        "platform": {"architecture": "amd64", "os": "linux"},
        "annotations": {"org.opencontainers.image.ref.name": "latest"},
    }],
}
with open(os.path.join(out, "index.json"), "wb") as fh:
    fh.write(dumps(index))
with open(os.path.join(out, "oci-layout"), "wb") as fh:
    fh.write(dumps({"imageLayoutVersion": "1.0.0"}))
PY
# Fixed file times and modes too, so even `tar c examples/` is stable.
find "$out" -type d -exec chmod 0755 {} + -o -type f -exec chmod 0644 {} +
find "$out" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
echo "wrote $out ($(du -sk "$out" | cut -f1) KB)"
