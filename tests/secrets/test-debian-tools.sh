#!/usr/bin/env bash
# Secret precision on a real image: Debian 12 minbase with python3, git and
# openssh-server (debootstrap --include, made an OCI image by umoci; see
# tests/scan/make-debian-image.sh). What the distribution ships must not fail
# the default gate:
#  - the only high or critical secret findings are the three SSH host keys
#    openssh-server's postinst generated (/etc/ssh/ssh_host_{rsa,ecdsa,ed25519}_key):
#    one private-key.openssh finding each, whose message also says sensitive
#    file, and no separate sensitive-ssh-key finding for them;
#  - every other secret finding is info and names its package (a match in an
#    unchanged package file: urllib's docstring, git's test .netrc), or is the
#    .pyc compiled from such a file;
#  - the JSON report has no errors.
#   bash test-debian-tools.sh MOAT_BINARY
# Needs root (debootstrap) and the Debian mirror; otherwise skipped (77).
# Time: ~60 s the first time (debootstrap, cached in $MOAT_TEST_CACHE), then
# ~15 s (extract, repack, one scan).
set -euo pipefail
MOAT=${1:?usage: $0 MOAT_BINARY}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
TEST_NAME=secrets.debian-tools
source "$HERE/../lib/common.sh"
[[ $(id -u) -eq 0 ]] || skip "needs root (debootstrap)"
need jq umoci

W=$(mktemp -d /tmp/moat-secrets-debian.XXXXXX)
trap 'rm -rf "$W"' EXIT
rc=0
bash "$HERE/../scan/make-debian-image.sh" "$W/debian" python3,git,openssh-server || rc=$?
[[ $rc -eq 77 ]] && skip "no Debian image (message above)"
[[ $rc -eq 0 ]] || fail "make-debian-image.sh exited $rc"
for k in rsa ecdsa ed25519; do
  [[ -s $W/debian/rootfs/etc/ssh/ssh_host_${k}_key ]] || fail "openssh-server made no $k host key: the image is not what this test needs"
done

rc=0
"$MOAT" scan --store "$W/store" "oci:$W/debian/layout:bookworm" --format json -o "$W/report.json" -q || rc=$?
[[ $rc -eq 1 ]] || fail "moat scan exited $rc, expected 1 (the host keys are critical)"
jq -r '.findings[] | select(.category == "secret" or .category == "sensitive-file") |
       [.severity, .rule_id, (.path // .config_field), (.package // "-")] | @tsv' "$W/report.json" |
  sed 's/^/    /' >&2
[[ $(jq '.errors | length' "$W/report.json") -eq 0 ]] || { jq -r '.errors[]' "$W/report.json" >&2; fail "the report has errors"; }

high=$(jq -r '.findings[] | select((.category == "secret" or .category == "sensitive-file")
              and (.severity == "high" or .severity == "critical")) | "\(.rule_id) \(.path)"' "$W/report.json" | sort)
want=$(printf '%s\n' "private-key.openssh /etc/ssh/ssh_host_ecdsa_key" "private-key.openssh /etc/ssh/ssh_host_ed25519_key" \
  "private-key.openssh /etc/ssh/ssh_host_rsa_key")
[[ $high == "$want" ]] || { diff <(echo "$want") <(echo "$high") >&2 || true; fail "high/critical secret findings are not exactly the three host keys"; }
n=$(jq '[.findings[] | select(.rule_id | startswith("private-key.")) | select(.message | contains("also a sensitive file"))] | length' "$W/report.json")
[[ $n -eq 3 ]] || fail "$n of 3 host key findings say they are also a sensitive file"
n=$(jq '[.findings[] | select(.rule_id == "sensitive-ssh-key")] | length' "$W/report.json")
[[ $n -eq 0 ]] || fail "$n separate sensitive-ssh-key findings: a host key must be one finding"
bad=$(jq -r '.findings[] | select(.category == "secret" and (.rule_id | startswith("private-key.") | not)) |
             select(.severity != "info" or ((.package // "") == "" and (.message | contains("compiled from") | not))) |
             "\(.severity) \(.rule_id) \(.path)"' "$W/report.json")
[[ -z $bad ]] || { echo "$bad" >&2; fail "secret findings in distribution files that are not info with their package (above)"; }
n=$(jq '[.findings[] | select(.category == "secret" and .severity == "info")] | length' "$W/report.json")
[[ $n -ge 2 ]] || fail "only $n info secret findings: urllib's docstring password and git's test .netrc should be there"
echo "PASS: secrets.debian-tools ($n package-material findings at info)"
