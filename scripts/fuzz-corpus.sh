#!/usr/bin/env bash
# Generates the seed corpora of the fuzz targets (tests/fuzz/) from the test
# fixtures: real images written by the fixture builder (moat-fixture: tar,
# gzip, zstd, OCI layouts and archives, docker-archive classic and Docker 25),
# tars made by GNU tar and Python's tarfile (PAX, GNU long names, sparse
# files, xattrs), examples/demo-image, the package and account data of
# tests/checks/data, the secret rules' own examples. Hand seeds kept in the
# repo (tests/fuzz/seeds/<target>/) are copied in too.
#
#   scripts/fuzz-corpus.sh FIXTURE_BIN OUT_DIR
#
# FIXTURE_BIN is the moat-fixture binary of an ordinary build; OUT_DIR gets one
# folder per target (scripts/fuzz.sh passes build-fuzz/corpus). Deterministic
# apart from tar's own timestamps; small (a few MB).
set -euo pipefail
FIXTURE=${1:?usage: fuzz-corpus.sh FIXTURE_BIN OUT_DIR}
OUT=${2:?usage: fuzz-corpus.sh FIXTURE_BIN OUT_DIR}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$OUT"

# ---- images from the fixture builder ----
layer_entries='[
  {"path":"etc","type":"dir","mode":"0755"},
  {"path":"etc/passwd","content":"root:x:0:0:root:/root:/bin/sh\n"},
  {"path":"usr/bin/su","mode":"4755","content":"ELF"},
  {"path":"usr/bin/ping","content":"ELF","xattrs":{"security.capability":{"hex":"0100000200200000000000000000000000000000"},"user.note":"x"}},
  {"path":"bin","type":"symlink","link":"usr/bin"},
  {"path":"usr/bin/su-link","type":"hardlink","link":"usr/bin/su"},
  {"path":"dev/null","type":"char","major":1,"minor":3},
  {"path":"run/fifo","type":"fifo"},
  {"path":"opt/locked","type":"dir","mode":"0000"},
  {"path":"opt/.wh.gone","content":""},
  {"path":"var/.wh..wh..opq","content":""},
  {"path":"home/app/.env","content":"AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG/bPxRfiCYzEXAMPLEKEY\n"},
  {"path":"a/very/long/name/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa/file","content":"long"}
]'
second_layer='[{"path":"opt/gone","content":"hidden"},{"path":"etc/.wh.passwd","content":""},{"path":"usr/bin/.wh..wh..opq","content":""}]'
i=0
for fmt in oci oci-archive docker-archive docker-archive-25 dir; do
  for comp in gzip zstd none; do
    i=$((i + 1))
    spec=$(printf '{"format":"%s","layers":[{"compression":"%s","created_by":"RUN echo %s","entries":%s},{"compression":"%s","entries":%s}],"config":{"User":"app","Env":["TOKEN=ghp_MoatFakeTokenMoatFakeToken1234567890"]}}' \
      "$fmt" "$comp" "$i" "$layer_entries" "$comp" "$second_layer")
    "$FIXTURE" - "$WORK/img-$fmt-$comp" <<<"$spec" >/dev/null
  done
done
# A multi-platform index.
"$FIXTURE" - "$WORK/img-index" >/dev/null <<'EOF'
{"format":"oci","platforms":[
 {"os":"linux","arch":"amd64","layers":[{"entries":[{"path":"a","content":"amd64"}]}]},
 {"os":"linux","arch":"arm64","variant":"v8","layers":[{"compression":"zstd","entries":[{"path":"a","content":"arm64"}]}]}]}
EOF
cp -r "$ROOT/examples/demo-image" "$WORK/img-demo"

# ---- tars from GNU tar and Python: PAX, GNU long names, sparse, xattrs ----
mkdir -p "$WORK/tree/d" && cd "$WORK/tree"
printf 'x' >d/f && truncate -s 1M d/sparse && printf 'end' >>d/sparse
ln -s ../d/f d/sym && ln d/f d/hard
mkdir -p "d/$(printf 'n%.0s' {1..120})/$(printf 'm%.0s' {1..120})" && touch "d/$(printf 'n%.0s' {1..120})/$(printf 'm%.0s' {1..120})/deep"
for f in gnu pax ustar v7; do tar --format=$f --sparse -cf "$WORK/tar-$f.tar" d 2>/dev/null || true; done
cd "$ROOT"
python3 - "$WORK" <<'EOF'
import io, sys, tarfile
w = sys.argv[1]
def add(t, name, data=b"", **kw):
    ti = tarfile.TarInfo(name); ti.size = len(data)
    for k, v in kw.items(): setattr(ti, k, v)
    t.addfile(ti, io.BytesIO(data) if data else None)
for fmt, name in ((tarfile.PAX_FORMAT, "pax"), (tarfile.GNU_FORMAT, "gnu")):
    with tarfile.open(f"{w}/py-{name}.tar", "w", format=fmt) as t:
        ti = tarfile.TarInfo("etc/xattr"); ti.size = 2
        ti.pax_headers = {"SCHILY.xattr.security.capability": "\x01\x00\x00\x02 \x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00",
                          "SCHILY.xattr.trusted.overlay.opaque": "y", "SCHILY.xattr.user.containers.override_stat": "0:0:4755:file"}
        t.addfile(ti, io.BytesIO(b"hi"))
        add(t, "x" * 300 + "/long", b"long name")
        add(t, "lnk", type=tarfile.SYMTYPE, linkname="t" * 200)
        add(t, "hl", type=tarfile.LNKTYPE, linkname="etc/xattr")
        add(t, "dev", type=tarfile.CHRTYPE, devmajor=1, devminor=3)
        add(t, "dir/.wh..wh..opq"); add(t, "dir/.wh.file")
        add(t, "big-uid", b"u", uid=4294967294, gid=70000, mode=0o7777)
EOF

# ---- per-target folders ----
for t in $(bash "$ROOT/scripts/fuzz.sh" --list); do  # the one list of targets
  mkdir -p "$OUT/$t"
  [[ -d $ROOT/tests/fuzz/seeds/$t ]] && cp "$ROOT"/tests/fuzz/seeds/$t/* "$OUT/$t/" 2>/dev/null || true
done
cp "$WORK"/tar-*.tar "$WORK"/py-*.tar "$OUT/unpack_tar/"

python3 - "$WORK" "$OUT" "$ROOT" <<'EOF'
import gzip, hashlib, json, os, re, sqlite3, sys, tarfile
w, out, root = sys.argv[1:4]
def put(target, name, data):
    if isinstance(data, str): data = data.encode()
    with open(os.path.join(out, target, name), "wb") as f: f.write(data)
SEP = "\n@@@@\n"

# Layer blobs: raw tars to unpack_tar, every blob (1-byte declared-compression prefix) to unpack_compressed.
def blobs_of(layout):
    d = os.path.join(layout, "blobs", "sha256")
    if os.path.isdir(d): return [os.path.join(d, n) for n in sorted(os.listdir(d))]
    # skopeo's dir: format keeps blobs under their hex digest at the top.
    return [os.path.join(layout, n) for n in sorted(os.listdir(layout)) if re.fullmatch(r"[0-9a-f]{64}", n)]
n = 0
for img in sorted(os.listdir(w)):
    p = os.path.join(w, img)
    if not img.startswith("img-") or not os.path.isdir(p): continue
    for b in blobs_of(p):
        data = open(b, "rb").read()
        n += 1
        if data[:2] == b"\x1f\x8b": put("unpack_compressed", f"gz-{n}", b"\x02" + data)
        elif data[:4] == b"\x28\xb5\x2f\xfd": put("unpack_compressed", f"zst-{n}", b"\x03" + data)
        elif len(data) > 512 and data[257:262] == b"ustar": put("unpack_tar", f"layer-{n}", data); put("unpack_compressed", f"tar-{n}", b"\x01" + data)
for f in os.listdir(os.path.join(out, "unpack_tar")):
    data = open(os.path.join(out, "unpack_tar", f), "rb").read()
    put("unpack_compressed", "gzip-" + f, b"\x00" + gzip.compress(data, mtime=0))

# OCI layouts as linked parts: index.json, then blobs in breadth-first order; digests -> @N, sizes -> #N.
def linked(layout, top):
    order, seen, queue = [], {}, []
    def doc(path): return json.load(open(path))
    index = doc(top)
    def refs(j):
        if isinstance(j, dict):
            if isinstance(j.get("digest"), str) and j["digest"].startswith("sha256:"): yield j["digest"]
            for v in j.values(): yield from refs(v)
        elif isinstance(j, list):
            for v in j: yield from refs(v)
    queue = list(refs(index))
    while queue and len(order) < 9:
        dg = queue.pop(0)
        if dg in seen: continue
        path = os.path.join(layout, "blobs", "sha256", dg[7:])
        if not os.path.exists(path): continue
        seen[dg] = len(order) + 1; order.append(path)
        try: queue += list(refs(json.load(open(path))))
        except Exception: pass
    def rewrite(j):
        if isinstance(j, dict):
            j = {k: rewrite(v) for k, v in j.items()}
            dg = j.get("digest")
            if dg in seen:
                j["digest"] = f"@{seen[dg]}"
                if "size" in j: j["size"] = f"#SIZE{seen[dg]}"
            return j
        if isinstance(j, list): return [rewrite(v) for v in j]
        return j
    def text(j): return re.sub(r'"#SIZE(\d)"', r"#\1", json.dumps(j))
    parts = [text(rewrite(index))]
    for p in order:
        raw = open(p, "rb").read()
        try: parts.append(text(rewrite(json.loads(raw))))
        except Exception: parts.append(raw.decode("latin-1"))
    return SEP.join(parts).encode("latin-1")
for img in sorted(os.listdir(w)):
    p = os.path.join(w, img)
    if os.path.exists(os.path.join(p, "index.json")) and os.path.isdir(os.path.join(p, "blobs")):
        put("oci_layout", img, linked(p, os.path.join(p, "index.json")))

# docker-archive manifest.json with its config and layers as parts (%N = hex).
for img in ("img-docker-archive-gzip", "img-docker-archive-none", "img-docker-archive-25-zstd"):
    p = os.path.join(w, img)
    if not os.path.exists(p): continue
    tf = tarfile.open(p) if os.path.isfile(p) else None
    if tf is None: continue
    def rd(name): return tf.extractfile(tf.getmember(name)).read()
    m = json.loads(rd("manifest.json"))
    parts, k = [], 1
    for e in m[:1]:
        cfg = rd(e["Config"]); parts.append(cfg); cfgk = k; k += 1
        lk = []
        for l in e["Layers"]:
            parts.append(rd(l)); lk.append(k); k += 1
        e["Config"] = f"%{cfgk}.json" if not e["Config"].startswith("blobs/") else f"blobs/sha256/%{cfgk}"
        e["Layers"] = [f"%{x}/layer.tar" if not l.startswith("blobs/") else f"blobs/sha256/%{x}" for x, l in zip(lk, e["Layers"])]
    put("docker_manifest", img, SEP.encode().join([json.dumps(m[:1]).encode()] + parts))
    put("image_archive", img + ".tar", open(p, "rb").read())
for img in ("img-oci-archive-gzip", "img-oci-archive-zstd", "img-oci-archive-none"):
    p = os.path.join(w, img)
    if os.path.isfile(p): put("image_archive", img + ".tar", open(p, "rb").read())

# Package databases, accounts.
data = os.path.join(root, "tests", "checks", "data")
rd = lambda *a: open(os.path.join(data, *a), encoding="latin-1").read()
status = rd("dpkg", "status")
names = re.findall(r"^Package: (\S+)", status, re.M)
archs = dict(re.findall(r"^Package: (\S+)(?:.*\n)*?Architecture: (\S+)", status, re.M))
parts = [status, rd("dpkg", "diversions")]
info = os.path.join(data, "dpkg", "info")
for nm in names:
    for stem in (nm + ":" + archs.get(nm, ""), nm):
        if os.path.exists(os.path.join(info, stem + ".list")):
            parts.append(rd("dpkg", "info", stem + ".list"))
            parts.append(rd("dpkg", "info", stem + ".md5sums") if os.path.exists(os.path.join(info, stem + ".md5sums")) else "")
            break
    else:
        parts += ["", ""]
put("dpkg", "debian", SEP.join(parts))
put("apk", "alpine", rd("apk", "installed"))
put("accounts", "debian", SEP.join([rd("accounts", "debian.passwd"), rd("accounts", "debian.group"), rd("accounts", "debian.shadow"), rd("dpkg", "os-release")]))
put("accounts", "alpine", SEP.join(["root:x:0:0:root:/root:/bin/ash\n", "root:x:0:root\n", "root:*::0:::::\n", rd("apk", "os-release")]))
hdr = open(os.path.join(data, "rpm", "moat-rpmtest-1.2-3.noarch.hdr"), "rb").read()
put("rpm_header", "moat-rpmtest", hdr)
for f in ("Packages.bdb-be-512", "Packages.bdb-le-4096"):
    put("rpm_bdb", f, open(os.path.join(data, "rpm", f), "rb").read())
db = os.path.join(w, "rpmdb.sqlite")
c = sqlite3.connect(db)
c.execute("CREATE TABLE Packages (hnum INTEGER PRIMARY KEY AUTOINCREMENT, blob BLOB NOT NULL)")
c.execute("INSERT INTO Packages (blob) VALUES (?)", (hdr,))
c.execute("CREATE TABLE Name (key TEXT NOT NULL, hnum INTEGER NOT NULL, idx INTEGER NOT NULL, FOREIGN KEY (hnum) REFERENCES Packages(hnum))")
c.commit(); c.close()
put("rpm_sqlite", "one-package", open(db, "rb").read())

# Secret rules: each rule file whole, and each rule alone; every example as scanner input.
sd = os.path.join(root, "rules", "secrets", "data")
k = 0
for f in sorted(os.listdir(sd)):
    text = open(os.path.join(sd, f)).read()
    put("secret_rules", f, text)
    j = json.loads(text)
    for r in j.get("rules", []):
        k += 1
        one = dict(j); one["rules"] = [r]
        if k % 4 == 0: put("secret_rules", f"rule-{r['id']}", json.dumps(one))
        for i, ex in enumerate(r.get("examples", []) + r.get("negative_examples", [])):
            put("secret_scan", f"{r['id']}-{i}", ex["text"] if isinstance(ex, dict) else ex)
        # One image config per rule (image_config): its first example where a
        # report prints config text (User, an Env name, a label key, history).
        exs = r.get("examples", [])
        if exs:
            t = exs[0]["text"] if isinstance(exs[0], dict) else exs[0]
            where = k % 4
            cfg = {"architecture": "amd64", "os": "linux", "config": {"User": "root:" + t if where == 0 else "app",
                   "Env": ["PATH=/usr/bin", (t if where == 1 else "TOKEN") + "=" + t],
                   "Labels": {(t if where == 2 else "org.example.key"): t}, "ExposedPorts": {"22/tcp": {}}},
                   "rootfs": {"type": "layers", "diff_ids": ["sha256:" + "a" * 64]},
                   "history": [{"created_by": "RUN sudo curl -H 'Authorization: " + t + "' https://x" if where == 3
                                else "ADD https://example.com/a.tgz /"}]}
            put("image_config", f"rule-{r['id']}", json.dumps(cfg))

# ELF section tables (rules/secrets/elf_code.h): little-endian ELF64 and
# big-endian ELF32, each with a 4 KiB code section, a data section and a
# small code section.
import struct
def elf(bits64, big):
    e = ">" if big else "<"
    secs = [(1, 6, b"\x90" * 4096), (1, 2, b"data" * 8), (1, 6, b"\xc3" * 16)]
    body, offs = b"", []
    hdr = 64 if bits64 else 52
    for _, _, b in secs:
        offs.append(hdr + len(body)); body += b
    shoff = hdr + len(body)
    ent = 64 if bits64 else 40
    table = b"\0" * ent
    for (t, fl, b), o in zip(secs, offs):
        table += struct.pack(e + "IIQQQQIIQQ", 0, t, fl, 0, o, len(b), 0, 0, 1, 0) if bits64 else \
                 struct.pack(e + "IIIIIIIIII", 0, t, fl, 0, o, len(b), 0, 0, 1, 0)
    ident = b"\x7fELF" + bytes([2 if bits64 else 1, 2 if big else 1, 1]) + b"\0" * 9
    if bits64:
        h = ident + struct.pack(e + "HHIQQQIHHHHHH", 3, 62, 1, 0, 0, shoff, 0, 64, 0, 0, ent, len(secs) + 1, 0)
    else:
        h = ident + struct.pack(e + "HHIIIIIHHHHHH", 3, 3, 1, 0, 0, shoff, 0, 52, 0, 0, ent, len(secs) + 1, 0)
    return h + body + table
put("small_formats", "elf64-le", elf(True, False))
put("small_formats", "elf32-be", elf(False, True))
EOF
for t in "$OUT"/*/; do printf '%s %s\n' "$(basename "$t")" "$(ls "$t" | wc -l)"; done
