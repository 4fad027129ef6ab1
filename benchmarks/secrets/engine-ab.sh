#!/usr/bin/env bash
# The engine table of benchmarks/first-run.sh (secrets_scan_tree --threads 1,
# all rules and the first 10, MB per CPU second) for two builds side by side:
# every measurement is run A, B, A, B ... RUNS times after one warm-up each,
# and the median CPU time of each is printed, so both builds see the same
# machine load. Takes the trees first-run.sh built (WORK/tree and the three
# layers of WORK/layout3 unpacked into a fresh store on tmpfs).
#
# Usage: benchmarks/secrets/engine-ab.sh --a SCAN_TREE --b SCAN_TREE --moat MOAT [--runs N] [--work DIR]
#   --moat: any moat binary, only to unpack the image's layers (`moat image pull`)
set -euo pipefail
export LC_ALL=C
A="" B="" MOAT="" RUNS=5
WORK=${MOAT_BENCH_FIRST_WORK:-/var/tmp/moat-bench-first}
while [[ $# -gt 0 ]]; do
  case "$1" in
    --a) A=$2; shift 2 ;;
    --b) B=$2; shift 2 ;;
    --moat) MOAT=$2; shift 2 ;;
    --runs) RUNS=$2; shift 2 ;;
    --work) WORK=$2; shift 2 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d'; exit 0 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
done
[[ -x $A && -x $B && -x $MOAT ]] || { echo "--a, --b and --moat must be executables (--help)" >&2; exit 2; }
TREE=$WORK/tree L=$WORK/layout3
[[ -d $TREE && -f $L/index.json ]] || { echo "no input in $WORK: run benchmarks/first-run.sh once" >&2; exit 2; }

STORE=$(mktemp -d /dev/shm/moat-engine-ab.XXXXXX)
trap 'rm -rf "$STORE"' EXIT
"$MOAT" image pull -q --store "$STORE/s" "oci:$L:t" >/dev/null
mapfile -t LAYER_DIRS < <(python3 -c '
import json, sys
idx = json.load(open(sys.argv[1] + "/index.json"))
man = json.load(open(sys.argv[1] + "/blobs/sha256/" + idx["manifests"][0]["digest"][7:]))
cfg = json.load(open(sys.argv[1] + "/blobs/sha256/" + man["config"]["digest"][7:]))
for d in cfg["rootfs"]["diff_ids"]: print(sys.argv[2] + "/layers/" + d[7:] + "/diff")' "$L" "$STORE/s")
small=("$TREE/usr/include")
for d in "$TREE"/usr/lib/python3*; do small+=("$d"); done
bin=("$TREE/usr/lib/x86_64-linux-gnu")
layer0=("${LAYER_DIRS[0]}") layer1=("${LAYER_DIRS[1]}") layer2=("${LAYER_DIRS[2]}")

cpu_of() { "$@" 2>&1 | sed -n 's/.*bytes=\([0-9]*\).*cpu_seconds=\([0-9.]*\).*/\1 \2/p' | head -1; }
median() { sort -n | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }

uptime
echo "| tree | rules | MB | A CPU s | A MB per CPU s | B CPU s | B MB per CPU s |"
echo "|---|---:|---:|---:|---:|---:|---:|"
for what in small bin layer0 layer1 layer2; do
  declare -n dirs=$what
  for rules in all 10; do
    "$A" --rules "$rules" --threads 1 "${dirs[@]}" >/dev/null 2>&1 || true  # warm
    "$B" --rules "$rules" --threads 1 "${dirs[@]}" >/dev/null 2>&1 || true
    : >"$STORE/a" && : >"$STORE/b"
    for ((i = 0; i < RUNS; i++)); do
      cpu_of "$A" --rules "$rules" --threads 1 "${dirs[@]}" >>"$STORE/a"
      cpu_of "$B" --rules "$rules" --threads 1 "${dirs[@]}" >>"$STORE/b"
    done
    bytes=$(head -1 "$STORE/a" | cut -d' ' -f1)
    ca=$(cut -d' ' -f2 "$STORE/a" | median) cb=$(cut -d' ' -f2 "$STORE/b" | median)
    echo "| $what | $rules | $((bytes / 1000000)) | $ca | $(echo "$bytes / 1000000 / $ca" | bc) | $cb | $(echo "$bytes / 1000000 / $cb" | bc) |"
  done
done
uptime
