#!/usr/bin/env bash
# First-run speed (issue 11): what a fresh CI runner or a new user pays, side
# by side with the plain tools, in one run.
#
# Input: the 35,000-entry Debian tree benchmarks/scan.sh builds (its
# --build-only step, run here with the budgets below), cut into a three-layer
# gzip image (like a distro base plus two application layers):
#   layer 0  everything but usr/lib/x86_64-linux-gnu and usr/lib/python3*
#            (many small files: docs, man pages, headers, perl, the base system)
#   layer 1  usr/lib/python3*   (small text and .pyc files)
#   layer 2  usr/lib/x86_64-linux-gnu  (shared libraries: binary-heavy)
# compressed with `gzip -6 -n`, in an OCI layout (WORK/layout, tag `t`).
#
# Timed, RUNS times each, interleaved, as the unprivileged user moat-subuid,
# every store on tmpfs (/dev/shm) and fresh for each run, page cache warm:
#   pull     `moat image pull oci:LAYOUT:t` into an empty store
#   gzip     `gzip -dc` of the three layer blobs one after another (>/dev/null)
#   secret   `moat scan --checks secret` with the layers already in the store
#            but nothing else (no compiled-rules cache, no per-layer results):
#            the first scan of a CI job after its pull
#   full     the same with every check (`moat scan`, default checks)
#   grep     `grep -rIl LITERAL TREE` (one literal, text files only) over the
#            unpacked tree: the yardstick of the secrets done-when. Started
#            through the same launcher as moat (tests/lib/as-user.sh, 6 ms of
#            bash, getent and setpriv), as root so it reads the whole tree: the
#            launcher's cost is in both figures, not in moat's alone (gzip
#            below is started the same way)
#   scan-fresh  `moat scan --checks secret` into an empty store (pull included)
# Then the engine alone, `secrets_scan_tree --threads 1` (MB per CPU second)
# with all rules and with 10, over a tree of many small text files
# (usr/include + usr/lib/python3*), a binary-heavy one (usr/lib/x86_64-linux-gnu),
# and each of the image's three layers as unpacked in a store (layer0..2).
#
# Usage (as root): benchmarks/first-run.sh --moat PATH [--scan-tree PATH] [--runs N] [--work DIR]
#                   [--compare PATH] [--pull-only] [--priority]
#   --compare PATH  also time `moat image pull` of this other moat build (e.g.
#                   main's), interleaved with the first: a before/after in one window
#   --pull-only     time only the pulls and gzip (a minute instead of several)
#   --priority      run each timed command in a session of its own whose
#                   autogroup has nice -20: on a machine shared with other
#                   sessions' builds, the figures come near a quiet machine's
#                   (their work waits meanwhile; with autogroups, plain nice
#                   does not reach across sessions)
# Prints a markdown table (also WORK/results.md). Measurements only: no ctest.
set -euo pipefail
export LC_ALL=C
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
RUNS=3
MOAT=""
MOAT_B=""
PULL_ONLY=0
PRIORITY=0
SCAN_TREE=""
WORK=${MOAT_BENCH_FIRST_WORK:-/var/tmp/moat-bench-first}
LITERAL=AKIAQWERTYMOATBENCH
USER_NAME=moat-subuid
while [[ $# -gt 0 ]]; do
  case "$1" in
    --runs) RUNS=$2; shift 2 ;;
    --moat) MOAT=$2; shift 2 ;;
    --compare) MOAT_B=$(realpath "$2"); shift 2 ;;
    --pull-only) PULL_ONLY=1; shift ;;
    --priority) PRIORITY=1; shift ;;
    --scan-tree) SCAN_TREE=$2; shift 2 ;;
    --work) WORK=$2; shift 2 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d'; exit 0 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
done
[[ -n $MOAT ]] || { echo "--moat PATH is required" >&2; exit 2; }
MOAT=$(realpath "$MOAT")
[[ -n $SCAN_TREE ]] || SCAN_TREE="$(dirname "$(dirname "$MOAT")")/benchmarks/secrets/secrets_scan_tree"
[[ $(id -u) == 0 ]] || { echo "first-run.sh needs root (test users, tree owners)" >&2; exit 2; }

# 1. The tree (benchmarks/scan.sh builds it once; its stamp makes it reuse it).
MOAT_BENCH_SCAN_WORK=$WORK \
  MINBASE_TAR=${MINBASE_TAR:-/var/cache/moat-tests/debian-bookworm-minbase-python3-git-openssh-server-amd64.tar.zst} \
  LIB_MB=${LIB_MB:-220} INCLUDE_MB=${INCLUDE_MB:-100} PYTHON_MB=${PYTHON_MB:-60} DOC_MB=${DOC_MB:-40} \
  PERL_MB=${PERL_MB:-20} bash "$here/scan.sh" --build-only --moat "$MOAT"
TREE=$WORK/tree
L=$WORK/layout3

# 2. The three-layer gzip image, once.
if [[ ! -f $L/index.json ]]; then
  echo "== building the three-layer gzip image in $L" >&2
  b=$WORK/build3
  rm -rf "$b" "$L"
  mkdir -p "$b" "$L/blobs/sha256"
  (cd "$TREE" && find . -mindepth 1 -printf '%P\n' | sort) >"$b/all"
  grep -E '^usr/lib/x86_64-linux-gnu(/|$)' "$b/all" >"$b/l2" || true
  grep -E '^usr/lib/python3[^/]*(/|$)' "$b/all" >"$b/l1" || true
  grep -vE '^usr/lib/x86_64-linux-gnu(/|$)|^usr/lib/python3[^/]*(/|$)' "$b/all" >"$b/l0"
  for i in 0 1 2; do
    tar -C "$TREE" --no-recursion --numeric-owner --xattrs --xattrs-include='*' --verbatim-files-from \
      -cf "$b/l$i.tar" -T "$b/l$i"
    gzip -6 -n -c "$b/l$i.tar" >"$b/l$i.tar.gz"
  done
  python3 - "$L" "$b" <<'PY'
import hashlib, json, os, shutil, sys
layout, build = sys.argv[1:3]
blobs = os.path.join(layout, "blobs", "sha256")
def digest(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for c in iter(lambda: f.read(1 << 20), b""): h.update(c)
    return h.hexdigest()
def put(data):
    h = hashlib.sha256(data).hexdigest()
    open(os.path.join(blobs, h), "wb").write(data)
    return h
layers, diffs = [], []
for i in range(3):
    diffs.append("sha256:" + digest(os.path.join(build, f"l{i}.tar")))
    gz = os.path.join(build, f"l{i}.tar.gz")
    d, size = digest(gz), os.path.getsize(gz)
    shutil.move(gz, os.path.join(blobs, d))
    layers.append({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": "sha256:" + d, "size": size})
config = {"created": "2024-01-01T00:00:00Z", "architecture": "amd64", "os": "linux",
          "config": {"Cmd": ["/bin/bash"]}, "rootfs": {"type": "layers", "diff_ids": diffs},
          "history": [{"created_by": f"layer {i} (moat benchmarks/first-run.sh)"} for i in range(3)]}
cb = json.dumps(config).encode()
man = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
       "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": "sha256:" + put(cb), "size": len(cb)},
       "layers": layers}
mb = json.dumps(man).encode()
json.dump({"schemaVersion": 2, "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
           "digest": "sha256:" + put(mb), "size": len(mb), "annotations": {"org.opencontainers.image.ref.name": "t"}}]},
          open(os.path.join(layout, "index.json"), "w"))
json.dump({"imageLayoutVersion": "1.0.0"}, open(os.path.join(layout, "oci-layout"), "w"))
with open(os.path.join(layout, "layers.txt"), "w") as f:
    for l in layers: f.write(os.path.join(blobs, l["digest"][7:]) + "\n")
PY
  chmod -R a+rX "$L"
  rm -rf "$b"
fi
mapfile -t BLOBS <"$L/layers.txt"

bash "$repo/tests/lib/rootless-users.sh" >/dev/null
# The binaries where the test user can run them.
BIN=/dev/shm/moat-first-run-bin
rm -rf "$BIN" && mkdir -m 0755 "$BIN"
install -m 0755 "$MOAT" "$BIN/moat"
[[ -z $MOAT_B ]] || install -m 0755 "$MOAT_B" "$BIN/moat-b"
SHM=/dev/shm/moat-first-run
rm -rf "$SHM" && mkdir -m 1777 "$SHM"
AS=("$repo/tests/lib/as-user.sh" "$USER_NAME")  # runs a command as the test user
AS_ROOT=("$repo/tests/lib/as-user.sh" root)     # the same launcher for the plain tools
fresh_store() { rm -rf "$SHM/store"; }
PFX=()
[[ $PRIORITY == 0 ]] || PFX=(setsid -w bash -c 'echo -20 >/proc/self/autogroup && exec "$@"' _)

# time_it NAME CMD...: one timed run, appended to $WORK/runs.tsv (name wall cpu).
time_it() {
  local name=$1; shift
  local wall user sys
  # (moat scan exits 1 when it finds something: time then adds a first line)
  /usr/bin/time -o "$WORK/time.out" -f "%e %U %S" "${PFX[@]}" "$@" >/dev/null 2>"$WORK/cmd.err" || true
  read -r wall user sys < <(tail -1 "$WORK/time.out")
  [[ $wall =~ ^[0-9.]+$ ]] || { cat "$WORK/time.out" "$WORK/cmd.err" >&2; echo "$name failed" >&2; exit 1; }
  echo -e "$name\t$wall\t$(echo "$user + $sys" | bc)" >>"$WORK/runs.tsv"
  echo "   $name: wall $wall s, cpu $(echo "$user + $sys" | bc) s (load $(cut -d' ' -f1 /proc/loadavg))" >&2
}

: >"$WORK/runs.tsv"
cat "${BLOBS[@]}" >/dev/null; cat "$L"/blobs/sha256/* >/dev/null
grep -rIl "$LITERAL" "$TREE" >/dev/null 2>&1 || true
for ((r = 1; r <= RUNS; r++)); do
  echo "== run $r of $RUNS" >&2
  fresh_store
  time_it pull "${AS[@]}" "$BIN/moat" image pull -q --store "$SHM/store" "oci:$L:t"
  if [[ -n $MOAT_B ]]; then
    fresh_store
    time_it pull-b "${AS[@]}" "$BIN/moat-b" image pull -q --store "$SHM/store" "oci:$L:t"
  fi
  time_it gzip "${AS_ROOT[@]}" bash -c 'for b in "$@"; do gzip -dc "$b" >/dev/null; done' _ "${BLOBS[@]}"
  [[ $PULL_ONLY == 0 ]] || continue
  # The layers are in the store now; nothing else is (no cache/, no secrets-*.json).
  time_it secret "${AS[@]}" "$BIN/moat" scan -q --store "$SHM/store" --checks secret -f json -o /dev/null "oci:$L:t"
  "${AS[@]}" "$BIN/moat" image pull -q --store "$SHM/store" "oci:$L:t" >/dev/null  # (no-op: reused)
  fresh_store
  "${AS[@]}" "$BIN/moat" image pull -q --store "$SHM/store" "oci:$L:t" >/dev/null
  time_it full "${AS[@]}" "$BIN/moat" scan -q --store "$SHM/store" -f json -o /dev/null "oci:$L:t"
  time_it grep "${AS_ROOT[@]}" bash -c 'grep -rIl "$1" "$2"; true' _ "$LITERAL" "$TREE"
  fresh_store
  time_it scan-fresh "${AS[@]}" "$BIN/moat" scan -q --store "$SHM/store" --checks secret -f json -o /dev/null "oci:$L:t"
done
fresh_store

# Medians.
med() { awk -F'\t' -v n="$1" -v c="$2" '$1 == n { print $c }' "$WORK/runs.tsv" | sort -n |
  awk '{ a[NR] = $1 } END { if (NR == 0) print "-"; else if (NR % 2) print a[(NR + 1) / 2]; else printf "%.2f\n", (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
ratio() { echo "scale=2; $1 / $2" | bc; }
{
  echo "| what | wall median s | CPU median s | vs. |"
  echo "|---|---:|---:|---|"
  echo "| \`moat image pull\` (empty store) | $(med pull 2) | $(med pull 3) | $(ratio "$(med pull 2)" "$(med gzip 2)")x gzip -dc |"
  [[ -z $MOAT_B ]] ||
    echo "| \`moat image pull\`, the --compare build | $(med pull-b 2) | $(med pull-b 3) | $(ratio "$(med pull-b 2)" "$(med gzip 2)")x gzip -dc |"
  echo "| \`gzip -dc\` of the 3 layers, one after another | $(med gzip 2) | $(med gzip 3) | |"
  [[ $PULL_ONLY == 0 ]] || exit 0
  echo "| first \`moat scan --checks secret\` (layers in the store, no caches) | $(med secret 2) | $(med secret 3) | $(ratio "$(med secret 2)" "$(med grep 2)")x grep |"
  echo "| first full \`moat scan\` (layers in the store, no caches) | $(med full 2) | $(med full 3) | $(ratio "$(med full 2)" "$(med grep 2)")x grep |"
  echo "| \`grep -rIl $LITERAL TREE\` | $(med grep 2) | $(med grep 3) | |"
  echo "| \`moat scan --checks secret\` into an empty store (pull included) | $(med scan-fresh 2) | $(med scan-fresh 3) | |"
} | tee "$WORK/results.md"

# 3. The engine alone: MB per CPU second, small text vs binary-heavy, all vs 10 rules.
if [[ $PULL_ONLY == 0 && -x $SCAN_TREE ]]; then
  small=("$TREE/usr/include")
  for d in "$TREE"/usr/lib/python3*; do small+=("$d"); done
  bin=("$TREE/usr/lib/x86_64-linux-gnu")
  echo
  echo "| tree | rules | MB | CPU s | MB per CPU second |"
  echo "|---|---:|---:|---:|---:|"
  # The three layers as unpacked in a store (each a directory tree).
  rm -rf "$SHM/rootstore"
  "$MOAT" image pull -q --store "$SHM/rootstore" "oci:$L:t" >/dev/null
  mapfile -t LAYER_DIRS < <(python3 -c '
import json, sys
idx = json.load(open(sys.argv[1] + "/index.json"))
man = json.load(open(sys.argv[1] + "/blobs/sha256/" + idx["manifests"][0]["digest"][7:]))
cfg = json.load(open(sys.argv[1] + "/blobs/sha256/" + man["config"]["digest"][7:]))
for d in cfg["rootfs"]["diff_ids"]: print(sys.argv[2] + "/layers/" + d[7:] + "/diff")' "$L" "$SHM/rootstore")
  layer0=("${LAYER_DIRS[0]}"); layer1=("${LAYER_DIRS[1]}"); layer2=("${LAYER_DIRS[2]}")
  for what in small bin layer0 layer1 layer2; do
    declare -n dirs=$what
    for rules in all 10; do
      "$SCAN_TREE" --rules "$rules" --threads 1 "${dirs[@]}" >/dev/null 2>&1 || true  # warm
      out=$("$SCAN_TREE" --rules "$rules" --threads 1 "${dirs[@]}" 2>&1)
      echo "$out" | sed -n 's/.*bytes=\([0-9]*\).*cpu_seconds=\([0-9.]*\).*/\1 \2/p' | head -1 | {
        read -r bytes cpu
        echo "| $what | $rules | $((bytes / 1000000)) | $cpu | $(echo "scale=0; $bytes / 1000000 / $cpu" | bc) |"
      }
    done
  done
  rm -rf "$SHM/rootstore"
fi | tee -a "$WORK/results.md"
