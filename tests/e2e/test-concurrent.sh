#!/usr/bin/env bash
# Several moat processes on one store at once.
#  1. Two `moat image pull` of the same 3-layer ~280 MB image, started together
#     (three rounds, fresh store each; in one a `moat scan` races the pull):
#     both exit 0 with the same id, each layer
#     is unpacked by exactly one of them (the -v counts add up), exists once,
#     matches its index, tmp/ is empty, the image record is whole.
#  2. Four different images sharing a base layer, pulled at once: every layer
#     once, the base unpacked once.
#  3. `moat image prune` started while a pull is unpacking waits for it and
#     removes nothing the pulled image uses.
#  4. Eight `moat scan`s of overlapping images (sharing base layers) on one
#     fresh store at once, as CI runners sharing a cache do: every one exits 0
#     with a JSON report identical (apart from scan.duration_ms) to a clean
#     scan of the same image on a private store; the store is whole after.
#     CONCURRENT_BIG=1 (scripts/torture.sh) puts :big among them; LOCK_TRACE=1
#     (also torture.sh) straces them and checks no lock wait lasted longer
#     than the slowest layer unpack of the run (lock_waits.py).
source "$(dirname "$0")/lib.sh"
need skopeo python3
need_images
L=$IMAGES/layout

check_store() {  # STORE NLAYERS: the store is whole
  local s=$1 n=$2 d
  [[ $(ls "$s/layers" | wc -l) -eq $n ]] || fail "$s: $(ls "$s/layers" | wc -l) layers, expected $n"
  [[ -z $(ls -A "$s/tmp") ]] || fail "$s: tmp/ is not empty: $(ls -A "$s/tmp")"
  for d in "$s"/layers/*; do
    py check-store-layer "$s" "sha256:$(basename "$d")" >/dev/null || fail "layer $d is damaged"
  done
  for f in "$s"/images/*.json; do
    python3 -c 'import json,sys; j=json.load(open(sys.argv[1])); assert j["layers"] and all(l["tar_size"] > 0 for l in j["layers"]), j' "$f" ||
      fail "image record $f is damaged"
  done
}

# counts "N layers unpacked, M reused" over the given stderr files
sum_counts() {
  cat "$@" | sed -n 's/.*moat: \([0-9]*\) layers unpacked, \([0-9]*\) reused.*/\1 \2/p' |
    awk '{u+=$1; r+=$2} END {print u+0, r+0}'
}

big_ids=$(skopeo_diffids "oci:$L:big")
for round in 1 2 3; do
  note "round $round: two pulls of :big at once"
  S=$WORK/store$round
  "$MOAT" image pull -v --store "$S" "oci:$L:big" >"$WORK/a.out" 2>"$WORK/a.err" & pa=$!; BG_PIDS+=("$pa")
  if [[ $round -eq 2 ]]; then  # a scan pulls too
    "$MOAT" scan --fail-on none -v --format json --store "$S" "oci:$L:big" >"$WORK/b.json" 2>"$WORK/b.err" & pb=$!; BG_PIDS+=("$pb")
  else
    "$MOAT" image pull -v --store "$S" "oci:$L:big" >"$WORK/b.out" 2>"$WORK/b.err" & pb=$!; BG_PIDS+=("$pb")
  fi
  ra=0; wait $pa || ra=$?
  rb=0; wait $pb || rb=$?
  [[ $ra -eq 0 && $rb -eq 0 ]] || { cat "$WORK/a.err" "$WORK/b.err" >&2; fail "round $round: exit statuses $ra and $rb"; }
  [[ $round -ne 2 ]] || py json image.config_digest <"$WORK/b.json" | sed 's/^sha256://' >"$WORK/b.out"
  [[ $(cat "$WORK/a.out") == $(cat "$WORK/b.out") ]] || fail "round $round: the two pulls printed different ids"
  read -r unpacked reused < <(sum_counts "$WORK/a.err" "$WORK/b.err")
  [[ $unpacked -eq 3 && $reused -eq 3 ]] || { cat "$WORK/a.err" "$WORK/b.err" >&2;
    fail "round $round: $unpacked layers unpacked and $reused reused in all; each layer must be unpacked exactly once"; }
  check_store "$S" 3
  [[ $(ls "$S/images") == "$(cat "$WORK/a.out").json" ]] || fail "round $round: images/ holds $(ls "$S/images")"
  run_moat 0 scan --fail-on none --format json --store "$S" "oci:$L:big"
  got=$(py json image.layers <"$WORK/out" | python3 -c 'import json,sys; [print(json.loads(l)["diff_id"]) for l in sys.stdin]')
  [[ $got == "$big_ids" ]] || fail "round $round: scan reports other diffIDs"
  chmod -R u+rwx "$S"; rm -rf "$S"
done

note "four images sharing a base layer, at once"
S=$WORK/shared
imgs=("oci:$L:big" "oci:$L:t" "oci:$L:other")
[[ -f $IMAGES/buildah.tar ]] && imgs+=("oci-archive:$IMAGES/buildah.tar")
declare -A all_ids=()
pids=()
for i in "${!imgs[@]}"; do
  for d in $(skopeo_diffids "${imgs[$i]}"); do all_ids[$d]=1; done
  "$MOAT" image pull -v --store "$S" "${imgs[$i]}" >"$WORK/p$i.out" 2>"$WORK/p$i.err" & pids+=("$!"); BG_PIDS+=("$!")
done
for i in "${!pids[@]}"; do
  rc=0; wait "${pids[$i]}" || rc=$?
  [[ $rc -eq 0 ]] || { cat "$WORK/p$i.err" >&2; fail "pull of ${imgs[$i]} exited $rc"; }
done
total=0
for i in "${!imgs[@]}"; do total=$((total + $(skopeo_diffids "${imgs[$i]}" | wc -l))); done
read -r unpacked reused < <(sum_counts "$WORK"/p*.err)
[[ $unpacked -eq ${#all_ids[@]} && $((unpacked + reused)) -eq $total ]] || { cat "$WORK"/p*.err >&2;
  fail "$unpacked unpacked + $reused reused; expected ${#all_ids[@]} distinct layers each unpacked once, $total in all"; }
check_store "$S" ${#all_ids[@]}
[[ $(ls "$S/images" | wc -l) -eq ${#imgs[@]} ]] || fail "expected ${#imgs[@]} image records: $(ls "$S/images")"
run_moat 0 image ls --json --store "$S"
python3 - "$WORK/out" <<'EOF' || fail "image ls --json after concurrent pulls"
import json, sys
j = json.load(open(sys.argv[1]))
used = {}
for i in j["images"]:
    for l in set(i["layers"]):
        used[l] = used.get(l, 0) + 1
for l in j["layers"]:
    assert l["used_by"] == used.get(l["diff_id"], 0), l
assert max(used.values()) >= 3, used  # the base layer is shared
EOF

note "prune while a pull unpacks"
S=$WORK/prune
"$MOAT" image pull --store "$S" "oci:$L:big" >"$WORK/a.out" 2>"$WORK/a.err" & pa=$!; BG_PIDS+=("$pa")
for _ in $(seq 2000); do [[ -n $(ls -A "$S/tmp" 2>/dev/null) ]] && break; sleep 0.002; done
run_moat 0 image prune --store "$S"
grep -q '^0 layers removed' "$WORK/out" || fail "prune during a pull removed layers: $(cat "$WORK/out")"
ra=0; wait $pa || ra=$?
[[ $ra -eq 0 ]] || { cat "$WORK/a.err" >&2; fail "the pull exited $ra while prune ran"; }
check_store "$S" 3
run_moat 0 image pull -v --store "$S" "oci:$L:big"
expect_err "0 layers unpacked, 3 reused"
note "eight scans of overlapping images at once"
norm() { python3 -c 'import json,sys; j=json.load(sys.stdin); j["scan"].pop("duration_ms",None); print(json.dumps(j,sort_keys=True))'; }
imgs=("oci:$L:t" "oci:$L:other" "oci:$L:v1" "oci:$L:v2" "oci:$L:t" "oci:$L:other" "oci:$L:v2" "oci:$L:v1")
[[ -f $IMAGES/buildah.tar ]] && imgs[7]="oci-archive:$IMAGES/buildah.tar"
[[ ${CONCURRENT_BIG:-0} = 1 ]] && imgs[6]="oci:$L:big"
declare -A want=()
for img in "${imgs[@]}"; do
  [[ -n ${want[$img]:-} ]] && continue
  run_moat 0 scan --fail-on none --format json --store "$WORK/ref-store" "$img"
  want[$img]=$(norm <"$WORK/out")
done
S=$WORK/eight
pids=()
# LOCK_TRACE=1 (scripts/torture.sh): strace each scan's lock and unpack calls
# and compare the longest lock wait with the slowest unpack (lock_waits.py).
trace=()
[[ ${LOCK_TRACE:-0} = 1 ]] && need strace
for i in "${!imgs[@]}"; do
  [[ ${LOCK_TRACE:-0} = 1 ]] &&
    trace=(strace -f -tt -T -y --seccomp-bpf -e trace=flock,mkdirat,rename,renameat,renameat2 -o "$WORK/trace$i")
  "${trace[@]}" "$MOAT" scan --fail-on none --format json --store "$S" "${imgs[$i]}" >"$WORK/s$i.json" 2>"$WORK/s$i.err" & pids+=("$!"); BG_PIDS+=("$!")
done
for i in "${!pids[@]}"; do
  rc=0; wait "${pids[$i]}" || rc=$?
  [[ $rc -eq 0 ]] || { cat "$WORK/s$i.err" >&2; fail "concurrent scan $i of ${imgs[$i]} exited $rc"; }
  [[ $(norm <"$WORK/s$i.json") == "${want[${imgs[$i]}]}" ]] || fail "concurrent scan $i of ${imgs[$i]}: report differs from a clean scan"
  [[ ! -s $WORK/s$i.err ]] || { cat "$WORK/s$i.err" >&2; fail "concurrent scan $i wrote to stderr"; }
done
distinct=$(for img in "${!want[@]}"; do skopeo_diffids "$img"; done | sort -u | wc -l)
check_store "$S" "$distinct"
if [[ ${LOCK_TRACE:-0} = 1 ]]; then
  python3 "$E2E_DIR/lock_waits.py" "$WORK"/trace* || { cp "$WORK"/trace* /tmp/ 2>/dev/null; fail "a scan waited for a lock longer than the slowest unpack took"; }
fi
echo "PASS: $TEST_NAME"
