#!/usr/bin/env bash
# `moat scan dir:TREE` of an unpacked tree scans it in place (scanner/session/inplace.h):
#  - nothing is copied into the store (its layers/ stays empty);
#  - the report says so (scan.mode "in-place") and validates against the schema;
#  - owners are those on disk (a file chowned to 4321:4322 is reported so);
#  - setuid files, hardlinks and secrets are found in the tree itself;
#  - symlinks are never followed: a symlink to a host file holding a secret,
#    and a symlinked directory leading out of the tree, add no finding, and
#    the host file is never opened (its atime-independent proof: it is mode
#    0600 root-owned, so a scan as moat-subuid that tried to read it through
#    the link would report an unreadable-file error naming it).
# Runs as root (the tree keeps its owners) and as moat-subuid.
source "$(dirname "$0")/lib.sh"

T=$W/pub/tree
mkdir -p "$T/etc" "$T/usr/bin" "$T/app/data"
echo 'root:x:0:0:root:/root:/bin/sh' >"$T/etc/passwd"
echo 'root:x:0:' >"$T/etc/group"
cp /bin/true "$T/usr/bin/su"
chmod 4755 "$T/usr/bin/su"
tok="ghp_MoatFake""0123456789abcdefghijklmnopqr"
printf 'token=%s\n' "$tok" >"$T/app/data/config"
chown 4321:4322 "$T/app/data/config"
ln "$T/app/data/config" "$T/app/data/config-hardlink"
# Outside the tree: a host file with a different secret, reachable only through symlinks.
OUT=$W/outside
mkdir -m 0755 "$OUT"
printf 'token=%s\n' "ghp_MoatFake""OUTSIDEoutsideOUTSIDEoutsid" >"$OUT/host-secret"
chmod 0600 "$OUT/host-secret"
ln -s "$OUT/host-secret" "$T/app/link-to-host-file"
ln -s "$OUT" "$T/app/link-to-host-dir"
ln -s ../../../../../../../.. "$T/app/link-up"
chmod -R a+rX "$T"

for who in root moat-subuid; do
  note "in-place scan as $who"
  store="$W/users/$who.store"
  if [[ $who == root ]]; then
    rc=0
    "$W/moat" scan --store "$store" -f json -o "$W/users/report-$who.json" "dir:$T" 2>"$W/err" || rc=$?
    [[ $rc -eq 1 ]] || { cat "$W/err" >&2; fail "as root: exit $rc, expected 1 (findings)"; }
  else
    scan_as "$who" 1 -f json -o "$W/users/report-$who.json" "dir:$T"
  fi
  R=$W/users/report-$who.json
  validate_report "$R"
  [[ $(jq -r .scan.mode "$R") == in-place ]] || fail "$who: scan.mode is $(jq -r .scan.mode "$R"), not in-place"
  n=$(find "$store/layers" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l)
  [[ $n -eq 0 ]] || fail "$who: the tree was copied into the store ($n layer dirs)"
  jq -e '.findings[] | select(.rule_id == "setuid-unpackaged" and .path == "/usr/bin/su")' "$R" >/dev/null ||
    fail "$who: setuid /usr/bin/su not reported"
  jq -e '.findings[] | select(.rule_id == "github.pat.classic" and .path == "/app/data/config" and .owner.uid == 4321 and .owner.gid == 4322)' "$R" >/dev/null ||
    { jq '.findings[] | select(.rule_id == "github.pat.classic")' "$R" >&2; fail "$who: the secret or its on-disk owner 4321:4322 is not reported"; }
  n=$(jq '[.findings[] | select(.rule_id == "github.pat.classic")] | length' "$R")
  [[ $n -eq 1 ]] || fail "$who: $n github.pat.classic findings, expected 1 (the hardlink is the same file; the host's is outside)"
  jq -e '[.findings[], .errors[]] | tostring | test("OUTSIDE|outside|host-secret|link-to")' "$R" >/dev/null &&
    fail "$who: something outside the tree was read or reported: $(jq -c '[.findings[].path, .errors]' "$R")"
  if grep -q "$tok" "$R"; then fail "$who: the whole secret is in the report"; fi
done
echo "PASS: $TEST_NAME"
