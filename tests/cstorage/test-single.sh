#!/usr/bin/env bash
# containers-storage as a user with no subordinate ids (moat-single: no line
# in /etc/subuid or /etc/subgid). Rootless podman then maps only the user's
# own id, and pulls an image only with ignore_chown_errors: every file in the
# store belongs to the user, and the image's owners survive only in the
# layers' tar-split metadata. moat reads the same store in a single-id user
# namespace and must report the image's owners, not the flattened ones:
#  - the scan equals the scan of the same image from its OCI layout (owners
#    0, 1000 and 4242 included: on disk they are all the user);
#  - the report says id_mapping "single";
#  - the setuid paths equal what `podman unshare` + `podman image mount` + find
#    show (whatever the owner: on disk, podman's owners are all the user);
#  - a layer buildah commits from a container (setuid file) is read too.
CS_USER=moat-single
source "$(dirname "$0")/lib.sh"
! grep -q '^moat-single:' /etc/subuid || fail "moat-single has a subuid range: the test user setup is wrong"
# buildah without subordinate ids wants the roots named ("runroot must be set").
user_conf "[storage]
driver = \"overlay\"
runroot = \"$W/u/xdg/containers\"
graphroot = \"$W/u/data/containers/storage\"
[storage.options]
ignore_chown_errors = \"true\""
podman_u pull -q "oci-archive:$W/pub/demo.tar" >/dev/null 2>&1 || fail "podman (single mapping, ignore_chown_errors) could not pull the demo image"
podman_u tag "$(podman_u images -q 2>/dev/null | head -1)" moat-test/demo:1 2>/dev/null
map=$(as_user podman unshare cat /proc/self/uid_map 2>/dev/null | awk '{print $1, $2, $3}')
[[ $map == "0 $(id -u $U) 1" ]] || fail "podman's mapping for $U is [$map], not a single id"
oci_report

note "podman's image, read by moat as a user without subordinate ids"
moat_u 0 scan --store "$W/u/s1" --fail-on none --format json -o "$W/u/out/cs.json" moat-test/demo:1
same_findings "$W/u/out/oci.json" "$W/u/out/cs.json"
[[ $(jq -r .scan.id_mapping "$W/u/out/cs.json") == single ]] || fail "id_mapping: $(jq -c .scan "$W/u/out/cs.json")"
# On disk every file is the user's; the report must still show the image's other owners.
owners=$(jq -r '[.findings[] | select(.owner != null) | .owner.uid] | unique | map(tostring) | join(" ")' "$W/u/out/cs.json")
[[ $owners == *" "* ]] || fail "only one owner in the report ($owners): the image's owners were not read from the tar-split"
all_setuid() { jq -r '.findings[] | select(.category == "setuid" and .deleted == false) | .path' "$1" | sort -u; }
podman_setuid_any() {
  as_user podman unshare sh -c 'm=$(podman image mount "$1") && cd "$m" && find . -perm -4000 | sed "s/^\.//" | sort -u; podman image unmount "$1" >/dev/null' sh "$1" 2>/dev/null
}
[[ -n $(all_setuid "$W/u/out/cs.json") ]] || fail "no setuid finding in the demo image"
diff <(all_setuid "$W/u/out/cs.json") <(podman_setuid_any moat-test/demo:1) >&2 || fail "setuid files differ from podman image mount"

note "buildah's image: a committed layer with a setuid binary"
built_setuid_image
all_setuid "$W/u/out/built-cs.json" | grep -qx /usr/bin/moat-suid-tool || fail "buildah's setuid file is not reported"
diff <(all_setuid "$W/u/out/built-cs.json") <(podman_setuid_any moat-test/built:1) >&2 || fail "setuid files differ from podman image mount"
echo "PASS: $TEST_NAME"
