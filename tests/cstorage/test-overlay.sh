#!/usr/bin/env bash
# containers-storage: a rootless podman store with the kernel's native overlay
# driver, made by podman as moat-subuid (user storage.conf). The scan must give
# the findings of the same image scanned from its OCI layout and the setuid
# files `podman unshare` + `podman image mount` + find show; bare names resolve
# in the store; a layer moat already has is not read again; an edited layer
# file, a missing tar-split, a tampered store and another user's store as root
# are refused (exit 2) naming the layer; moat's read locks wait for a podman
# writer and never stall `podman rmi`.
source "$(dirname "$0")/lib.sh"
G=$W/u/graph
user_conf "[storage]
driver = \"overlay\"
graphroot = \"$G\"
runroot = \"$W/u/run\""
podman_u pull -q "oci-archive:$W/pub/demo.tar" >/dev/null
podman_u tag "$(podman_u images -q | head -1)" moat-test/demo:1
[[ $(podman_u info --format '{{.Store.GraphDriverName}}') == overlay ]] || fail "podman did not use overlay"
[[ -n $(find "$G/overlay" -type c -name aws-credentials) ]] || fail "expected a native whiteout (0:0 char device) in the store"
oci_report

note "scan = the OCI layout's findings"
moat_u 0 scan --store "$W/u/s1" --fail-on none --format json -o "$W/u/out/cs.json" containers-storage:moat-test/demo:1
same_findings "$W/u/out/oci.json" "$W/u/out/cs.json"
jq -e --arg g "$G" '.image.reference | startswith("containers-storage:[overlay@" + $g + "+")' "$W/u/out/cs.json" >/dev/null ||
  fail "the report does not say the image came from containers-storage: $(jq .image.reference "$W/u/out/cs.json")"

note "setuid files = podman unshare + podman image mount + find"
diff <(setuid_paths "$W/u/out/cs.json") <(podman_setuid moat-test/demo:1) >&2 || fail "setuid files differ from podman image mount"
[[ -n $(setuid_paths "$W/u/out/cs.json") ]] || fail "the demo image has a root setuid file"

note "bare names, id prefix, image ls"
moat_u 0 scan --store "$W/u/s1" --fail-on none --format json -o "$W/u/out/bare.json" moat-test/demo:1
same_findings "$W/u/out/oci.json" "$W/u/out/bare.json"
id=$(podman_u images -q --no-trunc | head -1 | sed 's/^sha256://')
moat_u 0 scan --store "$W/u/s1" --fail-on none --format json -o /dev/null "${id:0:10}"
moat_u 0 image ls --store "$W/u/s1"
grep -q "containers-storage:\[overlay@$G+.*\]localhost/moat-test/demo:1" "$W/out" || fail "image ls does not name containers-storage: $(cat "$W/out")"
note "moat image rm by a short name, as podman rmi matches it (demo:1 and moat-test/demo:1 name localhost/moat-test/demo:1)"
for short in demo:1 moat-test/demo:1; do
  moat_u 0 image pull --store "$W/u/srm" moat-test/demo:1
  moat_u 2 image rm --store "$W/u/srm" emo:1
  moat_u 0 image rm --store "$W/u/srm" "$short"
  grep -q "removed image" "$W/out" || fail "image rm $short: $(cat "$W/out")"
  moat_u 0 image ls --store "$W/u/srm" --json
  [[ $(jq '.images | length' "$W/out") -eq 0 ]] || fail "image rm $short left the image: $(cat "$W/out")"
done
printf 'unqualified-search-registries = []\n' >"$W/empty-registries.conf"
chmod 0644 "$W/empty-registries.conf"
CS_ENV="CONTAINERS_REGISTRIES_CONF=$W/empty-registries.conf" moat_u 2 scan --store "$W/u/s1" no-such-image:7
grep -q "not in containers-storage" "$W/err" && grep -q "no unqualified-search-registries" "$W/err" ||
  fail "unknown bare name: $(cat "$W/err")"

note "root never reads another user's store"
rc=0; "$W/moat" scan --store "$W/root.store" "containers-storage:[overlay@$G]moat-test/demo:1" >/dev/null 2>"$W/err" || rc=$?
[[ $rc -eq 2 ]] && grep -q "belongs to uid" "$W/err" || fail "root read moat-subuid's store (rc $rc): $(cat "$W/err")"

note "a layer file edited behind podman's back"
top=$(top_layer "$G" overlay localhost/moat-test/demo:1)
f=$G/overlay/$top/diff/opt/app/app.py
cp -p "$f" "$W/app.py.orig"
printf 'X' | dd of="$f" bs=1 seek=3 conv=notrunc status=none
moat_u 0 scan --store "$W/u/s1" --fail-on none -q moat-test/demo:1   # moat has every layer: nothing is read
moat_u 2 scan --store "$W/u/s2" --fail-on none moat-test/demo:1
grep -q "podman layer $top" "$W/err" && grep -q "opt/app/app.py" "$W/err" || fail "edited file not named: $(cat "$W/err")"
cp -p "$W/app.py.orig" "$f"

note "a layer without tar-split"
bottom=$(jq -r '.[] | select(.parent == null or .parent == "") | .id' "$G/overlay-layers/layers.json")
mv "$G/overlay-layers/$bottom.tar-split.gz" "$W/ts.gz"
moat_u 2 scan --store "$W/u/s3" --fail-on none moat-test/demo:1
grep -q "no tar-split" "$W/err" && grep -q "$(echo "$bottom" | cut -c1-12)" "$W/err" || fail "missing tar-split: $(cat "$W/err")"
moat_u 0 scan --store "$W/u/s3" --fail-on none --allow-unverified --format json -o "$W/u/out/unverified.json" moat-test/demo:1
grep -q "NOT verified" "$W/err" || fail "--allow-unverified did not warn: $(cat "$W/err")"
jq -e '.errors[] | select(test("layer 0 .*NOT verified: no tar-split"))' "$W/u/out/unverified.json" >/dev/null ||
  fail "the report does not say layer 0 is unverified: $(jq -c .errors "$W/u/out/unverified.json")"
# A tar made from the layer's files (whiteout devices back to .wh. entries) finds what the layout does.
diff <(jq -r '.findings[] | [.rule_id, .path // .config_field, .mode // "", (.owner.uid // "" | tostring), .deleted] | @tsv' "$W/u/out/oci.json" | sort) \
     <(jq -r '.findings[] | [.rule_id, .path // .config_field, .mode // "", (.owner.uid // "" | tostring), .deleted] | @tsv' "$W/u/out/unverified.json" | sort) >&2 ||
  fail "findings of the unverified scan differ"
[[ $(jq -r '.image.layers[0].diff_id' "$W/u/out/unverified.json") != $(jq -r '.image.layers[0].diff_id' "$W/u/out/oci.json") ]] ||
  fail "an unverified layer was stored under the config's diffID"
mv "$W/ts.gz" "$G/overlay-layers/$bottom.tar-split.gz"

note "moat's read lock waits for a podman writer (POSIX lock on layers.lock)"
python3 - "$G/overlay-layers/layers.lock" "$W/locked" <<'PY' &
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR)
fcntl.lockf(fd, fcntl.LOCK_EX)        # c/storage writers: fcntl F_SETLKW, F_WRLCK
open(sys.argv[2], "w").close()
time.sleep(3)
PY
locker=$!
while [[ ! -e $W/locked ]]; do sleep 0.05; done
t0=$(date +%s%N)
moat_u 0 scan --store "$W/u/s4" --fail-on none -q moat-test/demo:1
waited_ms=$(( ($(date +%s%N) - t0) / 1000000 ))
wait $locker
(( waited_ms > 1500 )) || fail "moat did not wait for the write lock (took ${waited_ms} ms)"

note "podman rmi racing a scan"
for i in 1 2; do
  rc=0
  ( as_user "$W/moat" scan --store "$W/u/race$i" --fail-on none --format json -o "$W/u/out/race$i.json" moat-test/demo:1 \
      >/dev/null 2>"$W/race.err" ) & scan=$!
  sleep 0.$((i * 2))
  as_user timeout 60 podman rmi moat-test/demo:1 >/dev/null 2>&1 || fail "podman rmi stalled or failed"
  wait $scan || rc=$?
  if [[ $rc -eq 0 ]]; then
    same_findings "$W/u/out/oci.json" "$W/u/out/race$i.json"
  elif [[ $rc -eq 2 ]]; then
    # rmi may also win before moat looks: then the bare name is not in the
    # store and moat goes on to the registries (seen with the slower ASan build).
    grep -Eq "no image|removed from the podman store|No such file|not in containers-storage" "$W/race.err" ||
      fail "race: unclear error: $(cat "$W/race.err")"
  else
    fail "race: moat exited $rc: $(cat "$W/race.err")"
  fi
  note "race $i: moat exited $rc"
  podman_u pull -q "oci-archive:$W/pub/demo.tar" >/dev/null
  podman_u tag "$(podman_u images -q | head -1)" moat-test/demo:1
done
echo "PASS: $TEST_NAME"
