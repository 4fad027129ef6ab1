#!/usr/bin/env bash
# containers-storage: scanning an image where podman keeps it, against what
# users do today (export it with skopeo, then scan the archive).
#
# The image is the ~340 MB (compressed) three-layer image of benchmarks/unpack.sh
# (built once from the machine's /usr, cached in the work dir). It is pulled
# into a rootless podman store (native overlay, graphroot on tmpfs) as the
# unprivileged user moat-subuid, then, each RUNS times, alternating, with every
# moat store and archive on the same tmpfs and removed before each run:
#   A  moat scan containers-storage:IMG                     (empty moat store)
#   B  skopeo copy containers-storage:IMG oci-archive:F && moat scan oci-archive:F   (empty moat store)
#   C  moat scan containers-storage:IMG                     (second scan: every layer in moat's store)
#   D  moat scan oci:LAYOUT                                 (the image already pulled from a layout)
# Targets (issue 9): A <= 0.5 x B, C <= 1.2 x D. The report is written to
# /dev/null in JSON; --fail-on none. Medians are printed with every run.
#
# Usage (as root: it creates the test user and drops to it):
#   benchmarks/cstorage.sh [--runs N] [--moat PATH] [--work DIR]
# Environment: MOAT_BENCH_WORK (image cache, default /var/tmp/moat-bench),
# MOAT_CS_BENCH_TMP (tmpfs work dir, default /dev/shm/moat-cs-bench; ~5 GB).
# Nothing here is part of ctest: these are measurements, not assertions.
set -euo pipefail
export LC_ALL=C
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
RUNS=3
MOAT="$repo/build/scanner/moat"
WORK="${MOAT_BENCH_WORK:-/var/tmp/moat-bench}"
T="${MOAT_CS_BENCH_TMP:-/dev/shm/moat-cs-bench}"
while [[ $# -gt 0 ]]; do
  case "$1" in
    --runs) RUNS=$2; shift 2 ;;
    --moat) MOAT=$2; shift 2 ;;
    --work) WORK=$2; shift 2 ;;
    -h|--help) sed -n '2,22p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
done
[[ $(id -u) -eq 0 ]] || { echo "run as root (it drops to the test user moat-subuid)" >&2; exit 2; }
for t in podman skopeo python3 "$MOAT"; do command -v "$t" >/dev/null || { echo "missing: $t" >&2; exit 2; }; done

bash "$here/unpack.sh" --build-only --no-large --moat "$MOAT" --work "$WORK" >&2
bash "$repo/tests/lib/rootless-users.sh"
U=moat-subuid
rm -rf "$T"; mkdir -p "$T"; chmod 0755 "$T"
install -m 0755 "$MOAT" "$T/moat"
cp -r "$WORK/image" "$T/layout"; chmod -R a+rX "$T/layout"
mkdir -p "$T/u/config/containers" "$T/u/data" "$T/run"
cat >"$T/u/config/containers/storage.conf" <<CONF
[storage]
driver = "overlay"
graphroot = "$T/u/graph"
runroot = "$T/u/run"
CONF
chown -R $U: "$T/u" "$T/run"
as_user() { (cd "$T" && "$repo/tests/lib/as-user.sh" $U env XDG_DATA_HOME="$T/u/data" XDG_CONFIG_HOME="$T/u/config" "$@"); }
cleanup() { as_user podman unshare rm -rf "$T/u" >/dev/null 2>&1 || true; rm -rf "$T"; }
trap cleanup EXIT
echo "== podman pull oci:LAYOUT:latest into a rootless overlay store on tmpfs" >&2
as_user podman pull -q "oci:$T/layout:latest" >/dev/null 2>&1
as_user podman tag "$(as_user podman images -q 2>/dev/null | head -1)" bench/img:1 2>/dev/null
as_user podman images 2>/dev/null >&2

now() { date +%s%N; }
declare -A times
run() {  # run NAME CMD...: time CMD as the user (wall seconds)
  local name=$1 t0 t1; shift
  t0=$(now)
  as_user "$@" >/dev/null 2>"$T/err" || { cat "$T/err" >&2; echo "$name failed" >&2; exit 1; }
  t1=$(now)
  local s; s=$(python3 -c "print(f'{($t1-$t0)/1e9:.2f}')")
  times[$name]+="$s "
  echo "$name run: ${s}s" >&2
}
fresh() { as_user podman unshare rm -rf "$T/run/$1" 2>/dev/null; }
scan=(scan --fail-on none --format json -o /dev/null)
# One warm-up of each path (page cache, the secret database cached in the store).
as_user "$T/moat" "${scan[@]}" --store "$T/run/warm" containers-storage:localhost/bench/img:1 >/dev/null 2>&1
as_user "$T/moat" "${scan[@]}" --store "$T/run/layout" "oci:$T/layout:latest" >/dev/null 2>&1
for i in $(seq "$RUNS"); do
  fresh a; run A "$T/moat" "${scan[@]}" --store "$T/run/a" containers-storage:localhost/bench/img:1
  fresh b; as_user podman unshare rm -f "$T/run/f.tar" 2>/dev/null
  run B sh -c "skopeo copy -q containers-storage:localhost/bench/img:1 oci-archive:$T/run/f.tar:latest && $T/moat ${scan[*]} --store $T/run/b oci-archive:$T/run/f.tar:latest"
  run C "$T/moat" "${scan[@]}" --store "$T/run/warm" containers-storage:localhost/bench/img:1
  run D "$T/moat" "${scan[@]}" --store "$T/run/layout" "oci:$T/layout:latest"
done
median() { python3 -c "import statistics,sys; print(f'{statistics.median(map(float, sys.argv[1:])):.2f}')" $1; }
a=$(median "${times[A]}"); b=$(median "${times[B]}"); c=$(median "${times[C]}"); d=$(median "${times[D]}")
echo
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg); $(nproc) cores"
printf '%-62s %8s   %s\n' "command" "median s" "runs"
printf '%-62s %8s   %s\n' "A moat scan containers-storage:IMG (empty store)" "$a" "${times[A]}"
printf '%-62s %8s   %s\n' "B skopeo copy ... oci-archive:F && moat scan oci-archive:F" "$b" "${times[B]}"
printf '%-62s %8s   %s\n' "C moat scan containers-storage:IMG (second scan)" "$c" "${times[C]}"
printf '%-62s %8s   %s\n' "D moat scan oci:LAYOUT (layers already in the store)" "$d" "${times[D]}"
python3 -c "print(f'A/B = {$a/$b:.2f} (target <= 0.5);  C/D = {$c/$d:.2f} (target <= 1.2)')"
