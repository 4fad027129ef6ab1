#!/usr/bin/env bash
# `moat image ls | rm | prune` on a store holding three images that share a
# base layer:
#  - ls (table and --json): every image with its layers and size, every layer
#    with its size (= the uncompressed tar, checked against the blob), entries
#    (= the tar's entries), disk usage and how many images use it; names of one
#    image pulled by two transports accumulate;
#  - rm by name and by id prefix: the record goes, layers only it used go,
#    shared layers stay; rm of an unknown image exits 2 with a hint;
#  - prune: removes layers no image uses and tmp/ leftovers, keeps the rest,
#    and the remaining image still scans without unpacking anything.
source "$(dirname "$0")/lib.sh"
need skopeo python3
need_images
L=$IMAGES/layout
S=$WORK/store

for t in t other big; do run_moat 0 image pull --store "$S" "oci:$L:$t"; done
id_t=$(skopeo inspect --raw "oci:$L:t" | py json config.digest); id_t=${id_t#sha256:}
id_other=$(skopeo inspect --raw "oci:$L:other" | py json config.digest); id_other=${id_other#sha256:}
id_big=$(skopeo inspect --raw "oci:$L:big" | py json config.digest); id_big=${id_big#sha256:}
skopeo copy -q "oci:$L:t" "oci-archive:$WORK/t.tar:t"
run_moat 0 image pull --store "$S" "oci-archive:$WORK/t.tar:t"
[[ $(cat "$WORK/out") == "$id_t" ]] || fail "pull by oci-archive printed $(cat "$WORK/out"), expected $id_t"

note "image ls"
run_moat 0 image ls --store "$S"
for id in $id_t $id_other $id_big; do grep -q "^${id:0:12} " "$WORK/out" || { cat "$WORK/out" >&2; fail "ls does not list ${id:0:12}"; }; done
line=$(grep "^${id_t:0:12} " "$WORK/out")
[[ $line == *"oci:$L:t"* && $line == *"oci-archive:$WORK/t.tar:t"* ]] || { cat "$WORK/out" >&2; fail "ls should show both names of :t"; }
grep -Eq '^sha256:[0-9a-f]{12} .* 3$' "$WORK/out" || { cat "$WORK/out" >&2; fail "ls should show the base layer used by 3 images"; }

run_moat 0 image ls --json --store "$S"
cp "$WORK/out" "$WORK/ls.json"
python3 - "$WORK/ls.json" "$L" "$S" "$id_t" "$id_other" "$id_big" <<'EOF' || fail "image ls --json is wrong"
import gzip, json, os, subprocess, sys, tarfile
ls, layout, store, *ids = sys.argv[1:]
j = json.load(open(ls))
assert os.path.realpath(j["store"]) == os.path.realpath(store), j["store"]
imgs = {i["id"]: i for i in j["images"]}
assert sorted(imgs) == sorted(ids), imgs.keys()
layers = {l["diff_id"]: l for l in j["layers"]}
for tag, id in zip(("t", "other", "big"), ids):
    cfg = json.loads(subprocess.check_output(["skopeo", "inspect", "--config", "oci:%s:%s" % (layout, tag)]))
    raw = json.loads(subprocess.check_output(["skopeo", "inspect", "--raw", "oci:%s:%s" % (layout, tag)]))
    i = imgs[id]
    assert i["layers"] == cfg["rootfs"]["diff_ids"], (tag, i["layers"])
    assert i["config_digest"] == "sha256:" + id
    assert i["size"] == sum(layers[d]["size"] for d in i["layers"]), (tag, i["size"])
    for d, blob in zip(i["layers"], raw["layers"]):
        if layers[d]["size"] > 50 << 20:
            continue  # the big ones: size only (checked below against the store's own record)
        data = gzip.open(os.path.join(layout, "blobs/sha256", blob["digest"][7:])).read()
        assert layers[d]["size"] == len(data), (d, layers[d]["size"], len(data))
        with tarfile.open(fileobj=__import__("io").BytesIO(data)) as t:
            n = len(t.getmembers())
        assert layers[d]["entries"] == n, (d, layers[d]["entries"], n)
    names = i["names"]
    assert ("oci:%s:%s" % (layout, tag)) in names, names
used = {}
for i in j["images"]:
    for d in set(i["layers"]):
        used[d] = used.get(d, 0) + 1
for d, l in layers.items():
    assert l["used_by"] == used.get(d, 0), (d, l)
    assert l["disk_usage"] > 0, l
    rec = json.load(open(os.path.join(store, "layers", d[7:], "layer.json")))
    assert rec["tar_size"] == l["size"], (d, rec, l)
assert len(imgs[ids[0]]["names"]) == 2, imgs[ids[0]]["names"]
EOF

base=$(skopeo_diffids "oci:$L:t" | sed -n 1p)
other_top=$(skopeo_diffids "oci:$L:other" | tail -1)
nlayers() { ls "$S/layers" | wc -l; }
[[ $(nlayers) -eq 6 ]] || fail "6 layers expected, the store has $(nlayers)"

note "image rm by name"
run_moat 0 image rm --store "$S" "oci:$L:other"
grep -q "removed image ${id_other:0:12} (1 layers no longer used)" "$WORK/out" || { cat "$WORK/out" >&2; fail "rm :other output"; }
[[ ! -e $S/images/$id_other.json ]] || fail "the record of :other is still there"
[[ ! -e $S/layers/${other_top#sha256:} ]] || fail "the layer only :other used is still there"
[[ -d $S/layers/${base#sha256:}/diff ]] || fail "rm removed the shared base layer"
[[ $(nlayers) -eq 5 ]] || fail "5 layers expected after rm :other"

note "image rm by one of two names untags it"
run_moat 0 image rm --store "$S" "oci-archive:$WORK/t.tar:t"
grep -q "^untagged oci-archive:$WORK/t.tar:t" "$WORK/out" || { cat "$WORK/out" >&2; fail "rm of one of two names should untag"; }
[[ -e $S/images/$id_t.json ]] || fail "untag removed the record of :t"
grep -q "oci-archive:" "$S/images/$id_t.json" && fail "the untagged name is still in the record"
[[ $(nlayers) -eq 5 ]] || fail "untag removed layers"

note "image rm by id prefix (after a name that also works)"
run_moat 0 image rm --store "$S" "${id_t:0:10}"
grep -q "removed image ${id_t:0:12} (2 layers no longer used)" "$WORK/out" || { cat "$WORK/out" >&2; fail "rm by id prefix output"; }
[[ $(nlayers) -eq 3 ]] || fail "3 layers expected after rm :t"
[[ -d $S/layers/${base#sha256:}/diff ]] || fail "rm removed the base layer :big still uses"

note "image rm of unknown images"
run_moat 2 image rm --store "$S" "oci:$L:t"
expect_err "^moat: error: .*no image"
expect_err "moat image ls"
run_moat 2 image rm --store "$S" "oci:$WORK/never-pulled"
expect_err "no image"
run_moat 2 image rm --store "$S" "ff"   # too short to be an id prefix
expect_err "no image"

note "image prune"
run_moat 0 image prune --store "$S"
grep -q '^0 layers removed' "$WORK/out" || fail "nothing to prune, but: $(cat "$WORK/out")"
[[ $(nlayers) -eq 3 ]] || fail "prune removed a used layer"
# Orphans: an image record lost (as after a crash between writes) and tmp/ leftovers.
run_moat 0 image pull --store "$S" "oci:$L:other"
rm "$S/images/$id_other.json"
mkdir -p "$S/tmp/${other_top#sha256:}.99999.1/diff/a/b"; echo x >"$S/tmp/${other_top#sha256:}.99999.1/diff/a/b/c"
chmod 0500 "$S/tmp/${other_top#sha256:}.99999.1/diff/a"
run_moat 0 image prune --store "$S"
grep -qx "removed layer $other_top" "$WORK/out" || { cat "$WORK/out" >&2; fail "prune did not name the orphan layer"; }
grep -q '^1 layers removed' "$WORK/out" || { cat "$WORK/out" >&2; fail "prune should remove exactly 1 layer"; }
[[ $(nlayers) -eq 3 ]] || fail "3 layers expected after prune"
[[ -z $(ls -A "$S/tmp") ]] || fail "prune left tmp/ leftovers: $(ls -A "$S/tmp")"
run_moat 0 image pull -v --store "$S" "oci:$L:big"
expect_err "0 layers unpacked, 3 reused"

note "rm the last image, prune: an empty store"
run_moat 0 image rm --store "$S" "oci:$L:big"
run_moat 0 image prune --store "$S"
[[ -z $(ls -A "$S/layers") && -z $(ls -A "$S/images") ]] || fail "the store is not empty: $(ls -A "$S/layers" "$S/images")"
run_moat 0 image ls --json --store "$S"
[[ $(py json images <"$WORK/out" | wc -l) -eq 0 && $(py json layers <"$WORK/out" | wc -l) -eq 0 ]] || fail "ls of an empty store"
echo "PASS: $TEST_NAME"
