#!/usr/bin/env bash
# Runs moat's libFuzzer targets (tests/fuzz/, docs/fuzzing.md).
#
#   scripts/fuzz.sh [TARGET|all] [SECONDS]   fuzz one target or each in turn (default: all, 60 s each)
#   scripts/fuzz.sh --smoke                  every target for a short time (CI: ctest fuzz.smoke)
#   scripts/fuzz.sh --list                   the target names
#
# Builds what is missing first: a clang build with -DMOAT_FUZZ=ON in
# $FUZZ_BUILD (default build-fuzz), the seed corpora (scripts/fuzz-corpus.sh)
# in $FUZZ_BUILD/corpus. New inputs go to $FUZZ_BUILD/work/TARGET, crashes,
# leaks, timeouts (an input taking longer than $FUZZ_TIMEOUT s, default 1) and
# out-of-memory inputs (over $FUZZ_RSS_MB, default 2048) to
# $FUZZ_BUILD/crashes/TARGET/, logs to $FUZZ_BUILD/logs/TARGET.log. The exit
# status is non-zero when any target found anything; copy the input to
# tests/fuzz/regressions/TARGET/ when fixing it (ctest replays that folder).
# $FUZZ_JOBS targets run side by side (default 1); everything runs under
# nice -n $FUZZ_NICE (default 10). $FUZZ_SEED fixes libFuzzer's -seed (--smoke
# uses 1 so CI repeats itself; otherwise libFuzzer takes one from the clock).
#
# Campaigns (docs/fuzzing.md): FUZZ_CLOCK=cpu makes SECONDS the fuzzer's own
# CPU seconds rather than wall time, FUZZ_MAX_EXECS=N stops a target after N
# executions, whichever comes first:
#   FUZZ_CLOCK=cpu FUZZ_MAX_EXECS=10000000 FUZZ_NICE=19 scripts/fuzz.sh all 3600
# Exits 77 when clang or its libFuzzer runtime is missing.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
B=${FUZZ_BUILD:-$ROOT/build-fuzz}
[[ $B = /* ]] || B=$ROOT/$B
TIMEOUT=${FUZZ_TIMEOUT:-1}
RSS=${FUZZ_RSS_MB:-2048}
JOBS=${FUZZ_JOBS:-1}
CLOCK=${FUZZ_CLOCK:-wall}       # cpu: SECONDS are the fuzzer's own CPU seconds (campaigns)
MAX_EXECS=${FUZZ_MAX_EXECS:-0}  # stop a target after this many executions (0: no limit)
NICE=${FUZZ_NICE:-10}
SEED=${FUZZ_SEED:-}             # libFuzzer's -seed (empty: libFuzzer picks one from the clock)

TARGETS=(unpack_tar unpack_compressed oci_layout docker_manifest image_archive dpkg apk rpm_header rpm_sqlite rpm_bdb rpm_ndb
         accounts moatignore secret_rules secret_scan small_formats
         registry_auth registry_manifest registries_conf cstorage_json tar_split trust_policy registries_d signature
         image_config)
dict_of() {
  case $1 in
    unpack_tar|unpack_compressed) echo tar ;;
    image_archive) echo tar json ;;
    oci_layout|docker_manifest|registry_manifest|image_config) echo json ;;
    registry_auth) echo registry ;;
    registries_conf) echo registries_conf ;;
    cstorage_json) echo cstorage ;;
    tar_split) echo tar_split ;;
    trust_policy|registries_d|signature) echo trust ;;
    dpkg|apk|accounts) echo packages ;;
    moatignore) echo ignore ;;
    secret_rules) echo rules ;;
    rpm_*) echo rpm ;;
  esac
}

target=${1:-all}
seconds=${2:-60}
case $target in
  --list) printf '%s\n' "${TARGETS[@]}"; exit 0 ;;
  # 23 targets x 7 s, two at a time: ~85 s, as 15 x 10 s were before the registry, store and trust targets.
  # A fixed seed: CI replays the same mutations on every submission, so a
  # smoke failure is a regression of this change, not the luck of the clock;
  # campaigns (random seeds) are where new inputs are found.
  --smoke) target=all; seconds=${FUZZ_SMOKE_SECONDS:-7}; JOBS=${FUZZ_JOBS:-2}; TIMEOUT=${FUZZ_TIMEOUT:-5}; SEED=${FUZZ_SEED:-1} ;;
  -h|--help) sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
esac
if [[ $target = all ]]; then
  run=("${TARGETS[@]}")
else
  printf '%s\n' "${TARGETS[@]}" | grep -qx "$target" || { echo "fuzz.sh: no target \"$target\" (scripts/fuzz.sh --list)" >&2; exit 2; }
  run=("$target")
fi

if ! command -v clang++ >/dev/null || ! ls /usr/lib/llvm-*/lib/clang/*/lib/linux/libclang_rt.fuzzer-x86_64.a >/dev/null 2>&1; then
  echo "fuzz.sh: clang with its libFuzzer runtime is not installed (apt-get install clang libclang-rt-14-dev): skipped" >&2
  exit 77
fi

# ---- build (incremental) ----
if [[ ! -f $B/build.ninja ]]; then
  # -O1 with line tables: what libFuzzer recommends, and quicker to build than -O2.
  CC=clang CXX=clang++ cmake -S "$ROOT" -B "$B" -G Ninja -DMOAT_FUZZ=ON -DMOAT_BUILD_TESTS=OFF \
    -DMOAT_BUILD_BENCHMARKS=OFF -DMOAT_WERROR=ON -DCMAKE_BUILD_TYPE=Fuzz \
    -DCMAKE_C_FLAGS="-O1 -gline-tables-only" -DCMAKE_CXX_FLAGS="-O1 -gline-tables-only" \
    $(command -v ccache >/dev/null && echo -DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_C_COMPILER_LAUNCHER=ccache) >/dev/null
fi
mkdir -p "$B/logs"
if ! nice ninja -C "$B" -j"${FUZZ_BUILD_JOBS:-$(nproc)}" fuzz_targets moat-fixture >"$B/logs/build.log" 2>&1; then
  echo "fuzz.sh: the clang build in $B failed (whole log: $B/logs/build.log):" >&2
  grep -E -A5 'error|FAILED' "$B/logs/build.log" | head -40 >&2
  exit 1
fi

# ---- seed corpora (regenerated when the script or the hand seeds change) ----
stamp=$(cat "$ROOT/scripts/fuzz-corpus.sh" | sha256sum | cut -c1-16)-$(find "$ROOT/tests/fuzz/seeds" -type f | sort | xargs cat | sha256sum | cut -c1-16)
if [[ ! -f $B/corpus/.stamp || $(cat "$B/corpus/.stamp") != "$stamp" ]]; then
  rm -rf "$B/corpus"
  ASAN_OPTIONS=detect_leaks=0 bash "$ROOT/scripts/fuzz-corpus.sh" "$B/tests/fixture/moat-fixture" "$B/corpus" >/dev/null
  echo "$stamp" >"$B/corpus/.stamp"
fi

# ---- run ----
# An input that timed out is a hang only if it times out again: replayed up
# to three times, each in a process of its own (a starved or paused run can
# miss the wall-clock limit once; a hang misses it every time). In a campaign
# (FUZZ_CLOCK=cpu, niced behind other work) a replay is judged by its own CPU
# time, as the campaign's budget is: a starved replay can miss the wall clock
# three times however fast the input is. It may take 20 times the limit in
# wall time and passes when it exits 0 having used less than the limit in CPU
# seconds; a real hang either spins (CPU) or blocks (the wall limit).
replays_in_time() {
  local i cpu
  for i in 1 2 3; do
    if [[ $CLOCK = cpu ]]; then
      # `times` prints the shell's, then its children's user and system time ("0m0.120s 0m0.040s").
      cpu=$(cd "$B" && bash -c '"$@" >/dev/null 2>&1 || exit 1; times | tail -1' _ \
              "$B/tests/fuzz/fuzz_$1" -runs=1 -timeout=$((TIMEOUT * 20)) "$2") || continue
      awk -v t="$TIMEOUT" '{ s = 0; for (i = 1; i <= 2; i++) { split($i, a, /[ms]/); s += a[1] * 60 + a[2] }
                            exit !(s < t) }' <<<"$cpu" && return 0
    else
      (cd "$B" && "$B/tests/fuzz/fuzz_$1" -runs=1 -timeout="$TIMEOUT" "$2") >/dev/null 2>&1 && return 0
    fi
  done
  return 1
}
mkdir -p "$B/logs" "$B/dict"
fuzz_one() {
  local t=$1 secs=$2
  local crashes=$B/crashes/$t/ work=$B/work/$t dict=()
  mkdir -p "$crashes" "$work"
  local d
  d=$(dict_of "$t")
  if [[ -n $d ]]; then
    (for x in $d; do cat "$ROOT/tests/fuzz/dict/$x.dict"; done) >"$B/dict/$t.dict"
    dict=(-dict="$B/dict/$t.dict")
  fi
  local dirs=("$work" "$B/corpus/$t")
  [[ -d $ROOT/tests/fuzz/regressions/$t ]] && dirs+=("$ROOT/tests/fuzz/regressions/$t")
  # A timeout on this shared machine can be load (or a paused run), not a
  # hang: an input that timed out (timeout-*, slow-unit-*) is replayed; when
  # it then runs within the limit it is moved to crashes/T/unreproduced/ and
  # fuzzing goes on for the time left.
  local left=$secs execs=0 rc n t0 art cpu_total=0 start=$SECONDS
  : >"$B/logs/$t.log"
  while ((left > 0)); do
    rc=0 t0=$SECONDS
    ls "$crashes" | sort >"$B/logs/$t.before"
    local limit=(-max_total_time="$left")
    [[ $CLOCK = cpu ]] && limit=(-max_total_time=$((left * 100)))
    ((MAX_EXECS > 0)) && limit+=(-runs=$((MAX_EXECS - execs)))
    [[ -n $SEED ]] && limit+=(-seed="$SEED")
    (cd "$B" && exec nice -n "$NICE" "$B/tests/fuzz/fuzz_$t" "${limit[@]}" -timeout="$TIMEOUT" \
        -rss_limit_mb="$RSS" -max_len=65536 -print_final_stats=1 -artifact_prefix="$crashes" "${dict[@]}" "${dirs[@]}") \
        >>"$B/logs/$t.log" 2>&1 &
    local pid=$! used=0
    if [[ $CLOCK = cpu ]]; then
      # Budget in CPU seconds of the fuzzer itself, so a campaign niced
      # behind other work still gets its full hour; SIGINT makes libFuzzer
      # print its final stats and exit 72.
      while kill -0 "$pid" 2>/dev/null; do
        sleep 2
        used=$(awk -v hz="$(getconf CLK_TCK)" '{printf "%d", ($14 + $15) / hz}' "/proc/$pid/stat" 2>/dev/null || echo "$used")
        ((used >= left)) && kill -INT "$pid" 2>/dev/null && break
      done
    fi
    wait "$pid" || rc=$?
    [[ $rc -eq 72 ]] && rc=0
    n=$(grep -o 'stat::number_of_executed_units: [0-9]*' "$B/logs/$t.log" | tail -1 | awk '{print $2}')
    execs=$((execs + ${n:-0}))
    if [[ $CLOCK = cpu ]]; then left=$((left - used)); cpu_total=$((cpu_total + used))
    else left=$((left - (SECONDS - t0))); fi
    ((MAX_EXECS > 0 && execs >= MAX_EXECS)) && left=0
    art=$(ls "$crashes" | sort | comm -13 "$B/logs/$t.before" - | head -1)
    [[ $rc -eq 0 && -z $art ]] && continue
    if [[ $art == timeout-* || $art == slow-unit-* ]] && replays_in_time "$t" "$crashes/$art"; then
      mkdir -p "$crashes/unreproduced"
      mv "$crashes/$art" "$crashes/unreproduced/"
      echo "note $t: $art took over ${TIMEOUT} s once but not when replayed (machine load): kept in $crashes/unreproduced/"
      continue
    fi
    echo "FAIL $t: ${execs} executions in $((secs - left)) s, exit $rc, finding $crashes$art (log: $B/logs/$t.log)"
    # The report with its first stacks (a CI log is all there may be of it).
    sed -n '/ERROR\|invariant/,$p' "$B/logs/$t.log" | grep -vE '^(INFO|MS|artifact_prefix|Base64|stat::)' | head -40 | sed 's/^/    /'
    return 1
  done
  if [[ $CLOCK = cpu ]]; then
    echo "ok   $t: ${execs} executions in ${cpu_total} s of CPU, corpus $(ls "$work" | wc -l) inputs"
  else
    echo "ok   $t: ${execs} executions in $((SECONDS - start)) s, corpus $(ls "$work" | wc -l) inputs"
  fi
}
export -f fuzz_one dict_of replays_in_time
export B ROOT TIMEOUT RSS CLOCK MAX_EXECS NICE SEED
printf '%s\n' "${run[@]}" | xargs -P "$JOBS" -I{} bash -c 'fuzz_one "$1" "$2"' _ {} "$seconds"
