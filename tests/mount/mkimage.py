#!/usr/bin/env python3
"""Writes the OCI image layouts the mount tests use, with exact control over
tar entries (owners, setuid bits, .wh. whiteouts, .wh..wh..opq markers) that a
builder would normalise away. Stdlib only, deterministic (mtime fixed).

usage: mkimage.py KIND OUTDIR
  KIND: basic   three layers: setuid/setgid files, owners, whiteouts, an
                opaque directory, a 0000 directory, a hardlink, a symlink
        one     a single layer
        many:N  N layers, each adding /layers/fN; the top one whites out f0
        owners  basic plus setuid/setgid files owned by uid 1000
        hostile forged overlay xattrs, a 0:0 char device, symlinks out, odd names
"""
import gzip
import hashlib
import io
import json
import os
import sys
import tarfile

MTIME = 1700000000


def entry(name, kind="f", mode=0o644, uid=0, gid=0, data=b"", link="", pax=None):
    return dict(name=name, kind=kind, mode=mode, uid=uid, gid=gid, data=data, link=link, pax=pax)


def layer_tar(entries):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        for e in entries:
            ti = tarfile.TarInfo(e["name"])
            ti.mode, ti.uid, ti.gid, ti.mtime = e["mode"], e["uid"], e["gid"], MTIME
            ti.uname = ti.gname = ""
            data = None
            if e["kind"] == "d":
                ti.type = tarfile.DIRTYPE
            elif e["kind"] == "l":
                ti.type, ti.linkname = tarfile.SYMTYPE, e["link"]
            elif e["kind"] == "h":
                ti.type, ti.linkname = tarfile.LNKTYPE, e["link"]
            elif e["kind"] == "c":
                ti.type, ti.devmajor, ti.devminor = tarfile.CHRTYPE, 0, 0
            else:
                ti.type, ti.size, data = tarfile.REGTYPE, len(e["data"]), io.BytesIO(e["data"])
            if e.get("pax"):
                ti.pax_headers = dict(e["pax"])
            t.addfile(ti, data)
    return buf.getvalue()


def write_blob(out, data):
    d = hashlib.sha256(data).hexdigest()
    with open(os.path.join(out, "blobs", "sha256", d), "wb") as f:
        f.write(data)
    return "sha256:" + d, len(data)


def write_layout(out, layers):
    os.makedirs(os.path.join(out, "blobs", "sha256"), exist_ok=True)
    with open(os.path.join(out, "oci-layout"), "w") as f:
        json.dump({"imageLayoutVersion": "1.0.0"}, f)
    descs, diff_ids = [], []
    for entries in layers:
        raw = layer_tar(entries)
        diff_ids.append("sha256:" + hashlib.sha256(raw).hexdigest())
        gz = gzip.compress(raw, mtime=0)
        dg, size = write_blob(out, gz)
        descs.append({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": dg, "size": size})
    config = {
        "architecture": {"x86_64": "amd64", "aarch64": "arm64"}.get(os.uname().machine, "amd64"),
        "os": "linux",
        "config": {},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": [{"created_by": "layer %d" % i} for i in range(len(layers))],
    }
    cd, cs = write_blob(out, json.dumps(config).encode())
    manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": cs},
                "layers": descs}
    md, ms = write_blob(out, json.dumps(manifest).encode())
    index = {"schemaVersion": 2, "manifests": [
        {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": md, "size": ms,
         "annotations": {"org.opencontainers.image.ref.name": "latest"}}]}
    with open(os.path.join(out, "index.json"), "w") as f:
        json.dump(index, f)


def basic():
    d = lambda n, mode=0o755, uid=0, gid=0: entry(n, "d", mode, uid, gid)
    l1 = [
        d("bin"), d("etc"), d("usr"), d("usr/bin"), d("usr/sbin"), d("home"), d("home/user", 0o750, 1000, 1000),
        entry("etc/passwd", data=b"root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000::/home/user:/bin/sh\n"),
        entry("etc/gone", data=b"deleted by layer 2\n"),
        entry("usr/bin/su", mode=0o4755, data=b"\x7fELF su"),
        entry("usr/bin/wall", mode=0o2755, gid=5, data=b"\x7fELF wall"),
        entry("usr/bin/plain", mode=0o755, data=b"\x7fELF plain"),
        entry("usr/bin/sticky", mode=0o1755, data=b"sticky"),
        entry("home/user/notes", mode=0o600, uid=1000, gid=1000, data=b"user's notes\n"),
        entry("usr/bin/passwd-link", "h", link="usr/bin/su"),
        entry("bin/sh-link", "l", link="/usr/bin/plain"),
        d("deleted"), entry("deleted/x", data=b"x\n"), entry("deleted/y", data=b"y\n"),
        d("deleted/sub"), entry("deleted/sub/z", data=b"z\n"),
        d("opaque"), entry("opaque/old1", data=b"old\n"), d("opaque/olddir"), entry("opaque/olddir/f", data=b"f\n"),
        d("locked", 0o755), entry("locked/inner", data=b"secret inside a 0000 dir\n"),
    ]
    # The 0000 mode comes after its content, as a real tar would order it too.
    l1.append(d("locked", 0o000))
    l2 = [
        entry("etc/.wh.gone"),
        entry("deleted/.wh.x"), entry("deleted/.wh.sub"),
        d("opaque"), entry("opaque/.wh..wh..opq"), entry("opaque/new", data=b"new\n"),
        entry("usr/sbin/newsetuid", mode=0o4750, data=b"\x7fELF"),
        d("var"), d("var/empty", 0o000),
    ]
    l3 = [
        entry("usr/bin/plain", mode=0o4755, data=b"\x7fELF now setuid"),  # replaced, now setuid
        d("deleted"), entry("deleted/x2", data=b"x2\n"),
        entry("usr/bin/.wh.sticky"),
    ]
    return [l1, l2, l3]


def hostile():
    """Layers that try to make the kernel hide or reveal what the OCI rules do not."""
    l1 = [entry("d", "d", 0o755), entry("d/keep", data=b"keep\n"), entry("d/keep2", data=b"keep2\n"),
          entry("e", "d", 0o755), entry("e/keep", data=b"keep\n"),
          entry("host-passwd", "l", link="/etc/passwd"), entry("up", "l", link="../../../../etc")]
    l2 = [
        # Forged overlay metadata in tar xattrs: must not make d opaque.
        entry("d", "d", 0o755, pax={"SCHILY.xattr.user.overlay.opaque": "y", "SCHILY.xattr.trusted.overlay.opaque": "y"}),
        # A 0:0 character device is a device node in a tar, not a whiteout: it replaces d/keep2, visibly.
        entry("d/keep2", "c", mode=0o600),
        # A forged redirect must not pull in another directory.
        entry("e", "d", 0o755, pax={"SCHILY.xattr.user.overlay.redirect": "/d"}),
        entry("name\nwith newline", data=b"nl\n"),
    ]
    return [l1, l2]


def main():
    kind, out = sys.argv[1], sys.argv[2]
    if kind == "basic":
        layers = basic()
    elif kind == "owners":
        # basic plus a setuid file that belongs to a user, not to root
        layers = basic()
        layers[2].append(entry("usr/bin/usersuid", mode=0o4755, uid=1000, gid=1000, data=b"\x7fELF user"))
        layers[2].append(entry("usr/bin/rootgid", mode=0o2755, uid=1000, gid=0, data=b"\x7fELF g"))
    elif kind == "hostile":
        layers = hostile()
    elif kind == "one":
        layers = [[entry("hello", data=b"hello\n"), entry("dir", "d"), entry("dir/suid", mode=0o4755, data=b"x")]]
    elif kind.startswith("many:"):
        n = int(kind[5:])
        layers = [[entry("layers", "d"), entry("layers/f%d" % i, data=b"%d\n" % i)] for i in range(n)]
        layers[-1].append(entry("layers/.wh.f0"))
    else:
        sys.exit("unknown kind " + kind)
    write_layout(out, layers)


if __name__ == "__main__":
    main()
