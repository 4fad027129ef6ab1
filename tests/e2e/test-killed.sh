#!/usr/bin/env bash
# A pull SIGKILLed in the middle of unpacking (while store/tmp/ has content):
#  - layers/ holds only complete layers (index.tsv + layer.json, disk matches
#    the index), no image record is written, tmp/ holds the leftovers;
#  - a new `moat scan` succeeds, reports the right diffIDs, and the leftovers
#    are gone (the next unpacker of a layer removes them);
#  - killed again, `moat image prune` removes every leftover.
source "$(dirname "$0")/lib.sh"
need skopeo python3
need_images
L=$IMAGES/layout
want=$(skopeo_diffids "oci:$L:big")

# kill_mid_unpack STORE: starts a pull, SIGKILLs it once tmp/<layer>/diff has
# files in it; retries with a fresh store if the pull was too quick to catch.
kill_mid_unpack() {
  python3 - "$MOAT" "$1" "oci:$L:big" <<'EOF'
import os, shutil, signal, subprocess, sys, time
moat, store, ref = sys.argv[1:]
def tmp_has_content():
    try:
        for n in os.listdir(store + "/tmp"):
            d = os.path.join(store, "tmp", n, "diff")
            if os.path.isdir(d) and any(os.scandir(d)):
                return True
    except FileNotFoundError:
        pass
    return False
for attempt in range(10):
    p = subprocess.Popen([moat, "image", "pull", "--store", store, ref],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 20
    while p.poll() is None and not tmp_has_content() and time.monotonic() < deadline:
        time.sleep(0.0005)
    if p.poll() is None:
        p.send_signal(signal.SIGKILL)
        p.wait()
        print("killed after attempt %d" % (attempt + 1), file=sys.stderr)
        sys.exit(0)
    shutil.rmtree(store, ignore_errors=True)  # finished before we saw it working: again
sys.exit("could not catch a pull in the act in 10 attempts")
EOF
}

check_no_partial() {  # STORE
  local s=$1 d
  for d in "$s"/layers/*; do
    [[ -e $d ]] || continue
    [[ -f $d/layer.json && -f $d/index.tsv && -d $d/diff ]] || fail "partial layer in layers/: $d: $(ls -A "$d")"
    py check-store-layer "$s" "sha256:$(basename "$d")" >/dev/null || fail "layer $d does not match its index"
    grep -qx "sha256:$(basename "$d")" <<<"$want" || fail "unknown layer $d"
  done
}

for how in scan prune; do
  S=$WORK/store-$how
  note "kill a pull, then $how"
  kill_mid_unpack "$S" || skip "the pull was always too quick to catch mid-unpack"
  [[ -n $(ls -A "$S/tmp") ]] || fail "tmp/ is empty right after the kill"
  check_no_partial "$S"
  [[ -z $(ls -A "$S/images") ]] || fail "an image record was written by the killed pull: $(ls "$S/images")"
  run_moat 0 image ls --json --store "$S"
  [[ $(py json images <"$WORK/out" | wc -l) -eq 0 ]] || fail "image ls lists an image after the kill"
  leftovers=$(ls -A "$S/tmp")
  note "leftovers: $(tr '\n' ' ' <<<"$leftovers")"
  if [[ $how == scan ]]; then
    run_moat 0 scan --fail-on none --format json --store "$S" "oci:$L:big"
    got=$(py json image.layers <"$WORK/out" | python3 -c 'import json,sys; [print(json.loads(l)["diff_id"]) for l in sys.stdin]')
    [[ $got == "$want" ]] || fail "scan after the kill reports other diffIDs"
    [[ -z $(ls -A "$S/tmp") ]] || fail "the next unpacker left the leftovers in tmp/: $(ls -A "$S/tmp")"
    [[ $(ls "$S/layers" | wc -l) -eq 3 ]] || fail "3 layers expected after the scan"
    check_no_partial "$S"
  else
    run_moat 0 image prune --store "$S"
    [[ -z $(ls -A "$S/tmp") ]] || fail "prune left tmp/ leftovers: $(ls -A "$S/tmp")"
    [[ -z $(ls -A "$S/layers") ]] || fail "prune kept layers no image uses: $(ls "$S/layers")"
    run_moat 0 image pull -v --store "$S" "oci:$L:big"
    expect_err "3 layers unpacked, 0 reused"
    check_no_partial "$S"
  fi
done
echo "PASS: $TEST_NAME"
