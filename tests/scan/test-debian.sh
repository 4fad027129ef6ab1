#!/usr/bin/env bash
# The clean Debian image: moat's findings on a real, pristine Debian 12
# (debootstrap --variant=minbase bookworm, made an OCI image by umoci; see
# make-debian-image.sh) agree with what root sees in the same tree.
# Scanned as moat-subuid (subordinate ids) and as moat-single (no range):
#  - exit 0 with the default --fail-on high, the JSON report validates, it
#    says rootless with the user's id mapping and has no errors;
#  - the setuid findings are exactly `find ROOTFS -type f -perm -4000`, the
#    setgid findings exactly `find ROOTFS -type f -perm -2000` (one finding
#    per bit and file), each with the file's owner and mode, the package
#    `dpkg -S` names (merged /usr: dpkg knows /bin/su, the image has
#    /usr/bin/su) and severity low or info;
#  - no finding is critical or high, and none is about a secret, integrity,
#    ownership, a device, a permission or a sensitive file: a pristine
#    Debian has none (every finding is printed to stderr, for the log);
#  - both users get identical findings (fingerprints included);
#  - `--format table` exits 0 and names every setuid/setgid file.
# Time: ~45 s the first time (debootstrap ~30-35 s, cached in $MOAT_TEST_CACHE,
# default /var/cache/moat-tests), then ~13 s (extract + repack ~6 s, 3 scans).
# Without debootstrap or the Debian mirror: skipped (77), never passed.
source "$(dirname "$0")/lib.sh"
need umoci tar zstd dpkg find stat

D=$W/pub/debian
R=$D/rootfs
IMG=oci:$D/layout:bookworm
t0=$SECONDS
rc=0
bash "$SCAN_DIR/make-debian-image.sh" "$D" || rc=$?
[[ $rc -eq 77 ]] && skip "no Debian image (message above)"
[[ $rc -eq 0 ]] || fail "make-debian-image.sh exited $rc"
note "Debian image built in $((SECONDS - t0)) s"

# ---- the reference, from root's view of the tree --------------------------
# find_bit PERM: absolute paths of the regular files with that bit, sorted.
find_bit() { (cd "$R" && find . -type f -perm "$1" -printf '/%P\n' | LC_ALL=C sort); }
find_bit -4000 >"$W/want.setuid"
find_bit -2000 >"$W/want.setgid"
[[ -s $W/want.setuid && -s $W/want.setgid ]] ||
  fail "the reference found no setuid or no setgid file in $R: the image is not a Debian minbase"

# dpkg_owner PATH: the package(s) dpkg says own PATH in the image ("a, b"),
# trying the /bin spelling of a /usr/bin path (Debian 12 packages list
# /bin/su, merged /usr puts it at /usr/bin/su). Empty when none.
dpkg_owner() {
  local p=$1 alt="" line
  [[ $p =~ ^/usr/(bin|sbin|lib|lib32|lib64|libx32)/ ]] && alt=${p#/usr}
  for q in "$p" $alt; do
    line=$(dpkg --root="$R" -S "$q" 2>/dev/null | grep -v '^diversion ' | grep -F ": $q" | head -n1) || true
    [[ -n $line ]] && { echo "${line%%: /*}"; return; }
  done
}

# ---- the scans --------------------------------------------------------------
# findings_tsv REPORT: one finding a line, for logs and diffs.
findings_tsv() {
  jq -r '.findings[] | [.rule_id, .category, .severity, (.path // .config_field),
         (.package // "-"), (.mode // "-")] | @tsv' "$1"
}

check_report() {  # USER REPORT MAPPING
  local u=$1 rep=$2 mapping=$3
  validate_report "$rep"
  note "$u: $(jq -c .summary "$rep"), findings:"
  findings_tsv "$rep" | sed 's/^/    /' >&2
  [[ $(jq -r '"\(.scan.rootless) \(.scan.id_mapping)"' "$rep") == "true $mapping" ]] ||
    fail "$u: the report says scan $(jq -c '.scan|{rootless,id_mapping}' "$rep"), expected rootless with $mapping"
  [[ $(jq '.image.layers | length' "$rep") -eq 1 ]] || fail "$u: the report does not list the image's one layer"
  # A clean image scans cleanly: an error means part of it went unchecked.
  [[ $(jq '.errors | length' "$rep") -eq 0 ]] ||
    { jq -r '.errors[] | "  " + .' "$rep" >&2; fail "$u: the report has errors (above)"; }

  # Setuid and setgid findings: exactly root's find, per bit.
  local bit
  for bit in setuid setgid; do
    jq -r --arg c "$bit" '.findings[] | select(.category == $c) | .path' "$rep" | LC_ALL=C sort >"$W/got.$bit"
    if ! cmp -s "$W/want.$bit" "$W/got.$bit"; then
      echo "--- $bit files: < find -perm (expected), > moat's $bit findings (got)" >&2
      diff "$W/want.$bit" "$W/got.$bit" >&2 || true
      fail "$u: the $bit findings are not the image's $bit files"
    fi
  done

  # Each: the package dpkg names, the file's owner and mode, low or info.
  local bad=0 path cat pkg sev uid gid mode want_pkg st
  while IFS=$'\t' read -r path cat pkg sev uid gid mode; do
    want_pkg=$(dpkg_owner "$path")
    if [[ -z $want_pkg ]]; then
      echo "  $cat $path: dpkg -S knows no package for it (reference broken?)" >&2; bad=1
    # dpkg names Multi-Arch: same packages pkg:arch; accept the bare name too.
    elif ! [[ ", $want_pkg, " == *", $pkg, "* || ", $want_pkg, " == *", $pkg:"* ]]; then
      echo "  $cat $path: package expected '$want_pkg' (dpkg -S), got '$pkg'" >&2; bad=1
    fi
    [[ $sev == low || $sev == info ]] || { echo "  $cat $path: severity $sev, expected low or info" >&2; bad=1; }
    st=$(stat -c '%u %g %04a' "$R$path" 2>&1) || st="(no such file in the rootfs)"
    [[ "$uid $gid $mode" == "$st" ]] ||
      { echo "  $cat $path: owner/mode expected '$st' (stat), got '$uid $gid $mode'" >&2; bad=1; }
  done < <(jq -r '.findings[] | select(.category == "setuid" or .category == "setgid")
                  | [.path, .category, (.package // "null"), .severity,
                     (.owner.uid // "null"), (.owner.gid // "null"), (.mode // "null")] | @tsv' "$rep")
  [[ $bad -eq 0 ]] || fail "$u: setuid/setgid findings disagree with dpkg and stat (above)"

  # Nothing serious, and nothing a pristine Debian cannot have.
  local serious
  serious=$(jq -r '.findings[] | select(.severity == "critical" or .severity == "high")
                   | "  \(.rule_id) \(.severity) \(.path // .config_field)"' "$rep")
  [[ -z $serious ]] || { echo "$serious" >&2; fail "$u: critical/high findings on a clean Debian (above)"; }
  [[ $(jq '.summary.critical + .summary.high' "$rep") -eq 0 ]] || fail "$u: the summary counts critical/high findings"
  serious=$(jq -r '.findings[]
                   | select(.category | IN("secret", "integrity", "ownership", "device", "permission", "sensitive-file"))
                   | "  \(.rule_id) \(.category) \(.severity) \(.path // .config_field)"' "$rep")
  [[ -z $serious ]] || { echo "$serious" >&2; fail "$u: findings a pristine Debian cannot have (above)"; }
}

declare -A MAPPING=([moat-subuid]=subuid [moat-single]=single)
for u in moat-subuid moat-single; do
  rep=$W/users/$u.report.json
  t0=$SECONDS
  scan_as "$u" 0 "$IMG" --format json -o "$rep"
  note "$u: scan (pull, unpack, checks) took $((SECONDS - t0)) s"
  [[ -s $rep ]] || fail "$u: no report in $rep"
  check_report "$u" "$rep" "${MAPPING[$u]}"
done

note "moat-subuid and moat-single find the same"
jq -S .findings "$W/users/moat-subuid.report.json" >"$W/findings.subuid"
jq -S .findings "$W/users/moat-single.report.json" >"$W/findings.single"
if ! cmp -s "$W/findings.subuid" "$W/findings.single"; then
  diff -u "$W/findings.subuid" "$W/findings.single" >&2 || true
  fail "moat-subuid and moat-single reports have different findings"
fi

note "table format"
scan_as moat-subuid 0 "$IMG" --format table
missing=$(cat "$W/want.setuid" "$W/want.setgid" | while read -r p; do grep -qwF -- "$p" "$W/out" || echo "  $p"; done)
[[ -z $missing ]] || { echo "$missing" >&2; cat "$W/out" >&2; fail "the table does not name these setuid/setgid files"; }
echo "PASS: $TEST_NAME"
