#!/usr/bin/env bash
# Unpack throughput and peak memory of `moat image pull` against the tools
# everyone already trusts to be fast: `gzip -dc` and `tar -xzf`.
#
# It builds (once, cached in the work dir) an OCI image layout from the
# machine's own /usr: three gzip layers of roughly 340 MB compressed together
#   layer 1 "lib"   usr/lib/x86_64-linux-gnu (budget LIB_MB uncompressed)
#   layer 2 "share" usr/share (budget SHARE_MB)
#   layer 3 "bin"   usr/bin usr/sbin usr/libexec usr/include (budget BIN_MB)
# plus a fourth layer (usr/lib again, other files) used only by the "large" tag.
# Entries are taken in sorted order until a layer's uncompressed budget is spent,
# so the image is about the same size on any Debian machine with enough in /usr.
#
# Tags in the layout:
#   small  = layer 1 only          (peak-memory comparison)
#   latest = layers 1-3            (the timed image, ~340 MB compressed)
#   large  = layers 1-4            (peak-memory comparison)
#
# Then, each RUNS times, with the page cache warm for every contender and the
# destination removed (and `sync`ed) before every run:
#   moat image pull --store EMPTY oci:IMAGE:latest
#   gzip -dc LAYER1; gzip -dc LAYER2; gzip -dc LAYER3   (> /dev/null, one after another)
#   tar -xzf LAYER1 -C NEW; tar -xzf LAYER2 -C NEW; tar -xzf LAYER3 -C NEW
# and once per tag, peak RSS of moat (/usr/bin/time -v) into an empty store.
#
# Usage: benchmarks/unpack.sh [--runs N] [--moat PATH] [--work DIR] [--dest DIR]
#                             [--settle SECONDS] [--rebuild] [--build-only] [--no-large]
#   --dest DIR     where the store and tar's output go (default: the work dir).
#                  On ext4 *without a journal* the kernel skips inodes freed in
#                  the last 60 s (300 s if not yet written back) when it
#                  allocates new ones (fs/ext4/ialloc.c recently_deleted()), so
#                  "remove, then unpack again" costs seconds of system time for
#                  moat and tar alike. Use a journaled ext4 (or tmpfs) there.
#   --settle S     sleep S seconds after each removal (for such filesystems)
#   --loop-ext4    (root) make a fresh 6 GB ext4 with a journal in a file in
#                  the work dir, loop-mount it and use it as --dest
# Environment: MOAT_BENCH_WORK (work dir, default /var/tmp/moat-bench; ~3 GB),
# LIB_MB SHARE_MB BIN_MB EXTRA_MB (layer budgets, MB of file data).
# Needs: GNU tar, gzip, pigz (only to build the image faster; all timed
# decompression is done by gzip, tar and moat), python3, /usr/bin/time.
# Nothing here is part of ctest: these are measurements, not assertions.
set -euo pipefail
export LC_ALL=C

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
RUNS=5
MOAT="$repo/build-bench/scanner/moat"
WORK="${MOAT_BENCH_WORK:-/var/tmp/moat-bench}"
REBUILD=0
DEST_DIR=""
SETTLE=0
LOOP=0
BUILD_ONLY=0
LARGE=1
LIB_MB=${LIB_MB:-305}
SHARE_MB=${SHARE_MB:-380}
BIN_MB=${BIN_MB:-330}
EXTRA_MB=${EXTRA_MB:-900}

while [[ $# -gt 0 ]]; do
  case "$1" in
    --runs) RUNS=$2; shift 2 ;;
    --moat) MOAT=$2; shift 2 ;;
    --work) WORK=$2; shift 2 ;;
    --rebuild) REBUILD=1; shift ;;
    --build-only) BUILD_ONLY=1; shift ;;
    --dest) DEST_DIR=$2; shift 2 ;;
    --settle) SETTLE=$2; shift 2 ;;
    --loop-ext4) LOOP=1; shift ;;
    --no-large) LARGE=0; shift ;;
    -h|--help) sed -n '2,42p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
done

for t in tar gzip pigz python3 /usr/bin/time "$MOAT"; do
  command -v "$t" >/dev/null || { echo "missing: $t (scripts/install-deps.sh; apt-get install pigz time)" >&2; exit 2; }
done

IMG="$WORK/image"
DEST_DIR=${DEST_DIR:-$WORK}
mkdir -p "$WORK"

# ---------------------------------------------------------------- the image --

# file_list OUT BUDGET_MB EXCLUDE_LIST DIR...: sorted entries under DIRs
# (relative to /), regular files counted against the budget, until it is spent.
file_list() {
  local out=$1 budget=$(( $2 * 1024 * 1024 )) exclude=$3
  shift 3
  # A hardlinked file is stored once in a tar, so it counts once (by inode).
  (cd / && find "$@" \( -type f -o -type d -o -type l \) -printf '%s\t%y\t%i\t%p\n' 2>/dev/null) \
    | sort -t $'\t' -k4,4 \
    | awk -F'\t' -v budget="$budget" -v excl="$exclude" '
        BEGIN { if (excl != "") while ((getline l < excl) > 0) skip[l] = 1 }
        ($4 in skip) { next }
        { if (used >= budget) next  # reads on to the end: no SIGPIPE for find and sort
          if ($2 == "f" && !($3 in seen)) { seen[$3] = 1; used += $1 }
          print $4 }' >"$out"
}

build_layer() {  # NAME LISTFILE
  local list=$2 tmp="$WORK/build/$1"
  # --no-recursion: exactly the listed entries; numeric owners as in an image.
  tar -C / --no-recursion --numeric-owner --verbatim-files-from -cf "$tmp.tar" -T "$list"
  sha256sum "$tmp.tar" | cut -d' ' -f1 >"$tmp.diffid"
  stat -c %s "$tmp.tar" >"$tmp.tarsize"
  pigz -6 -n -c "$tmp.tar" >"$tmp.tar.gz"
  rm -f "$tmp.tar"
}

build_image() {
  echo "== building the image in $IMG (once; --rebuild to redo)" >&2
  rm -rf "$IMG" "$WORK/build"
  mkdir -p "$WORK/build" "$IMG/blobs/sha256"
  local b="$WORK/build"
  : >"$b/none"
  file_list "$b/l1.list" "$LIB_MB" "$b/none" usr/lib/x86_64-linux-gnu
  file_list "$b/l2.list" "$SHARE_MB" "$b/none" usr/share
  file_list "$b/l3.list" "$BIN_MB" "$b/none" usr/bin usr/sbin usr/libexec usr/include
  file_list "$b/l4.list" "$EXTRA_MB" "$b/l1.list" usr/lib
  for l in l1 l2 l3 l4; do
    [[ $l == l4 && $LARGE == 0 ]] && continue
    echo "   layer $l: $(wc -l <"$b/$l.list") entries" >&2
    build_layer "$l" "$b/$l.list"
  done
  python3 - "$IMG" "$b" "$LARGE" <<'PY'
import hashlib, json, os, shutil, sys
img, build, large = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
blobs = os.path.join(img, "blobs", "sha256")

def put(data: bytes) -> str:
    h = hashlib.sha256(data).hexdigest()
    with open(os.path.join(blobs, h), "wb") as f:
        f.write(data)
    return h

def file_digest(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()

names = {"l1": "usr/lib/x86_64-linux-gnu", "l2": "usr/share", "l3": "usr/bin usr/sbin usr/libexec usr/include", "l4": "more of usr/lib"}
layers = []
for l in ["l1", "l2", "l3"] + (["l4"] if large else []):
    gz = os.path.join(build, l + ".tar.gz")
    d = file_digest(gz)
    size = os.path.getsize(gz)
    shutil.move(gz, os.path.join(blobs, d))
    diff = open(os.path.join(build, l + ".diffid")).read().strip()
    layers.append({"name": l, "digest": d, "size": size, "diff_id": diff, "what": names[l]})

def image(n, tag):
    ls = layers[:n]
    config = {
        "created": "2024-01-01T00:00:00Z",
        "architecture": "amd64",
        "os": "linux",
        "config": {"Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"], "Cmd": ["/bin/sh"]},
        "rootfs": {"type": "layers", "diff_ids": ["sha256:" + l["diff_id"] for l in ls]},
        "history": [{"created": "2024-01-01T00:00:00Z", "created_by": "moat benchmark: ADD " + l["what"] + " (" + l["name"] + ")"} for l in ls],
    }
    cb = json.dumps(config, indent=2, sort_keys=True).encode()
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": "sha256:" + put(cb), "size": len(cb)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": "sha256:" + l["digest"], "size": l["size"]} for l in ls],
    }
    mb = json.dumps(manifest, indent=2, sort_keys=True).encode()
    return {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": "sha256:" + put(mb), "size": len(mb),
            "annotations": {"org.opencontainers.image.ref.name": tag}}

manifests = [image(1, "small"), image(3, "latest")] + ([image(4, "large")] if large else [])
with open(os.path.join(img, "index.json"), "w") as f:
    json.dump({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": manifests}, f, indent=2)
with open(os.path.join(img, "oci-layout"), "w") as f:
    json.dump({"imageLayoutVersion": "1.0.0"}, f)
# Layer blob paths and sizes, in order, for the shell side.
with open(os.path.join(img, "..", "layers.tsv"), "w") as f:
    for l in layers:
        tar_size = open(os.path.join(build, l["name"] + ".tarsize")).read().strip()
        f.write(f'{l["name"]}\t{os.path.join(blobs, l["digest"])}\t{l["size"]}\t{tar_size}\n')
PY
  echo "$LIB_MB $SHARE_MB $BIN_MB $EXTRA_MB $LARGE" >"$WORK/image.stamp"
}

stamp="$LIB_MB $SHARE_MB $BIN_MB $EXTRA_MB $LARGE"
if [[ $REBUILD == 1 || ! -f "$IMG/index.json" || ! -f "$WORK/layers.tsv" || "$(cat "$WORK/image.stamp" 2>/dev/null)" != "$stamp" ]]; then
  build_image
fi
[[ $BUILD_ONLY == 1 ]] && { cat "$WORK/layers.tsv"; exit 0; }

mapfile -t BLOBS < <(head -n 3 "$WORK/layers.tsv" | cut -f2)
comp=$(head -n 3 "$WORK/layers.tsv" | awk -F'\t' '{s += $3} END {print s}')
uncomp=$(head -n 3 "$WORK/layers.tsv" | awk -F'\t' '{s += $4} END {print s}')

# ------------------------------------------------------------ measurements --

if [[ $LOOP == 1 ]]; then
  [[ $(id -u) == 0 ]] || { echo "--loop-ext4 needs root" >&2; exit 2; }
  DEST_DIR="$WORK/ext4"
  mountpoint -q "$DEST_DIR" && umount "$DEST_DIR"
  rm -f "$WORK/ext4.img"
  truncate -s 6G "$WORK/ext4.img"
  mkfs.ext4 -q -F "$WORK/ext4.img"
  mkdir -p "$DEST_DIR"
  mount -o loop "$WORK/ext4.img" "$DEST_DIR"
  trap 'umount "$DEST_DIR" 2>/dev/null; rm -f "$WORK/ext4.img"' EXIT
fi
STORE="$DEST_DIR/moat-bench-store"
TARDEST="$DEST_DIR/moat-bench-tar"
mkdir -p "$DEST_DIR"

clean() { rm -rf "$STORE" "$TARDEST"; sync; [[ $SETTLE == 0 ]] || sleep "$SETTLE"; }

# One command line per contender, run by bash under /usr/bin/time so that the
# CPU time of every child (tar's gzip) is counted.
blobs_q=$(printf '%q ' "${BLOBS[@]}")
cmd_moat="$(printf '%q' "$MOAT") image pull --quiet --store $(printf '%q' "$STORE") $(printf '%q' "oci:$IMG:latest") >/dev/null"
# shellcheck disable=SC2034  # cmd_* are read through ${!cmd} in timed()
cmd_gzip="for b in $blobs_q; do gzip -dc \"\$b\" >/dev/null; done"
cmd_tar="mkdir -p $(printf '%q' "$TARDEST") && for b in $blobs_q; do tar -xzf \"\$b\" -C $(printf '%q' "$TARDEST"); done"

declare -A wall cpu
timed() {  # WHAT -> appends wall and user+sys seconds
  local what=$1 cmd="cmd_$1" out="$WORK/time.run"
  /usr/bin/time -f '%e %U %S' -o "$out" bash -c "${!cmd}"
  read -r w u sy <"$out"
  wall[$what]+="$w "
  cpu[$what]+="$(echo "$u + $sy" | bc -l) "
  printf '   run %d %-4s wall %6.2f s  cpu %6.2f s (user %s sys %s)\n' "$i" "$what" "$w" "$(echo "$u + $sy" | bc -l)" "$u" "$sy" >&2
}

# Warm the page cache with the blobs and check every contender works once.
cat "${BLOBS[@]}" >/dev/null
i=0
clean; bash -c "$cmd_moat"; clean; bash -c "$cmd_tar"; clean
load_before=$(cut -d' ' -f1-3 /proc/loadavg)

for ((i = 1; i <= RUNS; i++)); do
  # Interleaved, so a slow moment of the machine hits everyone alike.
  for what in moat gzip tar; do
    clean
    timed "$what"
  done
done
clean
load_after=$(cut -d' ' -f1-3 /proc/loadavg)

stats() {  # prints "min median mean" of the numbers given
  printf '%s\n' "$@" | sort -g | awk '{a[NR] = $1; s += $1} END {
    m = (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2
    printf "%.2f %.2f %.2f", a[1], m, s / NR }'
}

peak() {  # TAG -> "maxrss_kB wall cpu"
  rm -rf "$STORE"; sync; [[ $SETTLE == 0 ]] || sleep "$SETTLE"
  local log="$WORK/time.$1.log"
  /usr/bin/time -v "$MOAT" image pull --quiet --store "$STORE" "oci:$IMG:$1" >/dev/null 2>"$log"
  awk -F': ' '/Maximum resident set size/ {r = $2} /Elapsed \(wall clock\)/ {w = $2}
              /User time/ {u = $2} /System time/ {s = $2} END {printf "%s %s %.2f", r, w, u + s}' "$log"
}

tag_sizes() {  # N -> "compressed uncompressed" MB of the first N layers
  head -n "$1" "$WORK/layers.tsv" | awk -F'\t' '{c += $3; u += $4} END {printf "%.0f %.0f", c / 1e6, u / 1e6}'
}

fsinfo() {
  local fs dev
  fs=$(df --output=fstype "$DEST_DIR" | tail -1)
  dev=$(df --output=source "$DEST_DIR" | tail -1)
  if [[ $fs == ext4 ]]; then
    if dumpe2fs -h "$dev" 2>/dev/null | grep -q has_journal; then fs="ext4 with journal"
    elif compgen -G "/proc/fs/jbd2/$(basename "$(readlink -f "$dev")")-*" >/dev/null; then fs="ext4 with journal"
    else fs="ext4, no journal"; fi
  fi
  echo "$fs ($dev)"
}

{
  echo "### Machine"
  echo
  echo "- nproc: $(nproc); CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'); kernel: $(uname -r); $(awk '/MemTotal/ {printf "%.0f GiB RAM", $2 / 1048576}' /proc/meminfo)"
  echo "- store and tar destination: $DEST_DIR on $(fsinfo)"
  echo "- load average (1/5/15 min) before the timed runs: $load_before; after: $load_after"
  echo "- $(gzip --version | head -1); $(tar --version | head -1); $("$MOAT" version 2>/dev/null | head -1)"
  echo
  echo "### Time: three-layer gzip image, $(echo "$comp / 1000000" | bc) MB compressed, $(echo "$uncomp / 1000000" | bc) MB of tar ($RUNS runs each, interleaved, page cache warm, empty destination)"
  echo
  echo "| what | wall min s | wall median s | wall mean s | CPU (user+sys) median s | MB/s compressed (wall median) |"
  echo "|---|---:|---:|---:|---:|---:|"
  for what in moat gzip tar; do
    read -r mn md mean <<<"$(stats ${wall[$what]})"
    read -r _ cmd _ <<<"$(stats ${cpu[$what]})"
    case $what in
      moat) label='`moat image pull` into an empty store' ;;
      gzip) label='`gzip -dc` of the 3 layers, one after another, to /dev/null' ;;
      tar) label='`tar -xzf` of the 3 layers, one after another, into an empty dir' ;;
    esac
    echo "| $label | $mn | $md | $mean | $cmd | $(echo "$comp / 1000000 / $md" | bc -l | xargs printf '%.0f') |"
  done
  echo
  echo "### Peak memory of \`moat image pull\` (empty store, /usr/bin/time -v)"
  echo
  echo "| tag | layers | MB compressed | MB tar | max RSS MB | wall | CPU s |"
  echo "|---|---:|---:|---:|---:|---:|---:|"
  for tag in small latest large; do
    case $tag in small) n=1 ;; latest) n=3 ;; large) n=4; [[ $LARGE == 1 ]] || continue ;; esac
    read -r rss w c <<<"$(peak $tag)"
    read -r mc mu <<<"$(tag_sizes $n)"
    echo "| $tag | $n | $mc | $mu | $(echo "$rss / 1024" | bc -l | xargs printf '%.1f') | $w | $c |"
  done
  rm -rf "$STORE"
} | tee "$WORK/results.md"
