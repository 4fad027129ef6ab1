#!/usr/bin/env bash
# First scans of two moat builds side by side (issue 11): the `secret` and
# `full` rows of benchmarks/first-run.sh, for builds A and B interleaved run by
# run in the same window, with `grep -rIl LITERAL TREE` as the yardstick, so
# a change is measured against its base on a shared machine.
#
# Input: what benchmarks/first-run.sh built (WORK/layout3, WORK/tree); run it
# once first. Each run, for A then B: a copy of one pulled store (layers in
# the store, no caches, on tmpfs), then `moat scan --checks secret`, a fresh
# copy, then `moat scan` (all checks), as the unprivileged user moat-subuid.
#
# Usage (as root): benchmarks/first-scan-ab.sh --a PATH --b PATH [--runs N] [--work DIR]
# Prints each run's wall and CPU (user + sys) seconds, then the medians.
set -euo pipefail
export LC_ALL=C
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
RUNS=5 A="" B=""
WORK=${MOAT_BENCH_FIRST_WORK:-/var/tmp/moat-bench-first}
LITERAL=AKIAQWERTYMOATBENCH
while [[ $# -gt 0 ]]; do
  case "$1" in
    --runs) RUNS=$2; shift 2 ;;
    --a) A=$2; shift 2 ;;
    --b) B=$2; shift 2 ;;
    --work) WORK=$2; shift 2 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d'; exit 0 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
done
[[ -n $A && -n $B ]] || { echo "--a PATH and --b PATH are required" >&2; exit 2; }
[[ $(id -u) == 0 ]] || { echo "first-scan-ab.sh needs root (test users, store copies)" >&2; exit 2; }
L=$WORK/layout3 TREE=$WORK/tree
[[ -f $L/index.json && -d $TREE ]] || { echo "no input in $WORK: run benchmarks/first-run.sh first" >&2; exit 2; }
bash "$repo/tests/lib/rootless-users.sh" >/dev/null
AS=("$repo/tests/lib/as-user.sh" moat-subuid)
BIN=/dev/shm/moat-first-ab-bin SHM=/dev/shm/moat-first-ab
rm -rf "$BIN" "$SHM" && mkdir -m 0755 "$BIN" && mkdir -m 1777 "$SHM"
trap 'rm -rf "$BIN" "$SHM"' EXIT
install -m 0755 "$A" "$BIN/A"
install -m 0755 "$B" "$BIN/B"
"${AS[@]}" "$BIN/A" image pull -q --store "$SHM/pristine" "oci:$L:t" >/dev/null

: >"$SHM/runs.tsv"
t() {  # t NAME CMD...: one timed run
  local name=$1 w u s; shift
  /usr/bin/time -o "$SHM/time.out" -f "%e %U %S" "$@" >/dev/null 2>"$SHM/err" || true  # (exit 1: findings)
  read -r w u s < <(tail -1 "$SHM/time.out")
  [[ $w =~ ^[0-9.]+$ ]] || { cat "$SHM/time.out" "$SHM/err" >&2; exit 1; }
  echo -e "$name\t$w\t$(echo "$u + $s" | bc)" | tee -a "$SHM/runs.tsv" >&2
}
cat "$L"/blobs/sha256/* >/dev/null
grep -rIl "$LITERAL" "$TREE" >/dev/null 2>&1 || true
for ((r = 1; r <= RUNS; r++)); do
  for m in A B; do
    rm -rf "$SHM/store" && cp -a "$SHM/pristine" "$SHM/store"
    t "$m secret" "${AS[@]}" "$BIN/$m" scan -q --store "$SHM/store" --checks secret -f json -o /dev/null "oci:$L:t"
    rm -rf "$SHM/store" && cp -a "$SHM/pristine" "$SHM/store"
    t "$m full" "${AS[@]}" "$BIN/$m" scan -q --store "$SHM/store" -f json -o /dev/null "oci:$L:t"
  done
  t grep bash -c 'grep -rIl "$1" "$2"; true' _ "$LITERAL" "$TREE"
  echo "   load $(cut -d' ' -f1-3 /proc/loadavg)" >&2
done
med() { awk -F'\t' -v n="$1" -v c="$2" '$1 == n { print $c }' "$SHM/runs.tsv" | sort -n |
  awk '{ a[NR] = $1 } END { if (NR % 2) print a[(NR + 1) / 2]; else printf "%.2f\n", (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
g=$(med grep 2)
echo "| what | A wall | A CPU | B wall | B CPU | A / grep | B / grep |"
echo "|---|---:|---:|---:|---:|---:|---:|"
for c in secret full; do
  echo "| first \`moat scan\` $c | $(med "A $c" 2) | $(med "A $c" 3) | $(med "B $c" 2) | $(med "B $c" 3) |" \
    "$(echo "scale=2; $(med "A $c" 2) / $g" | bc)x | $(echo "scale=2; $(med "B $c" 2) / $g" | bc)x |"
done
echo "| \`grep -rIl $LITERAL TREE\` | $g | $(med grep 3) | | | | |"
echo "(medians of $RUNS; load average at the end: $(cut -d' ' -f1-3 /proc/loadavg))"
