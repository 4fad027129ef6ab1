#!/usr/bin/env bash
# A pull SIGKILLed in the middle of unpacking (while store/tmp/ has content):
#  - layers/ holds only complete layers (index.tsv + layer.json, disk matches
#    the index), no image record is written, tmp/ holds the leftovers;
#  - a new `moat scan` succeeds, reports the right diffIDs, and the leftovers
#    are gone (the next unpacker of a layer removes them);
#  - killed again, `moat image prune` removes every leftover;
#  - the kill campaign (store torture, docs/fuzzing.md): $KILL_RUNS kills
#    (default 4; scripts/torture.sh makes 50) on one store, each SIGKILLing a
#    `moat image pull` or `moat scan` of :big, :t or :other at a random moment
#    of its measured run time (unpack, rename, mount, checks, secret-cache
#    write), from a cold store (the image's layers removed first, so they are
#    unpacked again) or a warm one; after each, a scan must exit 0 with a JSON
#    report identical to a clean run's (apart from scan.duration_ms) and
#    `moat image prune` must leave tmp/ empty and layers/ whole. A run that
#    finishes before its kill is checked the same way but not counted.
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
note "kill campaign: ${KILL_RUNS:-4} kills"
python3 - "$MOAT" "$WORK" "$L" "${KILL_RUNS:-4}" "${KILL_SEED:-$RANDOM}" <<'EOF' || fail "kill campaign"
import json, os, random, signal, subprocess, sys, time
moat, work, layout, runs, seed = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
rng = random.Random(seed)
images = [f"oci:{layout}:{t}" for t in ("big", "t", "other")]
def moat_run(store, *args, check=True):
    p = subprocess.run([moat, *args, "--store", store], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if check and p.returncode != 0:
        sys.exit(f"moat {' '.join(args)} exited {p.returncode}: {p.stderr.decode(errors='replace')[-2000:]}")
    return p
def report(store, img):
    p = moat_run(store, "scan", "--fail-on", "none", "--format", "json", img)
    j = json.loads(p.stdout)
    j["scan"].pop("duration_ms", None)
    return json.dumps(j, sort_keys=True)
def listdir(d):
    return os.listdir(d) if os.path.isdir(d) else []
def whole(store):  # layers/ holds only whole layers; returns what tmp/ holds
    for d in listdir(os.path.join(store, "layers")):
        ld = os.path.join(store, "layers", d)
        if not (os.path.isfile(ld + "/layer.json") and os.path.isfile(ld + "/index.tsv") and os.path.isdir(ld + "/diff")):
            sys.exit(f"partial layer in layers/: {d}: {os.listdir(ld)}")
    return listdir(os.path.join(store, "tmp"))
def phase(store):  # what the killed process was doing, as far as the store shows
    tmp = os.path.join(store, "tmp")
    for n in listdir(tmp):
        p = os.path.join(tmp, n)
        if not os.path.isdir(p) or any(True for _ in os.scandir(p)):
            return "unpack"
    return "no unpack under way (documents, locks, rename, mount, checks, cache)"
def drop(store, img):
    moat_run(store, "image", "rm", img, check=False)
    moat_run(store, "image", "prune", check=False)
# Clean references, and how long each operation takes here now: from an
# empty store ("cold") and with everything stored ("warm").
ref, took = {}, {}
for img in images:
    s = os.path.join(work, "clean")
    t0 = time.monotonic(); moat_run(s, "image", "pull", img); took[("pull", img, "cold")] = time.monotonic() - t0
    t0 = time.monotonic(); moat_run(s, "image", "pull", img); took[("pull", img, "warm")] = time.monotonic() - t0
    drop(s, img)
    t0 = time.monotonic(); ref[img] = report(s, img); took[("scan", img, "cold")] = time.monotonic() - t0
    t0 = time.monotonic(); report(s, img); took[("scan", img, "warm")] = time.monotonic() - t0
    subprocess.run(["chmod", "-R", "u+rwx", s]); subprocess.run(["rm", "-rf", s])
store = os.path.join(work, "campaign")
kills, finished, phases, run = 0, 0, {}, 0
while kills < runs:
    run += 1
    if run > 4 * runs + 10:
        sys.exit(f"only {kills} of {runs} runs could be killed in {run - 1} attempts")
    img, op = rng.choice(images), rng.choice(["pull", "scan"])
    state = "cold" if rng.random() < 0.6 else "warm"
    if state == "cold":
        drop(store, img)  # its own layers go, so they are unpacked again
    delay = rng.uniform(0.01, 0.95 * took[(op, img, state)])
    args = [moat, "image", "pull", "--store", store, img] if op == "pull" else \
           [moat, "scan", "--fail-on", "none", "--format", "json", "--store", store, img]
    t0 = time.monotonic()
    p = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    ph = None
    try:
        p.wait(timeout=delay)
    except subprocess.TimeoutExpired:
        ph = phase(store)
        p.send_signal(signal.SIGKILL)
    err = p.communicate()[1].decode(errors="replace")
    if p.returncode == -signal.SIGKILL:
        kills += 1
        phases[ph] = phases.get(ph, 0) + 1
        what = f"killed at {delay:.3f} s ({ph})"
    elif p.returncode == 0:
        finished += 1
        took[(op, img, state)] = time.monotonic() - t0  # faster than measured: aim lower next time
        what = "finished before the kill"
    else:
        sys.exit(f"attempt {run}: {op} {img} exited {p.returncode} before the kill: {err[-2000:]}")
    left = whole(store)
    got = report(store, img)
    if got != ref[img]:
        a, b = json.loads(ref[img]), json.loads(got)
        sys.exit(f"attempt {run} (seed {seed}): after {op} {img} {what} the report differs in "
                 f"{[k for k in set(a) | set(b) if a.get(k) != b.get(k)]}")
    moat_run(store, "image", "prune")
    if whole(store):
        sys.exit(f"attempt {run} (seed {seed}): tmp/ not empty after prune: {whole(store)}")
    print(f"attempt {run}: {op} {img} ({state}): {what}; tmp/ had {len(left)} entries; scan identical; "
          f"tmp/ empty after prune", file=sys.stderr)
print(f"kill campaign: {kills}/{runs} kills passed (seed {seed}; {finished} more runs finished before their "
      f"kill and were checked too); kills by phase: {phases}", file=sys.stderr)
EOF
echo "PASS: $TEST_NAME"
