#!/usr/bin/env bash
# Every transport round-trips a real image: the umoci-made 3-layer image :t is
# converted by skopeo to oci-archive:, docker-archive: (by name and by @0),
# dir: (gzip and uncompressed), an OCI layout with zstd layers and one with
# uncompressed layers, a Docker 25+ docker-archive (OCI layout inside); buildah
# makes an oci-archive on the same base. For each: `moat image pull` succeeds,
# the diffIDs moat reports (scan --format json, image ls --json) equal the
# config's rootfs.diff_ids as skopeo reads them, a pull by a second transport
# unpacks nothing (-v says "reused", layer.json files untouched), and a pull
# into a fresh store (so the zstd/plain/dir code paths really unpack) yields
# byte-identical index.tsv files.
source "$(dirname "$0")/lib.sh"
need skopeo python3
need_images

L=$IMAGES/layout
S=$WORK/store
want=$(skopeo_diffids "oci:$L:t")
[[ $(wc -l <<<"$want") -eq 3 ]] || fail "the fixture image should have 3 layers: $want"

note "converting with skopeo"
skopeo copy -q "oci:$L:t" "oci-archive:$WORK/t-oci.tar:t"
skopeo copy -q "oci:$L:t" "docker-archive:$WORK/t-docker.tar:moat.test/img:t"
skopeo copy -q "oci:$L:t" "dir:$WORK/t-dir"
skopeo copy -q --dest-compress --dest-compress-format zstd "oci:$L:t" "oci:$WORK/zstd:t"
skopeo copy -q --dest-decompress "oci:$L:t" "dir:$WORK/plain-dir"
# skopeo's oci: destination always compresses: lay the uncompressed dir: out as OCI.
python3 - "$WORK/plain-dir" "$WORK/plain" <<'EOF'
import hashlib, json, os, shutil, sys
src, dst = sys.argv[1:]
os.makedirs(dst + "/blobs/sha256")
for n in os.listdir(src):
    if len(n) == 64:
        shutil.copy(f"{src}/{n}", f"{dst}/blobs/sha256/{n}")
m = open(src + "/manifest.json", "rb").read()
md = hashlib.sha256(m).hexdigest()
open(f"{dst}/blobs/sha256/{md}", "wb").write(m)
json.dump({"imageLayoutVersion": "1.0.0"}, open(dst + "/oci-layout", "w"))
json.dump({"schemaVersion": 2, "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
           "digest": "sha256:" + md, "size": len(m),
           "annotations": {"org.opencontainers.image.ref.name": "t"}}]}, open(dst + "/index.json", "w"))
EOF
# Docker 25+ `docker save`: an OCI layout (uncompressed layers) plus the classic
# manifest.json pointing into blobs/. No Docker here: lay it out by hand.
python3 - "$WORK/plain" "$WORK/t-docker25.tar" <<'EOF'
import io, json, os, sys, tarfile
layout, out = sys.argv[1:]
idx = json.load(open(layout + "/index.json"))
idx["manifests"][0]["annotations"] = {"io.containerd.image.name": "docker.io/moat.test/img:t",
                                      "org.opencontainers.image.ref.name": "t"}
m = json.load(open(layout + "/blobs/sha256/" + idx["manifests"][0]["digest"][7:]))
legacy = [{"Config": "blobs/sha256/" + m["config"]["digest"][7:], "RepoTags": ["moat.test/img:t"],
           "Layers": ["blobs/sha256/" + l["digest"][7:] for l in m["layers"]]}]
with tarfile.open(out, "w") as t:
    for n in sorted(os.listdir(layout + "/blobs/sha256")):
        t.add(f"{layout}/blobs/sha256/{n}", f"blobs/sha256/{n}")
    t.add(layout + "/oci-layout", "oci-layout")
    for name, obj in (("index.json", idx), ("manifest.json", legacy)):
        data = json.dumps(obj).encode()
        ti = tarfile.TarInfo(name); ti.size = len(data)
        t.addfile(ti, io.BytesIO(data))
EOF
# Make sure the conversions are what we think: zstd and uncompressed blobs.
python3 - "$WORK/zstd" "$WORK/plain" <<'EOF'
import json, sys
for layout, want in zip(sys.argv[1:], ("zstd", "tar")):
    idx = json.load(open(layout + "/index.json"))
    m = json.load(open(layout + "/blobs/sha256/" + idx["manifests"][0]["digest"][7:]))
    types = [l["mediaType"] for l in m["layers"]]
    assert all(t.endswith(want) for t in types), (layout, types)
    head = open(layout + "/blobs/sha256/" + m["layers"][0]["digest"][7:], "rb").read(4)
    assert (head == b"\x28\xb5\x2f\xfd") == (want == "zstd"), (layout, head)
EOF

# ref  skopeo's name for the same image
refs=(
  "oci:$L:t|oci:$L:t"
  "oci-archive:$WORK/t-oci.tar:t|oci-archive:$WORK/t-oci.tar:t"
  "oci-archive:$WORK/t-oci.tar|oci-archive:$WORK/t-oci.tar"
  "docker-archive:$WORK/t-docker.tar:moat.test/img:t|docker-archive:$WORK/t-docker.tar:moat.test/img:t"
  "docker-archive:$WORK/t-docker.tar:@0|docker-archive:$WORK/t-docker.tar:@0"
  "docker-archive:$WORK/t-docker.tar|docker-archive:$WORK/t-docker.tar"
  "dir:$WORK/t-dir|dir:$WORK/t-dir"
  "oci:$WORK/zstd:t|oci:$WORK/zstd:t"
  "oci:$WORK/plain|oci:$WORK/plain"
  "dir:$WORK/plain-dir|dir:$WORK/plain-dir"
  "docker-archive:$WORK/t-docker25.tar|oci:$WORK/plain:t"
  "docker-archive:$WORK/t-docker25.tar:moat.test/img:t|oci:$WORK/plain:t"
)

layer_mtimes() { for d in $want; do stat -c '%n %Y.%y' "$S/layers/${d#sha256:}/layer.json"; done; }

first=1
for pair in "${refs[@]}"; do
  ref=${pair%%|*}; sref=${pair#*|}
  note "pull $ref"
  [[ $(skopeo_diffids "$sref") == "$want" ]] || fail "skopeo reads other diffIDs from $sref (fixture broken?)"
  [[ $first -eq 1 ]] || before=$(layer_mtimes)
  run_moat 0 image pull -v --store "$S" "$ref"
  id=$(cat "$WORK/out")
  [[ $id =~ ^[0-9a-f]{64}$ ]] || fail "pull printed '$id', not an image id"
  if [[ $first -eq 1 ]]; then
    expect_err "3 layers unpacked, 0 reused"
    first=0
  else
    expect_err "0 layers unpacked, 3 reused"
    [[ $(grep -c 'reused layer' "$WORK/err") -eq 3 ]] || { cat "$WORK/err" >&2; fail "$ref: -v should name 3 reused layers"; }
    [[ $(layer_mtimes) == "$before" ]] || fail "$ref: a layer.json changed: a shared layer was unpacked again"
  fi
  [[ $(ls "$S/layers" | wc -l) -eq 3 ]] || fail "$ref: the store should hold exactly 3 layers: $(ls "$S/layers")"
  [[ -z $(ls -A "$S/tmp") ]] || fail "$ref: tmp/ is not empty after a pull: $(ls -A "$S/tmp")"

  run_moat 0 scan --fail-on none --format json --store "$S" "$ref"
  got=$(py json image.layers <"$WORK/out" | python3 -c 'import json,sys; [print(json.loads(l)["diff_id"]) for l in sys.stdin]')
  [[ $got == "$want" ]] || fail "$ref: scan reports diffIDs
$got
skopeo says
$want"
  [[ $(py json image.config_digest <"$WORK/out") == "sha256:$id" ]] || fail "$ref: config_digest is not sha256:<image id>"
  [[ $(py json schema <"$WORK/out") == moat.report/v1 ]] || fail "$ref: bad schema"

  # A fresh store per transport: this time the layers really are unpacked by this code path.
  F=$WORK/fresh
  run_moat 0 image pull --store "$F" "$ref"
  for d in $want; do
    h=${d#sha256:}
    cmp -s "$S/layers/$h/index.tsv" "$F/layers/$h/index.tsv" || {
      diff "$S/layers/$h/index.tsv" "$F/layers/$h/index.tsv" >&2 || true
      fail "$ref: layer $d unpacks to another index than by the first transport"; }
    python3 "$E2E_DIR/e2e.py" check-store-layer "$F" "$d" >/dev/null || fail "$ref: layer $d: disk and index.tsv disagree"
  done
  python3 - "$F" "$ref" <<'EOF' || fail "$ref: layer.json records a wrong compression"
import json, os, sys
store, ref = sys.argv[1:]
for h in os.listdir(store + "/layers"):
    c = json.load(open(f"{store}/layers/{h}/layer.json")).get("compression")
    want = "zstd" if "/zstd:" in ref else "none" if "/plain" in ref or "docker-archive:" in ref else "gzip"
    if c not in (want, {"none": "uncompressed"}.get(want, want)):
        sys.exit(f"{h}: compression {c!r}, expected {want}")
EOF
  chmod -R u+rwx "$F"; rm -rf "$F"
done

note "image ls --json after all transports"
run_moat 0 image ls --json --store "$S"
python3 - "$WORK/out" "$want" <<'EOF' || fail "image ls --json is wrong"
import json, sys
j = json.load(open(sys.argv[1]))
want = sys.argv[2].split("\n")
assert j["images"], "no images"
for i in j["images"]:
    assert i["layers"] == want, (i["names"], i["layers"])
assert sorted(l["diff_id"] for l in j["layers"]) == sorted(want), j["layers"]
names = [n for i in j["images"] for n in i["names"]]
for t in ("oci:", "oci-archive:", "docker-archive:", "dir:"):
    assert any(n.startswith(t) for n in names), (t, names)
EOF

if [[ -f $IMAGES/buildah.tar ]]; then
  note "buildah's image shares the base layer"
  bwant=$(skopeo_diffids "oci-archive:$IMAGES/buildah.tar")
  [[ $(head -1 <<<"$bwant") == $(head -1 <<<"$want") ]] || fail "buildah's base diffID differs from umoci's (fixture?)"
  run_moat 0 image pull -v --store "$S" "oci-archive:$IMAGES/buildah.tar"
  expect_err "1 layers unpacked, 1 reused"
  run_moat 0 scan --fail-on none --format json --store "$S" "oci-archive:$IMAGES/buildah.tar"
  got=$(py json image.layers <"$WORK/out" | python3 -c 'import json,sys; [print(json.loads(l)["diff_id"]) for l in sys.stdin]')
  [[ $got == "$bwant" ]] || fail "buildah image: moat reports $got, skopeo $bwant"
  [[ $(ls "$S/layers" | wc -l) -eq 4 ]] || fail "the store should hold 4 layers now"
else
  echo "note: buildah image missing, its checks skipped" >&2
fi
echo "PASS: $TEST_NAME"
