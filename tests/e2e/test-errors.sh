#!/usr/bin/env bash
# Error UX: each failure exits 2, prints "moat: error: ..." saying what is
# wrong and what to do, prints no report on stdout, and leaves nothing in the
# store (no layer, no record, empty tmp/).
#  - a reference without a transport, an unknown transport, a registry nobody listens on;
#  - missing files for every transport;
#  - an OCI layout with several tags and none given (the message lists them),
#    an unknown tag;
#  - a docker-archive holding two images (made by merging two skopeo
#    docker-archives, as `podman save --multi-image-archive` does): no name
#    lists the names and hints :NAME:TAG or :@N; both forms then work;
#  - a missing blob, a corrupted blob, a truncated blob: exit 2 naming the layer;
#  - a layer entry "../TOKEN": exit 2 naming the layer and the entry, the token redacted;
#  - a config nested 200,000 deep: exit 2 naming the config (it overflowed the stack);
#  - usage errors (unknown option, bad --format, bad --platform) exit 2, never 0/1.
source "$(dirname "$0")/lib.sh"
need skopeo python3
need_images
L=$IMAGES/layout
S=$WORK/store

# fails REGEX... -- ARGS: moat ARGS exits 2, stderr matches every REGEX, stdout empty
fails() {
  local res=()
  while [[ $1 != -- ]]; do res+=("$1"); shift; done
  shift
  run_moat 2 "$@"
  [[ ! -s $WORK/out ]] || fail "moat $* failed but printed on stdout: $(head -c 300 "$WORK/out")"
  [[ ${USAGE:-0} -eq 1 ]] || grep -q '^moat: error: ' "$WORK/err" || { cat "$WORK/err" >&2; fail "moat $*: no 'moat: error:' line"; }
  [[ -s $WORK/err ]] || fail "moat $*: exit 2 without a word on stderr"
  local re
  for re in "${res[@]}"; do expect_err "$re"; done
}
store_clean() {
  [[ ! -d $S ]] && return 0
  local d
  for d in layers images tmp; do
    [[ -z $(ls -A "$S/$d") ]] || fail "a failed pull left something in $S/$d: $(ls -A "$S/$d")"
  done
}

note "references"
fails "no transport" "oci:" -- scan --store "$S" "$L"
fails "no transport|unknown transport" "oci:" -- scan --store "$S" "$L:t"
fails "unknown transport \"foo:\"" "TRANSPORT:LOCATION" -- scan --store "$S" foo:/bar
fails "cannot reach registry 127.0.0.1:1" "check the name and port" -- scan --store "$S" docker://127.0.0.1:1/img:1
fails "oci:" -- image pull --store "$S" ""
store_clean

note "missing files"
for ref in "oci:$WORK/missing" "oci:$WORK/missing:t" "oci-archive:$WORK/missing.tar" \
           "docker-archive:$WORK/missing.tar" "dir:$WORK/missing"; do
  fails "$WORK/missing" "no such file|not found|does not exist" -- scan --store "$S" "$ref"
done
mkdir "$WORK/empty-dir"
fails "index.json|oci-layout|not an OCI|empty" -- scan --store "$S" "oci:$WORK/empty-dir"
: > "$WORK/empty.tar"
fails "empty.tar" -- scan --store "$S" "oci-archive:$WORK/empty.tar"
fails "empty.tar" -- scan --store "$S" "docker-archive:$WORK/empty.tar"
store_clean

note "an OCI layout with several tags"
fails "tags: .*v1.*t|tags: .*t.*v1" ":TAG" -- scan --store "$S" "oci:$L"
fails "no image tagged \"nosuch\"" "tags: " -- scan --store "$S" "oci:$L:nosuch"
store_clean

note "a docker-archive with two images"
skopeo copy -q "oci:$L:t" "docker-archive:$WORK/a.tar:moat.test/a:1"
skopeo copy -q "oci:$L:other" "docker-archive:$WORK/b.tar:moat.test/b:2"
python3 - "$WORK/a.tar" "$WORK/b.tar" "$WORK/two.tar" <<'EOF'
import io, json, sys, tarfile
a, b, out = sys.argv[1:]
manifests, seen = [], set()
with tarfile.open(out, "w") as o:
    for src in (a, b):
        with tarfile.open(src) as t:
            for m in t.getmembers():
                if m.name == "manifest.json":
                    manifests += json.load(t.extractfile(m))
                elif m.name != "repositories" and m.name not in seen:
                    seen.add(m.name)
                    o.addfile(m, t.extractfile(m) if m.isfile() else None)
    data = json.dumps(manifests).encode()
    ti = tarfile.TarInfo("manifest.json"); ti.size = len(data)
    o.addfile(ti, io.BytesIO(data))
EOF
fails "2 images" "moat.test/a:1" "moat.test/b:2" ":NAME:TAG|:@" -- scan --store "$S" "docker-archive:$WORK/two.tar"
fails "moat.test/b:9" "moat.test/a:1" -- scan --store "$S" "docker-archive:$WORK/two.tar:moat.test/b:9"
fails "@5" -- scan --store "$S" "docker-archive:$WORK/two.tar:@5"
store_clean
want_b=$(skopeo_diffids "oci:$L:other")
for ref in "docker-archive:$WORK/two.tar:@1" "docker-archive:$WORK/two.tar:moat.test/b:2"; do
  run_moat 0 scan --fail-on none --format json --store "$WORK/ok-store" "$ref"
  got=$(py json image.layers <"$WORK/out" | python3 -c 'import json,sys; [print(json.loads(l)["diff_id"]) for l in sys.stdin]')
  [[ $got == "$want_b" ]] || fail "$ref: not the second image"
done

note "damaged blobs"
damaged() {  # NAME PYTHON-ACTION: a copy of :t whose layer 2 blob is damaged
  local d=$WORK/$1
  skopeo copy -q "oci:$L:t" "oci:$d:t"
  python3 - "$d" "$2" <<'EOF'
import json, os, sys
d, action = sys.argv[1:]
idx = json.load(open(d + "/index.json"))
m = json.load(open(d + "/blobs/sha256/" + idx["manifests"][0]["digest"][7:]))
blob = d + "/blobs/sha256/" + m["layers"][1]["digest"][7:]
print(m["layers"][1]["digest"])
if action == "missing":
    os.remove(blob)
elif action == "corrupt":
    data = bytearray(open(blob, "rb").read())
    data[len(data) // 2] ^= 0xff
    open(blob, "wb").write(data)
elif action == "truncate":
    data = open(blob, "rb").read()
    open(blob, "wb").write(data[: len(data) // 2])
EOF
}
for what in missing corrupt truncate; do
  digest=$(damaged "$what" "$what")
  fails "layer 1|${digest#sha256:}|$digest" -- scan --store "$S" "oci:$WORK/$what:t"
  [[ $what != missing ]] || expect_err "${digest#sha256:}"
  # Intact layers of the image may stay (they are whole); the damaged one, a record, tmp/: never.
  [[ ! -e $S/layers/$(skopeo_diffids "oci:$L:t" | sed -n 2p | cut -c8-) ]] || fail "$what: the damaged layer is in the store"
  [[ -z $(ls -A "$S/images") && -z $(ls -A "$S/tmp") ]] || fail "$what: a record or tmp/ leftovers after a failed pull"
done

# rewrite DIR entry NAME | deepcfg: DIR (a copy of :t) with layer 1 replaced by
# one entry NAME, or with its config nested 200,000 deep and a token as its User.
cat >"$WORK/rewrite.py" <<'EOF'
import gzip, hashlib, io, json, sys, tarfile
d, mode = sys.argv[1:3]
def blob(dg): return d + "/blobs/sha256/" + dg[7:]
def put(data):
    dg = "sha256:" + hashlib.sha256(data).hexdigest()
    open(blob(dg), "wb").write(data)
    return dg, len(data)
idx = json.load(open(d + "/index.json"))
m = json.load(open(blob(idx["manifests"][0]["digest"])))
c = json.load(open(blob(m["config"]["digest"])))
if mode == "entry":
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        ti = tarfile.TarInfo(sys.argv[3]); ti.size = 2
        t.addfile(ti, io.BytesIO(b"x\n"))
    raw = buf.getvalue()
    m["layers"][1]["digest"], m["layers"][1]["size"] = put(gzip.compress(raw, mtime=0))
    m["layers"][1]["mediaType"] = "application/vnd.oci.image.layer.v1.tar+gzip"
    c["rootfs"]["diff_ids"][1] = "sha256:" + hashlib.sha256(raw).hexdigest()
    cfg = json.dumps(c).encode()
else:
    c.setdefault("config", {})["User"] = "root:ghp_" + "Zq8LmN2vXc4RtY7uPa1sDf3GhJ5kWe9Bo0Ti"
    cfg = (json.dumps(c)[:-1] + ', "x": ' + "[" * 200000 + "]" * 200000 + "}").encode()
m["config"]["digest"], m["config"]["size"] = put(cfg)
idx["manifests"][0]["digest"], idx["manifests"][0]["size"] = put(json.dumps(m).encode())
json.dump(idx, open(d + "/index.json", "w"))
EOF

note "a hostile entry named by a token: scan, pull and mount exit 2, the error names it redacted"
skopeo copy -q "oci:$L:t" "oci:$WORK/tokname:t"
tok="ghp_$(python3 -c 'import random; r = random.Random(7); print("".join(r.choice("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789") for _ in range(36)))')"
python3 "$WORK/rewrite.py" "$WORK/tokname" entry "../$tok"
fails "layer 1" "refused" "ghp_" -- scan --store "$S" "oci:$WORK/tokname:t"
! grep -qF "$tok" "$WORK/err" || fail "the error printed the token whole: $(cat "$WORK/err")"
[[ -z $(ls -A "$S/images") && -z $(ls -A "$S/tmp") ]] || fail "tokname: a record or tmp/ leftovers after a failed pull"
fails "layer 1" "refused" "ghp_" -- image pull --store "$S" "oci:$WORK/tokname:t"
! grep -qF "$tok" "$WORK/err" || fail "moat image pull printed the token whole: $(cat "$WORK/err")"
fails "layer 1" "refused" "ghp_" -- mount --store "$S" "oci:$WORK/tokname:t" -- true
! grep -qF "$tok" "$WORK/err" || fail "moat mount printed the token whole: $(cat "$WORK/err")"

note "a config nested 200,000 deep (its User a token): exit 2 naming the config, not a stack overflow"
skopeo copy -q "oci:$L:t" "oci:$WORK/deepcfg:t"
python3 "$WORK/rewrite.py" "$WORK/deepcfg" deepcfg
fails "config sha256:[0-9a-f]{64} nests arrays or objects more than 128 deep" -- scan --store "$S" "oci:$WORK/deepcfg:t"
[[ -z $(ls -A "$S/images") && -z $(ls -A "$S/tmp") ]] || fail "deepcfg: a record or tmp/ leftovers after a failed pull"

note "usage errors"
# CLI11 words these itself (no "moat: error:" prefix): a message and --help.
USAGE=1
fails "IMAGE" "--help" -- scan
fails "no-such-option" -- scan --no-such-option "oci:$L:t"
fails "format" -- scan --format xml "oci:$L:t"
fails "" -- image
fails "subcommand|no-such-command" -- no-such-command
USAGE=0
fails "platform" -- scan --store "$S" --platform "not a platform" "oci:$L:t"
store_clean
echo "PASS: $TEST_NAME"
