#!/usr/bin/env bash
# benchmarks/trust.sh [--runs N]: the cost of a trust decision on a GPG-signed
# dir: image, moat against skopeo, interleaved run by run.
#   moat verify --policy P dir:IMG              (policy, keyring, gpg verify)
#   skopeo copy --policy P dir:IMG dir:OUT      (the same decision, plus a copy
#                                                of a 1-layer image of a few KB)
#   gpg --verify of the same signature          (the floor: one gpg process)
# Everything lives in a temporary directory on /dev/shm (tmpfs) when present.
# Prints a table of median wall times. Never run by ctest.
set -euo pipefail
RUNS=20
[[ ${1:-} == --runs ]] && RUNS=$2
MOAT=${MOAT:-$(cd "$(dirname "$0")/.." && pwd)/build/scanner/moat}
for t in gpg skopeo umoci python3; do command -v $t >/dev/null || { echo "trust.sh: $t missing" >&2; exit 1; }; done
base=/dev/shm
[[ -d $base && -w $base ]] || base=/tmp
W=$(mktemp -d "$base/moat-trust-bench.XXXXXX")
trap 'gpgconf --homedir "$W/gnupg" --kill all 2>/dev/null || true; rm -rf "$W"' EXIT
export GNUPGHOME=$W/gnupg TMPDIR=$W
mkdir -m 700 "$GNUPGHOME"
gpg --batch --passphrase '' --quick-gen-key "Bench <bench@moat.test>" ed25519 sign never 2>/dev/null
FPR=$(gpg --with-colons --list-keys bench@moat.test | awk -F: '/^fpr/{print $10; exit}')
gpg --armor --export "$FPR" >"$W/key.asc"
umoci init --layout "$W/L" >/dev/null
umoci new --image "$W/L:t" >/dev/null
umoci unpack --image "$W/L:t" "$W/B" >/dev/null 2>&1
echo hello >"$W/B/rootfs/hello"
umoci repack --image "$W/L:t" "$W/B" >/dev/null
skopeo copy -q "oci:$W/L:t" "dir:$W/img"
skopeo standalone-sign "$W/img/manifest.json" registry.moat.test/app:1 "$FPR" -o "$W/img/signature-1"
cat >"$W/policy.json" <<EOF
{"default": [{"type": "reject"}], "transports": {"dir": {"$W": [{"type": "signedBy", "keyType": "GPGKeys",
 "keyPath": "$W/key.asc", "signedIdentity": {"type": "exactReference", "dockerReference": "registry.moat.test/app:1"}}]}}}
EOF
ms() { python3 -c 'import time; print(time.monotonic_ns()//1000000)'; }
declare -A T
for ((i = 0; i < RUNS; i++)); do
  t0=$(ms); "$MOAT" verify --policy "$W/policy.json" "dir:$W/img" >/dev/null; t1=$(ms)
  T[moat]+="$((t1 - t0)) "
  rm -rf "$W/out"
  t0=$(ms); skopeo copy -q --policy "$W/policy.json" "dir:$W/img" "dir:$W/out"; t1=$(ms)
  T[skopeo]+="$((t1 - t0)) "
  t0=$(ms); gpg --batch -q --verify "$W/img/signature-1" 2>/dev/null; t1=$(ms)
  T[gpg]+="$((t1 - t0)) "
done
median() { tr ' ' '\n' | grep -v '^$' | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
echo "| contender | median wall ms ($RUNS runs, tmpfs) |"
echo "|---|---|"
echo "| moat verify (decision) | $(echo "${T[moat]}" | median) |"
echo "| skopeo copy --policy (decision + copy of a tiny image) | $(echo "${T[skopeo]}" | median) |"
echo "| gpg --verify (one signature, user keyring) | $(echo "${T[gpg]}" | median) |"
