#!/usr/bin/env bash
# containers-storage: the store rootless podman makes with no storage.conf at
# all (Debian 12's podman 4.3 picks vfs here; the test asserts what podman
# reports and that moat finds the same store), holding an image pulled by
# podman and one committed by buildah on top of it (a layer c/storage made
# from a container's diff, with a setuid file). Each scan equals the scan of
# the same image exported by skopeo to an OCI layout, and the setuid files
# equal what `podman unshare` + `podman image mount` + find show.
source "$(dirname "$0")/lib.sh"
podman_u pull -q "oci-archive:$W/pub/demo.tar" >/dev/null
podman_u tag "$(podman_u images -q | head -1)" moat-test/demo:1
driver=$(podman_u info --format '{{.Store.GraphDriverName}}')
groot=$(podman_u info --format '{{.Store.GraphRoot}}')
note "podman without storage.conf uses driver $driver at $groot"
[[ $groot == "$W/u/data/containers/storage" ]] || fail "podman's default graphroot is $groot"
[[ $driver == vfs ]] || note "not vfs here: the test still checks moat finds podman's store"
oci_report

note "podman's image (default store found without configuration)"
moat_u 0 scan --store "$W/u/s1" --fail-on none --format json -o "$W/u/out/cs.json" moat-test/demo:1
same_findings "$W/u/out/oci.json" "$W/u/out/cs.json"
jq -e --arg g "$groot" --arg d "$driver" '.image.reference | startswith("containers-storage:[" + $d + "@" + $g + "+")' \
  "$W/u/out/cs.json" >/dev/null || fail "reference: $(jq .image.reference "$W/u/out/cs.json")"
diff <(setuid_paths "$W/u/out/cs.json") <(podman_setuid moat-test/demo:1) >&2 || fail "setuid files differ from podman image mount"

note "moat's user namespace has podman's exact id mapping"
for m in uid_map gid_map; do
  want=$(as_user podman unshare cat /proc/self/$m 2>/dev/null | awk '{print $1, $2, $3}')
  moat_u 0 mount --store "$W/u/s1" moat-test/demo:1 -- cat /proc/self/$m
  got=$(awk '{print $1, $2, $3}' "$W/out")
  [[ -n $want && $got == "$want" ]] || fail "$m: moat has [$got], podman unshare has [$want]"
done

note "without the namespace (MOAT_USERNS_STORE=0) moat says why it cannot read the store"
rc=0; as_user env MOAT_USERNS_STORE=0 "$W/moat" scan --store "$W/u/s0" moat-test/demo:1 >/dev/null 2>"$W/err" || rc=$?
[[ $rc -eq 2 ]] && grep -q "subordinate ids" "$W/err" || fail "MOAT_USERNS_STORE=0: rc $rc: $(cat "$W/err")"

note "buildah's image: a committed layer with a setuid binary"
built_setuid_image
setuid_paths "$W/u/out/built-cs.json" | grep -qx /usr/bin/moat-suid-tool || fail "buildah's setuid file is not reported"
diff <(setuid_paths "$W/u/out/built-cs.json") <(podman_setuid moat-test/built:1) >&2 || fail "setuid files differ from podman image mount"
# The base layers were already in moat's store: only buildah's layer was read.
moat_u 0 image ls --store "$W/u/s1" --json
[[ $(jq '.layers | length' "$W/out") -eq 4 ]] || fail "expected 4 layers in moat's store: $(jq -c '.layers' "$W/out")"
echo "PASS: $TEST_NAME"
