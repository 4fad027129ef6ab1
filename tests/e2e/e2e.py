#!/usr/bin/env python3
"""Helpers for the end-to-end tests: an independent reading of moat's store.

  e2e.py add-crafted-layer LAYOUT FROM_TAG TO_TAG
      Appends a hand-made gzip layer (opaque dir, explicit whiteout, hardlink to
      a file of a lower layer, user xattr, 0555 dir) to FROM_TAG, tagged TO_TAG.
  e2e.py check-store-layer STORE DIFFID
      Checks one store layer against its own index.tsv: every entry is on disk
      under diff/ with the right type, mode, owner (when root), symlink target,
      whiteout device and opaque xattr; nothing is on disk that the index lacks.
  e2e.py check-layer-tar STORE DIFFID BLOB
      Compares the layer's index.tsv with the layer tar itself (read by Python's
      tarfile): paths, types, modes, owners, sizes, link targets, user xattrs.
  e2e.py merged-from-store STORE DIFFID... > A.json
      Applies the store's layers bottom-up from index.tsv (opaque dirs, whiteouts,
      hardlinks) and prints the merged view: path -> type, mode, uid, gid, size,
      link, sha256, dev.
  e2e.py merged-from-fs ROOTFS > B.json
      The same view of a tree on disk (umoci's unpack).
  e2e.py compare A.json B.json
      Prints every difference; exits 1 when there is one.
  e2e.py json PATH.TO.FIELD < JSON    prints a field (lists: one item a line)
"""
import gzip
import hashlib
import io
import json
import os
import stat
import sys
import tarfile
import time


def die(msg):
    print("e2e.py: " + msg, file=sys.stderr)
    sys.exit(1)


# ---- index.tsv ---------------------------------------------------------------

def unescape(s):
    out = bytearray()
    i = 0
    b = s.encode("utf-8", "surrogateescape")
    while i < len(b):
        c = b[i]
        if c == 0x5C and i + 1 < len(b):
            n = b[i + 1]
            if n == ord("t"):
                out.append(9); i += 2; continue
            if n == ord("n"):
                out.append(10); i += 2; continue
            if n == 0x5C:
                out.append(0x5C); i += 2; continue
            if n == ord("x"):
                out.append(int(b[i + 2:i + 4], 16)); i += 4; continue
            out.append(n); i += 2; continue
        out.append(c)
        i += 1
    return out.decode("utf-8", "surrogateescape")


def read_index(path):
    with open(path, "r", encoding="utf-8", errors="surrogateescape") as f:
        lines = f.read().split("\n")
    if not lines or lines[0] != "#moat-index v1":
        die(path + ": bad header " + repr(lines[:1]))
    out = []
    for ln in lines[1:]:
        if not ln:
            continue
        f = ln.split("\t")
        if len(f) != 11:
            die("%s: %d fields in %r" % (path, len(f), ln))
        xattrs = {}
        if f[10]:
            for kv in f[10].split(";"):
                k, v = kv.split("=", 1)
                xattrs[unescape(k)] = bytes.fromhex(v)
        out.append({"path": unescape(f[0]), "type": f[1], "mode": int(f[2], 8), "uid": int(f[3]),
                    "gid": int(f[4]), "size": int(f[5]), "major": int(f[6]), "minor": int(f[7]),
                    "mtime": int(f[8]), "link": unescape(f[9]), "xattrs": xattrs})
    return out


def layer_dir(store, diff_id):
    if not diff_id.startswith("sha256:"):
        die("bad diff id " + diff_id)
    return os.path.join(store, "layers", diff_id[7:])


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(1 << 20)
            if not b:
                break
            h.update(b)
    return h.hexdigest()


def lgetxattr(path, name):
    try:
        return os.getxattr(path, name, follow_symlinks=False)
    except OSError:
        return None


# ---- crafted layer -------------------------------------------------------------

def add_crafted_layer(layout, from_tag, to_tag):
    def blob_path(d):
        return os.path.join(layout, "blobs", "sha256", d[7:])

    def put_blob(data):
        d = "sha256:" + hashlib.sha256(data).hexdigest()
        with open(blob_path(d), "wb") as f:
            f.write(data)
        return d

    with open(os.path.join(layout, "index.json")) as f:
        index = json.load(f)
    src = [m for m in index["manifests"]
           if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == from_tag]
    if len(src) != 1:
        die("no tag " + from_tag)
    with open(blob_path(src[0]["digest"])) as f:
        manifest = json.load(f)
    with open(blob_path(manifest["config"]["digest"])) as f:
        config = json.load(f)

    buf = io.BytesIO()
    now = int(time.time())
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        def add(name, typ, mode=0o644, data=b"", uid=0, gid=0, link="", pax=None):
            ti = tarfile.TarInfo(name)
            ti.type, ti.mode, ti.uid, ti.gid, ti.mtime = typ, mode, uid, gid, now
            ti.linkname = link
            ti.size = len(data) if typ == tarfile.REGTYPE else 0
            if pax:
                ti.pax_headers = pax
            t.addfile(ti, io.BytesIO(data) if typ == tarfile.REGTYPE else None)
        add("var/", tarfile.DIRTYPE, 0o755)
        add("var/cache/", tarfile.DIRTYPE, 0o755)
        add("var/cache/app/", tarfile.DIRTYPE, 0o750, uid=0, gid=4)
        add("var/cache/app/.wh..wh..opq", tarfile.REGTYPE, 0o644)
        add("var/cache/app/crafted", tarfile.REGTYPE, 0o600, b"only this survives the opaque dir\n", 1000, 1000)
        add("opt/", tarfile.DIRTYPE, 0o755)
        add("opt/.wh.keep", tarfile.REGTYPE, 0o644)
        add("usr/", tarfile.DIRTYPE, 0o755)
        add("usr/bin/", tarfile.DIRTYPE, 0o755)
        add("usr/bin/bb-hardlink", tarfile.LNKTYPE, 0o4755, link="bin/busybox")
        add("srv/", tarfile.DIRTYPE, 0o755)
        add("srv/rx/", tarfile.DIRTYPE, 0o555)
        add("srv/rx/inside", tarfile.REGTYPE, 0o444, b"in a 0555 dir\n")
        add("etc/", tarfile.DIRTYPE, 0o755)
        add("etc/with-xattr", tarfile.REGTYPE, 0o644, b"x\n", pax={"SCHILY.xattr.user.demo": "hello"})
        add("etc/sudoers", tarfile.REGTYPE, 0o440, b"root ALL=(ALL) ALL\n")
    raw = buf.getvalue()
    gz = gzip.compress(raw, compresslevel=6, mtime=0)
    layer_digest = put_blob(gz)
    diff_id = "sha256:" + hashlib.sha256(raw).hexdigest()
    config["rootfs"]["diff_ids"].append(diff_id)
    config.setdefault("history", []).append({"created": "2026-01-01T00:00:00Z",
                                             "created_by": "layer 3: crafted by e2e.py"})
    cdata = json.dumps(config).encode()
    manifest["config"] = {"mediaType": "application/vnd.oci.image.config.v1+json",
                          "digest": put_blob(cdata), "size": len(cdata)}
    manifest["layers"].append({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                               "digest": layer_digest, "size": len(gz)})
    mdata = json.dumps(manifest).encode()
    index["manifests"].append({"mediaType": "application/vnd.oci.image.manifest.v1+json",
                               "digest": put_blob(mdata), "size": len(mdata),
                               "annotations": {"org.opencontainers.image.ref.name": to_tag}})
    with open(os.path.join(layout, "index.json"), "w") as f:
        json.dump(index, f)


# ---- per-layer checks ------------------------------------------------------------

def check_store_layer(store, diff_id):
    ld = layer_dir(store, diff_id)
    diff = os.path.join(ld, "diff")
    for f in ("index.tsv", "layer.json"):
        if not os.path.isfile(os.path.join(ld, f)):
            die(ld + ": no " + f)
    entries = read_index(os.path.join(ld, "index.tsv"))
    with open(os.path.join(ld, "layer.json")) as f:
        info = json.load(f)
    # Owners on disk are the image's only when the unpacker could chown (root);
    # otherwise user.containers.override_stat carries them.
    root = info.get("owners_applied", os.geteuid() == 0)
    # Unpacked by a user as root of its subuid namespace: container id 0 is the
    # store's owner, 1..N the user's range from /etc/subuid and /etc/subgid.
    owner = os.stat(store)
    def subid_map(path, host_id):
        import pwd
        try:
            name = pwd.getpwuid(host_id).pw_name
        except KeyError:
            return None
        for line in open(path):
            f = line.strip().split(":")
            if len(f) == 3 and f[0] in (name, str(host_id)):
                return int(f[1]), int(f[2])
        return None
    umap = subid_map("/etc/subuid", owner.st_uid) if root and owner.st_uid != 0 else None
    gmap = subid_map("/etc/subgid", owner.st_uid) if root and owner.st_uid != 0 else None
    def host(cid, base, rng):
        if rng is None:
            return cid
        return base if cid == 0 else rng[0] + cid - 1
    errs = []
    unchecked = 0
    expected = set()
    for e in entries:
        p, t = e["path"], e["type"]
        if t == "o":
            if lgetxattr(diff + p, "user.overlay.opaque") != b"y":
                errs.append("%s: opaque in the index, no user.overlay.opaque=y on disk" % p)
            continue
        fs = diff + ("" if p == "/" else p)
        expected.add(p)
        try:
            st = os.lstat(fs)
        except PermissionError:
            if os.geteuid() != 0:
                unchecked += 1  # beneath a 0000/0500 directory of the image: root can look, we cannot
                continue
            raise
        except OSError as x:
            errs.append("%s: %s in the index, not on disk (%s)" % (p, t, x))
            continue
        m = st.st_mode
        want_mode = e["mode"]
        if t == "w":
            if not stat.S_ISCHR(m) or st.st_rdev != 0:
                errs.append("%s: whiteout is not a 0:0 char device" % p)
            continue
        if t in "cb":
            if not stat.S_ISREG(m) or st.st_size != 0:
                errs.append("%s: device placeholder is not an empty file" % p)
            ov = lgetxattr(fs, "user.containers.override_stat")
            kind = "char" if t == "c" else "block"
            want = "%d:%d:%04o:%s-%d-%d" % (e["uid"], e["gid"], e["mode"], kind, e["major"], e["minor"])
            if ov is None or ov.decode() != want:
                errs.append("%s: override_stat %r, expected %r" % (p, ov, want))
            continue
        ok_type = {"f": stat.S_ISREG, "h": stat.S_ISREG, "d": stat.S_ISDIR, "l": stat.S_ISLNK,
                   "p": stat.S_ISFIFO}[t](m)
        if not ok_type:
            errs.append("%s: type %s in the index, mode %o on disk" % (p, t, m))
            continue
        if t == "l":
            if os.readlink(fs) != e["link"]:
                errs.append("%s: symlink to %r on disk, %r in the index" % (p, os.readlink(fs), e["link"]))
        elif t == "h":
            pass  # a link: shares the target's inode (or a copy of a lower file)
        elif stat.S_IMODE(m) != want_mode:
            errs.append("%s: mode %04o on disk, %04o in the index" % (p, stat.S_IMODE(m), want_mode))
        if t in "fp" and st.st_size != e["size"] and t == "f":
            errs.append("%s: size %d on disk, %d in the index" % (p, st.st_size, e["size"]))
        if root and t != "h" and (st.st_uid, st.st_gid) != (host(e["uid"], owner.st_uid, umap), host(e["gid"], owner.st_gid, gmap)):
            errs.append("%s: owner %d:%d on disk, %d:%d in the index (unpacked as root)"
                        % (p, st.st_uid, st.st_gid, e["uid"], e["gid"]))
        if not root and t in "fd" and (e["uid"], e["gid"]) != (0, 0):
            want = "%d:%d:%04o:%s" % (e["uid"], e["gid"], e["mode"], "file" if t == "f" else "dir")
            ov = lgetxattr(fs, "user.containers.override_stat")
            if ov is None or ov.decode() != want:
                errs.append("%s: override_stat %r, expected %r (unpacked without chown)" % (p, ov, want))
        for k, v in e["xattrs"].items():
            if k.startswith("user.") and lgetxattr(fs, k) != v:
                errs.append("%s: xattr %s missing on disk" % (p, k))
    # A parent directory the tar does not list is made on disk but not recorded
    # (the index says only what the tar said); it must be a directory holding an
    # indexed entry, and it takes the lower layer's attributes (checked by crosscheck).
    parents = set()
    for q in expected:
        while q.count("/") > 1:
            q = q.rsplit("/", 1)[0]
            parents.add(q)
    for dirpath, dirs, files in os.walk(diff):
        for n in dirs + files:
            p = os.path.join(dirpath, n)[len(diff):]
            if p not in expected and not (n in dirs and p in parents):
                errs.append("%s: on disk, not in the index" % p)
    for e in errs:
        print("store layer %s: %s" % (diff_id[:19], e), file=sys.stderr)
    if errs:
        sys.exit(1)
    print("%s: %d entries match the disk%s" % (diff_id[:19], len(entries) - unchecked,
                                                 " (%d beneath closed dirs unchecked)" % unchecked if unchecked else ""))


def open_layer_tar(blob):
    with open(blob, "rb") as f:
        magic = f.read(4)
    if magic[:2] == b"\x1f\x8b":
        return tarfile.open(blob, "r:gz")
    if magic == b"\x28\xb5\x2f\xfd":
        import subprocess
        data = subprocess.run(["zstd", "-dc", blob], check=True, stdout=subprocess.PIPE).stdout
        return tarfile.open(fileobj=io.BytesIO(data), mode="r:")
    return tarfile.open(blob, "r:")


def check_layer_tar(store, diff_id, blob):
    idx = {}
    for e in read_index(os.path.join(layer_dir(store, diff_id), "index.tsv")):
        idx[(e["type"] if e["type"] in "wo" else "", e["path"])] = e
    tar = {}
    with open_layer_tar(blob) as t:
        for ti in t:
            name = ti.name
            while name.startswith("./"):
                name = name[2:]
            name = "/" + name.strip("/")
            if name == "/.":
                name = "/"
            parent, base = os.path.split(name)
            if base == ".wh..wh..opq":
                tar[("o", parent)] = {"type": "o"}
                continue
            if base.startswith(".wh."):
                tar[("w", os.path.join(parent, base[4:]))] = {"type": "w"}
                continue
            typ = {tarfile.REGTYPE: "f", tarfile.AREGTYPE: "f", tarfile.DIRTYPE: "d", tarfile.SYMTYPE: "l",
                   tarfile.LNKTYPE: "h", tarfile.FIFOTYPE: "p", tarfile.CHRTYPE: "c",
                   tarfile.BLKTYPE: "b"}[ti.type]
            link = ti.linkname
            if typ == "h":
                link = "/" + link.lstrip("./").strip("/") if not link.startswith("./") else "/" + link[2:]
            xattrs = {k[len("SCHILY.xattr."):]: v.encode("utf-8", "surrogateescape")
                      for k, v in ti.pax_headers.items() if k.startswith("SCHILY.xattr.user.")}
            tar[("", name)] = {"type": typ, "mode": ti.mode & 0o7777, "uid": ti.uid, "gid": ti.gid,
                               "size": ti.size if typ == "f" else 0, "link": link if typ in "lh" else "",
                               "xattrs": xattrs, "major": ti.devmajor if typ in "cb" else 0,
                               "minor": ti.devminor if typ in "cb" else 0}
    errs = []
    for k in sorted(set(idx) | set(tar)):
        a, b = idx.get(k), tar.get(k)
        if a is None:
            if k == ("", "/"):
                continue  # moat records the root even when the tar has no "./"
            errs.append("%s %s: in the tar, not in index.tsv" % k)
            continue
        if b is None:
            if k == ("", "/"):
                continue
            if a["type"] == "d":
                errs.append("%s: a directory in index.tsv that the tar does not have (%04o %d:%d): a parent "
                            "the unpacker made up; merged over the lower layers it replaces the real "
                            "directory's owner and mode" % (k[1], a["mode"], a["uid"], a["gid"]))
            else:
                errs.append("%s %s: in index.tsv, not in the tar" % k)
            continue
        if k[0]:
            continue
        if b["type"] == "h":
            # A hardlink shares its target's inode: the index may carry the target's attributes.
            t = tar.get(("", b["link"]))
            if t is not None:
                b = dict(t, type="h", link=b["link"])
            elif a["type"] == "f" and not a["link"]:
                continue  # a hardlink to a lower layer's file: stored as a copy, with the lower's attributes
        for fld in ("type", "mode", "uid", "gid", "size", "link", "major", "minor"):
            if a[fld] != b[fld]:
                errs.append("%s: %s is %r in index.tsv, %r in the tar" % (k[1], fld, a[fld], b[fld]))
        ux = {n: v for n, v in a["xattrs"].items() if n.startswith("user.")}
        if ux != b["xattrs"]:
            errs.append("%s: user xattrs %r in index.tsv, %r in the tar" % (k[1], ux, b["xattrs"]))
    for e in errs:
        print("layer %s vs its tar: %s" % (diff_id[:19], e), file=sys.stderr)
    if errs:
        sys.exit(1)
    print("%s: %d tar entries match index.tsv" % (diff_id[:19], len(tar)))


# ---- merged views ------------------------------------------------------------------

def drop_tree(state, p):
    state.pop(p, None)
    pre = p.rstrip("/") + "/"
    for k in [k for k in state if k.startswith(pre)]:
        del state[k]


def merged_from_store(store, diff_ids):
    state = {}
    for d in diff_ids:
        diff = os.path.join(layer_dir(store, d), "diff")
        entries = read_index(os.path.join(layer_dir(store, d), "index.tsv"))
        for e in entries:  # an opaque marker applies to the whole directory first
            if e["type"] == "o":
                pre = e["path"].rstrip("/") + "/"
                for k in [k for k in state if k.startswith(pre)]:
                    del state[k]
        for e in entries:
            p, t = e["path"], e["type"]
            if t == "o":
                continue
            if t == "w":
                drop_tree(state, p)
                continue
            old = state.get(p)
            if not (old and old["type"] == "d" and t == "d"):
                drop_tree(state, p)
            rec = {"type": t, "mode": e["mode"], "uid": e["uid"], "gid": e["gid"]}
            if t == "h":
                tgt = state.get(e["link"])
                if tgt is None or tgt["type"] != "f":
                    die("%s: hardlink to %s, which the merged view lacks" % (p, e["link"]))
                rec = dict(tgt)
            elif t == "f":
                rec["size"] = e["size"]
                rec["sha256"] = sha256_file(diff + p)
                if os.lstat(diff + p).st_size != e["size"]:
                    die("%s: size on disk differs from the index" % p)
            elif t == "l":
                rec["link"] = e["link"]
            elif t in "cb":
                rec["dev"] = "%d:%d" % (e["major"], e["minor"])
            if t == "h":
                # the store must hold the same bytes under the link's own path
                if sha256_file(diff + p) != rec["sha256"]:
                    die("%s: hardlink content in the store differs from its target" % p)
            state[p] = rec
    return state


def merged_from_fs(root):
    state = {}
    for dirpath, dirs, files in os.walk(root):
        for n in [""] + dirs + files if dirpath == root else dirs + files:
            fs = os.path.join(dirpath, n) if n else root
            p = "/" + os.path.relpath(fs, root) if n else "/"
            st = os.lstat(fs)
            m = st.st_mode
            rec = {"mode": stat.S_IMODE(m), "uid": st.st_uid, "gid": st.st_gid}
            if stat.S_ISREG(m):
                rec.update(type="f", size=st.st_size, sha256=sha256_file(fs))
            elif stat.S_ISDIR(m):
                rec["type"] = "d"
            elif stat.S_ISLNK(m):
                rec.update(type="l", link=os.readlink(fs))
            elif stat.S_ISFIFO(m):
                rec["type"] = "p"
            elif stat.S_ISCHR(m) or stat.S_ISBLK(m):
                rec.update(type="c" if stat.S_ISCHR(m) else "b",
                           dev="%d:%d" % (os.major(st.st_rdev), os.minor(st.st_rdev)))
            else:
                rec["type"] = "?"
            state[p] = rec
    return state


def compare(a, b, ignore_root_attrs=True):
    errs = []
    for p in sorted(set(a) | set(b)):
        x, y = a.get(p), b.get(p)
        if x is None:
            errs.append("%s: only in B %r" % (p, y))
        elif y is None:
            errs.append("%s: only in A %r" % (p, x))
        elif p == "/" and ignore_root_attrs:
            continue
        elif x != y:
            diffs = ["%s A=%r B=%r" % (k, x.get(k), y.get(k)) for k in sorted(set(x) | set(y)) if x.get(k) != y.get(k)]
            errs.append("%s: %s" % (p, ", ".join(diffs)))
    return errs


def main(argv):
    if len(argv) < 2:
        die(__doc__)
    cmd, args = argv[1], argv[2:]
    if cmd == "add-crafted-layer":
        add_crafted_layer(*args)
    elif cmd == "check-store-layer":
        check_store_layer(*args)
    elif cmd == "check-layer-tar":
        check_layer_tar(*args)
    elif cmd == "merged-from-store":
        json.dump(merged_from_store(args[0], args[1:]), sys.stdout, indent=1, sort_keys=True)
    elif cmd == "merged-from-fs":
        json.dump(merged_from_fs(args[0]), sys.stdout, indent=1, sort_keys=True)
    elif cmd == "compare":
        with open(args[0]) as f:
            a = json.load(f)
        with open(args[1]) as f:
            b = json.load(f)
        errs = compare(a, b)
        for e in errs:
            print("differs: " + e, file=sys.stderr)
        if errs:
            sys.exit(1)
        print("%d paths identical" % len(a))
    elif cmd == "json":
        v = json.load(sys.stdin)
        for part in args[0].split(".") if args[0] else []:
            v = v[int(part)] if isinstance(v, list) else v[part]
        if isinstance(v, list):
            for i in v:
                print(i if not isinstance(i, (dict, list)) else json.dumps(i))
        elif isinstance(v, (dict,)):
            print(json.dumps(v))
        else:
            print(v)
    else:
        die("unknown command " + cmd)


if __name__ == "__main__":
    main(sys.argv)
