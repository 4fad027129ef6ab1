#!/usr/bin/env bash
# Multi-platform images made by a real producer: `buildah manifest` builds an
# OCI image index of :t (linux/amd64) and :other (linux/arm64/v8), pushed to
# an OCI layout (an index inside index.json, as buildah writes it) and copied
# with `skopeo copy --all` to an oci-archive. moat picks the host's platform by
# default, the one --platform names otherwise (with or without the variant),
# and an absent platform is exit 2 listing the platforms the index has.
source "$(dirname "$0")/lib.sh"
need buildah skopeo python3
need_images
L=$IMAGES/layout

# buildah names images after their path, which must be lowercase.
SRC=/tmp/moat-e2e-platforms-src.$$
ln -sfn "$L" "$SRC"
B=(buildah --root "$WORK/b/root" --runroot "$WORK/b/run" --storage-driver vfs)
trap 'rm -f "$SRC"; "${B[@]}" rmi -a -f >/dev/null 2>&1 || true; cleanup' EXIT
if ! { "${B[@]}" manifest create mlist && "${B[@]}" manifest add mlist "oci:$SRC:t" &&
       "${B[@]}" manifest add --arch arm64 --variant v8 mlist "oci:$SRC:other" &&
       "${B[@]}" manifest push --all mlist "oci:$WORK/multi:m"; } >"$WORK/buildah.log" 2>&1; then
  cat "$WORK/buildah.log" >&2
  skip "buildah could not make a manifest list here"
fi
skopeo copy -q --all "oci:$WORK/multi:m" "oci-archive:$WORK/multi.tar:m"
amd=$(skopeo_diffids "oci:$L:t")
arm=$(skopeo_diffids "oci:$L:other")
case $(uname -m) in
  x86_64) host=$amd ;;
  aarch64) host=$arm ;;
  *) host= ;;
esac

layers_of() { py json image.layers <"$WORK/out" | python3 -c 'import json,sys; [print(json.loads(l)["diff_id"]) for l in sys.stdin]'; }
for ref in "oci:$WORK/multi:m" "oci-archive:$WORK/multi.tar:m" "oci-archive:$WORK/multi.tar"; do
  note "$ref"
  if [[ -n $host ]]; then
    run_moat 0 scan --fail-on none --format json --store "$WORK/s" "$ref"
    [[ $(layers_of) == "$host" ]] || fail "$ref: the default is not the host's platform"
  fi
  for p in linux/amd64 linux/arm64 linux/arm64/v8; do
    run_moat 0 scan --fail-on none --format json --store "$WORK/s" --platform "$p" "$ref"
    want=$amd; [[ $p == linux/amd64 ]] || want=$arm
    [[ $(layers_of) == "$want" ]] || fail "$ref --platform $p: other layers: $(layers_of)"
  done
  for p in linux/s390x linux/arm64/v7 windows/amd64; do
    run_moat 2 scan --format json --store "$WORK/s" --platform "$p" "$ref"
    [[ ! -s $WORK/out ]] || fail "$ref --platform $p: a report on a failed scan"
    expect_err "^moat: error: .*$p"
    expect_err "linux/amd64.*linux/arm64/v8"
    expect_err "--platform"
  done
done
echo "PASS: $TEST_NAME"
