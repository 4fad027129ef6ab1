#!/usr/bin/env bash
# containers-storage: a root podman store ($CONTAINERS_STORAGE_CONF names a
# graphroot under the test's temp dir), scanned by root: findings equal the
# OCI layout's. Then the store is tampered with as hostile input: a tar-split
# entry naming a path outside the layer, an images.json entry whose id is a
# path, and a diff file replaced by a symlink to a host file: each is exit 2
# naming the layer or entry, and no host file is read.
source "$(dirname "$0")/lib.sh"
R=$W/root
mkdir -p "$R"
cat >"$R/storage.conf" <<CONF
[storage]
driver = "overlay"
graphroot = "$R/graph"
runroot = "$R/run"
CONF
export CONTAINERS_STORAGE_CONF=$R/storage.conf
proot() { podman --root "$R/graph" --runroot "$R/run" "$@" 2> >(grep -v 'is not a shared mount' >&2); }
proot pull -q "oci-archive:$W/pub/demo.tar" >/dev/null
proot tag "$(proot images -q | head -1)" moat-test/demo:1
G=$R/graph
m() { "$W/moat" "$@" >"$W/out" 2>"$W/err"; }
expect2() {
  local rc=0; m "$@" || rc=$?
  [[ $rc -eq 2 ]] || { cat "$W/err" >&2; fail "moat $* exited $rc, expected 2"; }
}
"$W/moat" scan --store "$R/ref.store" --fail-on none --format json -o "$R/oci.json" "oci:$W/pub/demo:latest"

note "root store = OCI layout"
m scan --store "$R/s1" --fail-on none --format json -o "$R/cs.json" containers-storage:moat-test/demo:1 ||
  { cat "$W/err" >&2; fail "root scan failed"; }
same_findings "$R/oci.json" "$R/cs.json"
jq -e --arg g "$G" '.image.reference | startswith("containers-storage:[overlay@" + $g + "+")' "$R/cs.json" >/dev/null ||
  fail "reference: $(jq .image.reference "$R/cs.json")"

top=$(top_layer "$G" overlay localhost/moat-test/demo:1)
ts=$G/overlay-layers/$top.tar-split.gz
cp -p "$ts" "$W/ts.orig"

note "a tar-split entry naming a path outside the layer"
python3 - "$ts" <<'PY'
import gzip, json, sys
lines = gzip.open(sys.argv[1], "rt").read().splitlines()
out = []
for l in lines:
    e = json.loads(l)
    if e.get("type") == 1 and e.get("name", "").endswith("app.py"):
        e["name"] = "../../../../../../etc/hostname"
    out.append(json.dumps(e))
with gzip.open(sys.argv[1], "wt") as f:
    f.write("\n".join(out) + "\n")
PY
expect2 scan --store "$R/s2" containers-storage:moat-test/demo:1
grep -q "podman layer $top" "$W/err" && grep -q "outside the layer" "$W/err" || fail "escape not refused: $(cat "$W/err")"
cp -p "$W/ts.orig" "$ts"

note "a layer file replaced by a symlink to a host file"
f=$G/overlay/$top/diff/opt/app/app.py
mv "$f" "$W/app.py.orig"
ln -s /etc/passwd "$f"
expect2 scan --store "$R/s3" containers-storage:moat-test/demo:1
grep -q "opt/app/app.py" "$W/err" || fail "symlinked file not named: $(cat "$W/err")"
rm "$f"; mv "$W/app.py.orig" "$f"

note "a damaged tar-split"
printf 'garbage' >"$ts"
expect2 scan --store "$R/s4" containers-storage:moat-test/demo:1
grep -q "podman layer $top" "$W/err" || fail "damaged tar-split not named: $(cat "$W/err")"
cp -p "$W/ts.orig" "$ts"

note "hostile images.json"
cp -p "$G/overlay-images/images.json" "$W/images.orig"
jq '.[0].id = "../../../../etc"' "$W/images.orig" >"$G/overlay-images/images.json"
expect2 scan --store "$R/s5" containers-storage:moat-test/demo:1
grep -q "not 64 hex digits" "$W/err" || fail "bad id not refused: $(cat "$W/err")"
cp -p "$W/images.orig" "$G/overlay-images/images.json"

note "a layer without diff-digest (as zstd:chunked partial pulls leave it)"
cp -p "$G/overlay-layers/layers.json" "$W/layers.orig"
jq --arg id "$top" 'map(if .id == $id then del(.["diff-digest"]) else . end)' "$W/layers.orig" >"$G/overlay-layers/layers.json"
expect2 scan --store "$R/s7" containers-storage:moat-test/demo:1
grep -q "no diff-digest" "$W/err" || fail "a layer without diff-digest was not refused: $(cat "$W/err")"
# --allow-unverified: its tar-split still reassembles to the config's diffID, so it is verified after all.
m scan --store "$R/s7" --allow-unverified --fail-on none --format json -o "$R/nodd.json" containers-storage:moat-test/demo:1 ||
  { cat "$W/err" >&2; fail "--allow-unverified scan failed"; }
same_findings "$R/oci.json" "$R/nodd.json"
! grep -q "NOT verified" "$W/err" || fail "a layer that matched its diffID was called unverified"
cp -p "$W/layers.orig" "$G/overlay-layers/layers.json"

note "additionalimagestores: the image in a read-only store listed by storage.conf"
cat >"$R/storage2.conf" <<CONF
[storage]
driver = "overlay"
graphroot = "$R/graph2"
runroot = "$R/run2"
[storage.options]
additionalimagestores = ["$G"]
CONF
mkdir -p "$R/graph2/overlay-images" "$R/graph2/overlay-layers"
CONTAINERS_STORAGE_CONF=$R/storage2.conf m scan --store "$R/s8" --fail-on none --format json -o "$R/add.json" moat-test/demo:1 ||
  { cat "$W/err" >&2; fail "scan from an additional image store failed"; }
same_findings "$R/oci.json" "$R/add.json"

note "an image named by a store spec, and the store back intact"
m scan --store "$R/s6" --fail-on none --format json -o "$R/cs2.json" "containers-storage:[overlay@$G+$R/run]moat-test/demo:1" ||
  { cat "$W/err" >&2; fail "scan with a store spec failed"; }
same_findings "$R/oci.json" "$R/cs2.json"
proot rmi -a -f >/dev/null 2>&1 || true
echo "PASS: $TEST_NAME"
