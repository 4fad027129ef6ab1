#!/usr/bin/env bash
# The check run of `moat scan` against the tools everyone already trusts:
#   1. walk + every filesystem check on a ~35k-entry Debian tree
#      vs `find TREE -perm /6000` (the store's diff dir and the original tree)
#   2. integrity hashing (dpkg md5sums) vs `md5sum -c` over the same lists
#   3. the secrets done-when: a full secret scan (all rules, cache deleted)
#      vs `grep -rIl LITERAL` over the same files; and secrets_scan_tree's
#      rule-count curve (10 / 100 / all rules) on that tree
#
# Inputs, built once under the work dir (root: the trees keep their owners):
#   minbase/  the debootstrap minbase tree of tests/scan/make-debian-image.sh
#             (/var/cache/moat-tests/debian-bookworm-minbase-amd64.tar.zst),
#             tidied as the official images are (/dev emptied, apt lists and
#             caches, resolv.conf and hostname removed)
#   tree/     minbase plus parts of this machine's /usr, each in sorted order
#             until its budget is spent (files minbase already has are kept):
#               usr/lib/x86_64-linux-gnu  LIB_MB   (shared libraries: binary)
#               usr/include               INCLUDE_MB (headers: text)
#               usr/lib/python3.11 usr/lib/python3  PYTHON_MB
#               usr/share/doc             DOC_MB
#               usr/share/perl            PERL_MB
#             plus the dpkg records (status, info/*) of every host package
#             that now has a file there other than its docs, then man pages
#             from usr/share/man until the tree holds ENTRIES entries
#   layout/   an OCI layout with tags `minbase` and `tree`, one uncompressed
#             layer each (GNU tar, numeric owners, xattrs)
#   store/    both images pulled (`moat image pull oci:layout:TAG`)
# The images are pulled from an OCI layout, not `dir:`: `moat scan dir:TREE`
# imports (copies and hashes) the whole tree again on every scan before it
# finds the layer in the store, which would be timed with the checks.
#
# Then, each RUNS times, interleaved, with the page cache warm (DIFF is the
# tree's layer in the store, store/layers/<hex>/diff):
#   1. moat scan oci:layout:tree --checks FS_CHECKS (overlay, userspace),
#      without integrity, setuid,setgid only, config only (the fixed cost);
#      find DIFF -perm /6000; find tree -perm /6000
#   2. moat scan --checks integrity (and config) of minbase and tree;
#      (cd minbase|tree && cat var/lib/dpkg/info/*.md5sums | md5sum -c --quiet --ignore-missing)
#   3. moat scan oci:layout:tree --checks secret, the layer's secrets-*.json
#      deleted first, then again cached; grep -rIl LITERAL DIFF; grep -rl LITERAL DIFF;
#      secrets_scan_tree --rules 10|100|all [--threads 2] DIFF
# Every run is timed by /usr/bin/time (wall, user+sys, max RSS); the tables
# give min and median. The log on stderr has every run with the load average;
# the tables are also written to WORK/results.md.
#
# Usage: benchmarks/scan.sh [--runs N] [--moat PATH] [--scan-tree PATH]
#                           [--work DIR] [--rebuild] [--build-only] [--only 1,2,3]
#                           [--autogroup-nice N]
#   --autogroup-nice N  write N (e.g. -10) to /proc/self/autogroup first: with
#                  autogroup scheduling (the kernel's default) a `nice 19` build
#                  in another session still takes half the CPU from this one
# Environment: MOAT_BENCH_SCAN_WORK (work dir, default /var/tmp/moat-bench-scan;
# ~3 GB), LIB_MB INCLUDE_MB PYTHON_MB DOC_MB PERL_MB ENTRIES (the tree).
# Needs: root, GNU tar, zstd, python3, bc, /usr/bin/time, md5sum, grep, find.
# Nothing here is part of ctest: these are measurements, not assertions.
set -euo pipefail
export LC_ALL=C

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
RUNS=5
MOAT="$repo/build-bench/scanner/moat"
SCAN_TREE=""
WORK="${MOAT_BENCH_SCAN_WORK:-/var/tmp/moat-bench-scan}"
REBUILD=0
BUILD_ONLY=0
ONLY="1,2,3"
AUTOGROUP_NICE=""
LIB_MB=${LIB_MB:-260}
INCLUDE_MB=${INCLUDE_MB:-140}
PYTHON_MB=${PYTHON_MB:-110}
DOC_MB=${DOC_MB:-60}
PERL_MB=${PERL_MB:-25}
ENTRIES=${ENTRIES:-35000}
MINBASE_TAR=${MINBASE_TAR:-/var/cache/moat-tests/debian-bookworm-minbase-amd64.tar.zst}
LITERAL=AKIAQWERTYMOATBENCH
FS_CHECKS=setuid,setgid,capability,permission,ownership,device,account,integrity,sensitive-file,config

while [[ $# -gt 0 ]]; do
  case "$1" in
    --runs) RUNS=$2; shift 2 ;;
    --moat) MOAT=$2; shift 2 ;;
    --scan-tree) SCAN_TREE=$2; shift 2 ;;
    --work) WORK=$2; shift 2 ;;
    --rebuild) REBUILD=1; shift ;;
    --build-only) BUILD_ONLY=1; shift ;;
    --only) ONLY=$2; shift 2 ;;
    --autogroup-nice) AUTOGROUP_NICE=$2; shift 2 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d'; exit 0 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
done
[[ -n $SCAN_TREE ]] || SCAN_TREE="$(dirname "$(dirname "$MOAT")")/benchmarks/secrets/secrets_scan_tree"

[[ $(id -u) == 0 ]] || { echo "scan.sh needs root (the trees keep their owners, as in an image)" >&2; exit 2; }
for t in tar zstd python3 bc /usr/bin/time md5sum grep find "$MOAT"; do
  command -v "$t" >/dev/null || { echo "missing: $t" >&2; exit 2; }
done
[[ -f $MINBASE_TAR ]] || { echo "missing $MINBASE_TAR: run tests/scan/make-debian-image.sh once (it makes it)" >&2; exit 2; }

MINBASE="$WORK/minbase"
TREE="$WORK/tree"
LAYOUT="$WORK/layout"
STORE="$WORK/store"
mkdir -p "$WORK"

# ----------------------------------------------------------------- inputs --

# list_part OUT BUDGET_MB DIR...: entries under DIRs (relative to /) in sorted
# order, regular files counted against the budget until it is spent.
list_part() {
  local out=$1 budget=$(( $2 * 1000 * 1000 ))
  shift 2
  (cd / && find "$@" \( -type f -o -type d -o -type l \) -printf '%s\t%y\t%i\t%p\n' 2>/dev/null) \
    | sort -t $'\t' -k4,4 \
    | awk -F'\t' -v budget="$budget" '
        { if (used >= budget) next
          if ($2 == "f" && !($3 in seen)) { seen[$3] = 1; used += $1 }
          print $4 }' >"$out"
}

# add_part LIST: copies the listed host entries into the tree; what the tree
# already has (minbase's own files) stays as it is.
add_part() {
  tar -C / --no-recursion --numeric-owner --xattrs --xattrs-include='*' --verbatim-files-from -cf - -T "$1" \
    | tar -C "$TREE" --numeric-owner --same-owner --xattrs --xattrs-include='*' --keep-directory-symlink \
        --skip-old-files -xpf -
}

count_entries() { find "$1" -mindepth 1 | wc -l; }

# make_layer TREE NAME: an uncompressed tar layer of TREE, entries without "./".
make_layer() {
  (cd "$1" && find . -mindepth 1 -printf '%P\n' | sort) >"$WORK/build/$2.list"
  tar -C "$1" --no-recursion --numeric-owner --xattrs --xattrs-include='*' --verbatim-files-from \
    -cf "$WORK/build/$2.tar" -T "$WORK/build/$2.list"
}

build_inputs() {
  echo "== building the inputs in $WORK (once; --rebuild to redo)" >&2
  rm -rf "$MINBASE" "$TREE" "$LAYOUT" "$STORE" "$WORK/build"
  mkdir -p "$WORK/build" "$MINBASE"
  tar -C "$MINBASE" --numeric-owner --xattrs --xattrs-include='*' --acls --same-owner --zstd -xpf "$MINBASE_TAR"
  find "$MINBASE/dev" -mindepth 1 -delete
  rm -rf "$MINBASE"/var/cache/apt/archives/*.deb "$MINBASE"/var/cache/apt/*.bin "$MINBASE"/var/lib/apt/lists/*
  mkdir -p "$MINBASE/var/lib/apt/lists/partial"
  rm -f "$MINBASE/etc/resolv.conf" "$MINBASE/etc/hostname"
  echo "   minbase: $(count_entries "$MINBASE") entries" >&2

  mkdir -p "$TREE"
  tar -C "$MINBASE" --numeric-owner --xattrs --xattrs-include='*' -cf - . \
    | tar -C "$TREE" --numeric-owner --same-owner --xattrs --xattrs-include='*' -xpf -
  local b="$WORK/build"
  list_part "$b/lib.list" "$LIB_MB" usr/lib/x86_64-linux-gnu
  list_part "$b/include.list" "$INCLUDE_MB" usr/include
  list_part "$b/python.list" "$PYTHON_MB" usr/lib/python3.11 usr/lib/python3
  list_part "$b/doc.list" "$DOC_MB" usr/share/doc
  list_part "$b/perl.list" "$PERL_MB" usr/share/perl
  for p in lib include python doc perl; do
    add_part "$b/$p.list"
    echo "   + $p: tree now $(count_entries "$TREE") entries, $(du -sm "$TREE" | cut -f1) MB" >&2
  done
  # The dpkg records (status stanza, info/*) of every host package that now
  # has a file in the tree (other than its docs), so the tree is an image of
  # those packages, trimmed to the budgets (as images with dpkg path-excludes
  # are: md5sums list files that are not there).
  python3 - "$TREE" "$MINBASE" "$b" <<'PY'
import os, shutil, stat, sys
tree, minbase, build = sys.argv[1:4]

def stanzas(path):
    cur = []
    for line in open(path, encoding="utf-8", errors="surrogateescape"):
        if line.strip() == "":
            if cur: yield "".join(cur)
            cur = []
        else:
            cur.append(line)
    if cur: yield "".join(cur)

def field(st, name):
    for line in st.splitlines():
        if line.startswith(name + ":"):
            return line.split(":", 1)[1].strip()
    return ""

def in_tree(path):  # a host path as the tree holds it (merged /usr: lib -> usr/lib)
    rel = path.lstrip("/")
    for d in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):
        if rel == d or rel.startswith(d + "/"):
            rel = "usr/" + rel
    return rel

have = {field(s, "Package") for s in stanzas(os.path.join(minbase, "var/lib/dpkg/status"))}
copied = set()
for part in ("lib", "include", "python", "doc", "perl", "man"):
    lst = os.path.join(build, part + ".list")
    if os.path.exists(lst):
        copied.update(l.rstrip("\n") for l in open(lst, encoding="utf-8", errors="surrogateescape"))
info = "/var/lib/dpkg/info"
added = []
for st in stanzas("/var/lib/dpkg/status"):
    pkg, arch = field(st, "Package"), field(st, "Architecture")
    if pkg in have or not field(st, "Status").endswith(" installed"):
        continue
    names = [f"{pkg}:{arch}", pkg]
    lst = next((os.path.join(info, n + ".list") for n in names if os.path.exists(os.path.join(info, n + ".list"))), None)
    if not lst:
        continue
    owned = False
    for p in open(lst, encoding="utf-8", errors="surrogateescape"):
        rel = in_tree(p.rstrip("\n"))
        if rel in copied and not rel.startswith(("usr/share/doc/", "usr/share/man/")) and \
                not os.path.isdir(os.path.join(tree, rel)):
            owned = True
            break
    if not owned:
        continue
    prefix = os.path.basename(lst)[:-len(".list")]
    for f in os.listdir(info):
        if f.startswith(prefix + "."):
            shutil.copy2(os.path.join(info, f), os.path.join(tree, "var/lib/dpkg/info", f))
    added.append(st)
with open(os.path.join(tree, "var/lib/dpkg/status"), "a", encoding="utf-8", errors="surrogateescape") as f:
    for st in added:
        f.write("\n" + st.rstrip("\n") + "\n")
print(f"   + dpkg records of {len(added)} host packages with files in the tree", file=sys.stderr)
PY
  # Top up with man pages (small files, one directory at a time) to ENTRIES.
  local have want
  have=$(count_entries "$TREE")
  want=$(( ENTRIES - have ))
  if (( want > 0 )); then
    (cd / && find usr/share/man -mindepth 1 \( -type f -o -type d -o -type l \) 2>/dev/null | sort) >"$b/man.all"
    # Only entries the tree lacks count; parents come first in sorted order.
    (cd "$TREE" && while IFS= read -r p; do [[ -e $p || -L $p ]] || printf '%s\n' "$p"; done <"$b/man.all") \
      >"$b/man.new"
    head -n "$want" "$b/man.new" >"$b/man.list"
    add_part "$b/man.list"
  fi
  echo "   tree: $(count_entries "$TREE") entries, $(du -sm "$TREE" | cut -f1) MB" >&2

  make_layer "$MINBASE" minbase
  make_layer "$TREE" tree
  mkdir -p "$LAYOUT/blobs/sha256"
  python3 - "$LAYOUT" "$b" <<'PY'
import hashlib, json, os, shutil, sys
layout, build = sys.argv[1], sys.argv[2]
blobs = os.path.join(layout, "blobs", "sha256")

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

manifests = []
for tag, what in (("minbase", "debootstrap --variant=minbase bookworm"),
                  ("tree", "minbase + parts of the host's /usr (moat benchmarks/scan.sh)")):
    tar = os.path.join(build, tag + ".tar")
    d = file_digest(tar)
    size = os.path.getsize(tar)
    shutil.move(tar, os.path.join(blobs, d))
    config = {
        "created": "2024-01-01T00:00:00Z", "architecture": "amd64", "os": "linux",
        "config": {"Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"], "Cmd": ["/bin/bash"]},
        "rootfs": {"type": "layers", "diff_ids": ["sha256:" + d]},
        "history": [{"created": "2024-01-01T00:00:00Z", "created_by": what}],
    }
    cb = json.dumps(config, indent=2, sort_keys=True).encode()
    manifest = {
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": "sha256:" + put(cb), "size": len(cb)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": "sha256:" + d, "size": size}],
    }
    mb = json.dumps(manifest, indent=2, sort_keys=True).encode()
    manifests.append({"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": "sha256:" + put(mb),
                      "size": len(mb), "annotations": {"org.opencontainers.image.ref.name": tag}})
    with open(os.path.join(build, tag + ".diffid"), "w") as f:
        f.write(d + "\n")
with open(os.path.join(layout, "index.json"), "w") as f:
    json.dump({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": manifests}, f, indent=2)
with open(os.path.join(layout, "oci-layout"), "w") as f:
    json.dump({"imageLayoutVersion": "1.0.0"}, f)
PY
  "$MOAT" image pull --quiet --store "$STORE" "oci:$LAYOUT:minbase" >/dev/null
  "$MOAT" image pull --quiet --store "$STORE" "oci:$LAYOUT:tree" >/dev/null
  echo "$LIB_MB $INCLUDE_MB $PYTHON_MB $DOC_MB $PERL_MB $ENTRIES" >"$WORK/inputs.stamp"
}

stamp="$LIB_MB $INCLUDE_MB $PYTHON_MB $DOC_MB $PERL_MB $ENTRIES"
if [[ $REBUILD == 1 || ! -f "$LAYOUT/index.json" || ! -d "$STORE" || "$(cat "$WORK/inputs.stamp" 2>/dev/null)" != "$stamp" ]]; then
  build_inputs
fi
[[ $BUILD_ONLY == 1 ]] && exit 0

# ------------------------------------------------------------ measurements --

if [[ -n $AUTOGROUP_NICE ]]; then
  # Under autogroup scheduling (the kernel default), "nice 19" work of another
  # session still gets half the CPU against this one; this lowers the weight
  # of everything else instead (only this session's own group is changed).
  echo "$AUTOGROUP_NICE" >/proc/self/autogroup
fi

layer_of() {  # TAG -> the layer's directory in the store
  local id
  id=$(python3 -c 'import json,sys; m=[x for x in json.load(open(sys.argv[1]))["manifests"] if x["annotations"]["org.opencontainers.image.ref.name"]==sys.argv[2]][0]; d=json.load(open(sys.argv[3]+"/blobs/sha256/"+m["digest"][7:]))["layers"][0]["digest"][7:]; print(d)' \
    "$LAYOUT/index.json" "$1" "$LAYOUT")
  echo "$STORE/layers/$id"
}
TREE_LAYER=$(layer_of tree)
MINBASE_LAYER=$(layer_of minbase)
DIFF="$TREE_LAYER/diff"
[[ -d $DIFF && -d $MINBASE_LAYER/diff ]] || { echo "the store lacks the layers: run with --rebuild" >&2; exit 2; }

# What the images hold (regular files counted once per inode, as a layer
# stores a hardlink once; "binary" = holds a NUL byte, as the engine decides).
tree_facts() {
  python3 - "$1" <<'PY'
import os, stat, sys
root = sys.argv[1]
seen = set(); entries = files = binfiles = 0; size = binsize = 0
for dp, dns, fns in os.walk(root):
    entries += len(dns) + len(fns)
    for f in fns:
        st = os.lstat(os.path.join(dp, f))
        if not stat.S_ISREG(st.st_mode) or (st.st_dev, st.st_ino) in seen:
            continue
        seen.add((st.st_dev, st.st_ino))
        files += 1; size += st.st_size
        with open(os.path.join(dp, f), "rb") as fh:
            while True:
                b = fh.read(1 << 20)
                if not b: break
                if b"\0" in b:
                    binfiles += 1; binsize += st.st_size; break
print(entries, files, size, binfiles, binsize)
PY
}

# md5sums coverage: files of the tree with a recorded md5 and their bytes.
md5_facts() {
  python3 - "$1" <<'PY'
import glob, os, sys
root = sys.argv[1]
n = size = 0
for f in glob.glob(os.path.join(root, "var/lib/dpkg/info/*.md5sums")):
    for line in open(f, "rb"):
        parts = line.rstrip(b"\n").split(b"  ", 1)
        if len(parts) != 2: continue
        p = os.path.join(root.encode(), parts[1])
        # md5sum -c resolves the tree's own (relative) symlinks: /lib -> usr/lib
        if os.path.isfile(p):
            n += 1; size += os.path.getsize(p)
print(n, size)
PY
}

warm() { find "$WORK/tree" "$WORK/minbase" "$STORE/layers" -type f -print0 | xargs -0 cat >/dev/null 2>&1 || true; }

# timed NAME CMD...: one run under /usr/bin/time (through bash, so children
# count); appends wall, user+sys and max RSS to the NAME's lists.
declare -A WALL CPU RSS
timed() {
  local name=$1 out="$WORK/time.run"
  shift
  /usr/bin/time -f '%e %U %S %M' -o "$out" bash -c "$*" >/dev/null 2>"$WORK/time.err" || true
  local w u s m
  read -r w u s m < <(tail -n 1 "$out")
  [[ $w =~ ^[0-9.]+$ ]] || { echo "failed: $*" >&2; cat "$WORK/time.err" >&2; exit 1; }
  WALL[$name]+="$w "
  CPU[$name]+="$(echo "$u + $s" | bc -l) "
  RSS[$name]+="$m "
  printf '   %-22s wall %6.2f s  cpu %6.2f s  rss %7.1f MB  load %s\n' "$name" "$w" "$(echo "$u + $s" | bc -l)" \
    "$(echo "$m / 1024" | bc -l)" "$(cut -d' ' -f1 /proc/loadavg)" >&2
}
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR] = $1} END {m = (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2; printf "%.2f", m}'; }
minimum() { printf '%s\n' "$@" | sort -g | head -n 1 | xargs printf '%.2f'; }
row() {  # NAME LABEL [MB for a MB/s column]
  local w c r
  w=$(median ${WALL[$1]}); c=$(median ${CPU[$1]}); r=$(median ${RSS[$1]})
  printf '| %s | %s | %s | %s | %.1f |' "$2" "$(minimum ${WALL[$1]})" "$w" "$c" "$(echo "$r / 1024" | bc -l)"
  [[ -n ${3:-} ]] && printf ' %.0f |' "$(echo "$3 / $w" | bc -l)"
  echo
}
load() { cut -d' ' -f1-3 /proc/loadavg; }

M=$(printf '%q' "$MOAT")
scan() {  # TAG CHECKS [MODE]: the command line of one moat scan
  printf '%s scan %q --store %q --checks %q --mount %s --format json --fail-on none -q -o /dev/null' \
    "$M" "oci:$LAYOUT:$1" "$STORE" "$2" "${3:-overlay}"
}
FS_NO_INTEGRITY=${FS_CHECKS/integrity,/}

results="$WORK/results.md"
: >"$results"
out() { tee -a "$results"; }

{
  echo "### Machine"
  echo
  echo "- nproc: $(nproc); CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'); kernel: $(uname -r); $(awk '/MemTotal/ {printf "%.0f GiB RAM", $2 / 1048576}' /proc/meminfo)"
  echo "- $("$MOAT" version 2>/dev/null | head -1); $(grep --version | head -1); $(md5sum --version | head -1); $(find --version | head -1)"
  echo "- work dir $WORK on $(df --output=fstype "$WORK" | tail -1); $RUNS runs of each, interleaved, page cache warm"
  [[ -n $AUTOGROUP_NICE ]] && echo "- this session's autogroup nice: $AUTOGROUP_NICE"
  read -r e f s bf bs <<<"$(tree_facts "$DIFF")"
  echo "- \`tree\` image: $e entries, $f regular files (one per inode), $(echo "$s / 1000000" | bc) MB of file data; $bf files ($(echo "$bs / 1000000" | bc) MB, $(echo "100 * $bs / $s" | bc)% of the bytes) hold a NUL byte (binary); $(grep -c '^Package:' "$WORK/tree/var/lib/dpkg/status") packages in its dpkg status"
  read -r e f s bf bs <<<"$(tree_facts "$MINBASE_LAYER/diff")"
  echo "- \`minbase\` image: $e entries, $f regular files, $(echo "$s / 1000000" | bc) MB of file data, $(grep -c '^Package:' "$WORK/minbase/var/lib/dpkg/status") packages"
  echo
} | out

warm
# Every command once, untimed (and the secret engine's database compiled into the store's cache).
for c in "$(scan tree "$FS_CHECKS")" "$(scan tree secret)" "$(scan minbase integrity)"; do bash -c "$c" >/dev/null || true; done

if [[ $ONLY == *1* ]]; then
  echo "== 1. walk + filesystem checks vs find -perm /6000" >&2
  l0=$(load)
  for ((i = 1; i <= RUNS; i++)); do
    timed fs_overlay "$(scan tree "$FS_CHECKS")"
    timed fs_userspace "$(scan tree "$FS_CHECKS" userspace)"
    timed fs_noint "$(scan tree "$FS_NO_INTEGRITY")"
    timed suid "$(scan tree setuid,setgid)"
    timed config "$(scan tree config)"
    timed config_us "$(scan tree config userspace)"
    timed find_store "find $(printf '%q' "$DIFF") -perm /6000"
    timed find_tree "find $(printf '%q' "$WORK/tree") -perm /6000"
  done
  l1=$(load)
  nfind=$(find "$DIFF" -perm /6000 | wc -l)
  nmoat=$(bash -c "${M} scan $(printf '%q' "oci:$LAYOUT:tree") --store $(printf '%q' "$STORE") --checks setuid,setgid --format json --fail-on none -q" | python3 -c 'import json,sys; print(len([f for f in json.load(sys.stdin)["findings"] if f.get("path")]))')
  {
    echo "### 1. Walk + every filesystem check, \`tree\` image ($(wc -l <"$TREE_LAYER/index.tsv") entries), load average $l0 before, $l1 after"
    echo
    echo "| what | wall min s | wall median s | CPU (user+sys) median s | max RSS MB |"
    echo "|---|---:|---:|---:|---:|"
    row fs_overlay "\`moat scan --checks $FS_CHECKS\` (overlay)"
    row fs_userspace "the same, \`--mount userspace\`"
    row fs_noint "the same without \`integrity\` (overlay)"
    row suid "\`moat scan --checks setuid,setgid\` (overlay; $nmoat findings)"
    row config "\`moat scan --checks config\` (overlay: pull check, mount, walk, view, databases, report)"
    row config_us "\`moat scan --checks config --mount userspace\` (no walk)"
    row find_store "\`find STORE/layers/<id>/diff -perm /6000\` ($nfind files)"
    row find_tree "\`find tree -perm /6000\` (the original tree)"
    echo
  } | out
fi

if [[ $ONLY == *2* ]]; then
  echo "== 2. integrity hashing vs md5sum -c" >&2
  l0=$(load)
  for ((i = 1; i <= RUNS; i++)); do
    timed int_minbase "$(scan minbase integrity)"
    timed cfg_minbase "$(scan minbase config)"
    timed md5_minbase "cd $(printf '%q' "$WORK/minbase") && cat var/lib/dpkg/info/*.md5sums | md5sum -c --quiet --ignore-missing"
    timed int_tree "$(scan tree integrity)"
    timed md5_tree "cd $(printf '%q' "$WORK/tree") && cat var/lib/dpkg/info/*.md5sums | md5sum -c --quiet --ignore-missing"
  done
  l1=$(load)
  read -r nm bm <<<"$(md5_facts "$WORK/minbase")"
  read -r nt bt <<<"$(md5_facts "$WORK/tree")"
  {
    echo "### 2. Integrity hashing (dpkg md5sums), load average $l0 before, $l1 after"
    echo
    echo "Hashed: \`minbase\` $nm files, $(echo "$bm / 1000000" | bc) MB; \`tree\` $nt files, $(echo "$bt / 1000000" | bc) MB (files of the image with a recorded md5)."
    echo
    echo "| what | wall min s | wall median s | CPU (user+sys) median s | max RSS MB | MB hashed/s (wall median) |"
    echo "|---|---:|---:|---:|---:|---:|"
    row int_minbase "\`moat scan --checks integrity\` \`minbase\`" "$(echo "$bm / 1000000" | bc -l)"
    row cfg_minbase "\`moat scan --checks config\` \`minbase\` (the fixed cost)"
    row md5_minbase "\`cat var/lib/dpkg/info/*.md5sums \| md5sum -c --quiet --ignore-missing\` in \`minbase\`" "$(echo "$bm / 1000000" | bc -l)"
    row int_tree "\`moat scan --checks integrity\` \`tree\`" "$(echo "$bt / 1000000" | bc -l)"
    row md5_tree "\`... \| md5sum -c --quiet --ignore-missing\` in \`tree\`" "$(echo "$bt / 1000000" | bc -l)"
    echo
  } | out
fi

if [[ $ONLY == *3* ]]; then
  echo "== 3. secrets vs grep -rIl" >&2
  l0=$(load)
  for ((i = 1; i <= RUNS; i++)); do
    rm -f "$TREE_LAYER"/secrets-*.json
    timed secret_nocache "$(scan tree secret)"
    timed secret_cached "$(scan tree secret)"
    timed grep_rIl "grep -rIl $LITERAL $(printf '%q' "$DIFF")"
    timed grep_rl "grep -rl $LITERAL $(printf '%q' "$DIFF")"
  done
  l1=$(load)
  nsec=$(bash -c "${M} scan $(printf '%q' "oci:$LAYOUT:tree") --store $(printf '%q' "$STORE") --checks secret --format json --fail-on none -q" | python3 -c 'import json,sys; print(len([f for f in json.load(sys.stdin)["findings"] if f.get("path")]))')
  read -r _ _ s _ _ <<<"$(tree_facts "$DIFF")"
  mb=$(echo "$s / 1000000" | bc -l)
  gw=$(median ${WALL[grep_rIl]}); nw=$(median ${WALL[secret_nocache]}); cw=$(median ${WALL[secret_cached]})
  {
    echo "### 3. Secrets: \`tree\` image, all rules, load average $l0 before, $l1 after"
    echo
    echo "| what | wall min s | wall median s | CPU (user+sys) median s | max RSS MB | MB/s (wall median) |"
    echo "|---|---:|---:|---:|---:|---:|"
    row secret_nocache "\`moat scan --checks secret\`, per-layer cache deleted ($nsec findings)" "$mb"
    row secret_cached "the same, cached (a rescan)"
    row grep_rIl "\`grep -rIl $LITERAL DIFF\` (stops reading a binary file at its first NUL)" "$mb"
    row grep_rl "\`grep -rl $LITERAL DIFF\` (reads binaries too)" "$mb"
    echo
    printf 'Done-when ratio (wall medians): moat %.2f s / grep -rIl %.2f s = **%.2fx** (limit 2x); the scan phase alone (uncached minus cached) %.2f s = %.2fx.\n' \
      "$nw" "$gw" "$(echo "$nw / $gw" | bc -l)" "$(echo "$nw - $cw" | bc -l)" "$(echo "($nw - $cw) / $gw" | bc -l)"
    echo
  } | out

  if [[ -x $SCAN_TREE ]]; then
    echo "== 3b. secrets_scan_tree rule-count curve" >&2
    mkdir -p "$WORK/hsdb"
    declare -A ST
    for n in 10 100 all; do "$SCAN_TREE" --cache "$WORK/hsdb" --rules "$n" "$DIFF" >/dev/null; done  # compile once
    for ((i = 1; i <= RUNS; i++)); do
      for spec in "10 1" "100 1" "all 1" "all 2"; do
        read -r n t <<<"$spec"
        line=$("$SCAN_TREE" --cache "$WORK/hsdb" --rules "$n" --threads "$t" "$DIFF" | head -n 1)
        ST[$n.$t]+="$line"$'\n'
        echo "   $line" >&2
      done
    done
    {
      echo "\`secrets_scan_tree --rules N --threads T DIFF\` (every path, so the 13 hardlinks of one Mesa driver are scanned 13 times; median of $RUNS by CPU time):"
      echo
      echo "| rules | threads | bytes | wall s | CPU s | MB/s (wall) | MB/s per CPU second | findings |"
      echo "|---:|---:|---:|---:|---:|---:|---:|---:|"
      for spec in "10 1" "100 1" "all 1" "all 2"; do
        read -r n t <<<"$spec"
        printf '%s' "${ST[$n.$t]}" | sed -n 's/.*rules=\([0-9]*\) threads=\([0-9]*\).* bytes=\([0-9]*\) seconds=\([0-9.]*\) cpu_seconds=\([0-9.]*\) MB\/s=\([0-9]*\) MB\/s\/cpu=\([0-9]*\).*findings=\([0-9]*\).*/\5 \1 \2 \3 \4 \6 \7 \8/p' \
          | sort -g | awk -v runs="$RUNS" 'NR == int((runs + 1) / 2) {printf "| %s | %s | %s | %s | %s | %s | %s | %s |\n", $2, $3, $4, $5, $1, $6, $7, $8}'
      done
      echo
    } | out
  fi
fi
echo "results: $results" >&2
