#!/usr/bin/env bash
# Files the scanning user cannot read in the store. Fedora and RHEL ship
# /etc/shadow with mode 0000; a 0000 directory can hold a setuid file. With a
# subuid range (moat-subuid) the store runs in the user namespace and moat
# reads everything; without one (moat-single) the store's copies belong to the
# caller with the image's modes, so content under mode 0000 cannot be read:
#  - the scan still completes, every setuid file is still found (metadata
#    comes from the layer index, not from the disk);
#  - what could not be read is named in the report's errors, never silent;
#  - moat-subuid reads it all: the empty shadow password is found, no errors;
#  - -v names each directory the overlay walk could not list, but a token used
#    as its name is redacted, as everywhere else moat prints an image's path;
#    so is the first file `moat mount`'s userspace view could not copy.
source "$(dirname "$0")/lib.sh"
build_fixture img <<'JSON'
{"format": "oci", "config": {"User": "app", "Healthcheck": {"Test": ["CMD", "true"]}},
 "layers": [{"entries": [
  {"path": "etc", "type": "dir", "mode": "0755"},
  {"path": "etc/passwd", "mode": "0644", "content": "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n"},
  {"path": "etc/group", "mode": "0644", "content": "root:x:0:\napp:x:1000:\n"},
  {"path": "etc/shadow", "mode": "0000", "content": "root:!locked::0:99999:7:::\napp::19000:0:99999:7:::\n"},
  {"path": "locked", "type": "dir", "mode": "0000"},
  {"path": "locked/hidden-su", "mode": "04755", "content": "#!/bin/sh\nexec sh -p\n"},
  {"path": "ghp_MoatFakeTokenUnlistableDir00000Ab1xY", "type": "dir", "mode": "0000"},
  {"path": "usr", "type": "dir", "mode": "0755"},
  {"path": "usr/bin", "type": "dir", "mode": "0755"},
  {"path": "usr/bin/owner-only-su", "mode": "04700", "content": "\u007fELF not really"}
 ]}]}
JSON
IMG=oci:$W/pub/img:latest
rules() { jq -r '[.findings[] | "\(.rule_id) \(.path // .config_field)"] | sort | .[]' "$1"; }

scan_as moat-subuid 1 "$IMG" --format json
cp "$W/out" "$W/subuid.json"; validate_report "$W/subuid.json"
want_subuid=$(printf '%s\n' "account-empty-password /etc/shadow" "setuid-script /locked/hidden-su" \
  "setuid-unpackaged /usr/bin/owner-only-su" | sort)
diff <(echo "$want_subuid") <(rules "$W/subuid.json") || fail "moat-subuid findings (- expected, + got)"
[[ $(jq '.errors | length' "$W/subuid.json") -eq 0 ]] || fail "moat-subuid: errors $(jq -c .errors "$W/subuid.json")"

TOKEN=ghp_MoatFakeTokenUnlistableDir00000Ab1xY
for mode in auto userspace; do
  scan_as moat-single 1 "$IMG" --format json --mount "$mode" -v
  ! grep -F "$TOKEN" "$W/err" || fail "moat-single ($mode) -v: a whole token on stderr"
  if grep -q "^moat: overlay of\|overlay mounted with" "$W/err"; then
    grep -q "^moat: overlay walk: /ghp_.*(checked from the layer index)" "$W/err" ||
      fail "moat-single ($mode) -v: the unlistable directory is not named: $(grep 'overlay walk' "$W/err")"
  fi
  cp "$W/out" "$W/single.json"; validate_report "$W/single.json"
  # hidden-su's "#!" cannot be read: it is still a setuid file, classified
  # without its content (unpackaged), and the error names it.
  want_single=$(printf '%s\n' "setuid-unpackaged /locked/hidden-su" "setuid-unpackaged /usr/bin/owner-only-su" | sort)
  diff <(echo "$want_single") <(rules "$W/single.json") || fail "moat-single ($mode) findings (- expected, + got)"
  jq -e '[.errors[] | select(test("^/etc/shadow: .*account checks were skipped"))] | length == 1' "$W/single.json" >/dev/null ||
    fail "moat-single ($mode): /etc/shadow not named in errors: $(jq -c .errors "$W/single.json")"
  jq -e '[.errors[] | select(test("/locked/hidden-su"))] | length >= 1' "$W/single.json" >/dev/null ||
    fail "moat-single ($mode): /locked/hidden-su not named in errors: $(jq -c .errors "$W/single.json")"
done

# moat mount's userspace view copies what it can read; its note names the
# first file it could not copy, and a token as that file's name is redacted.
build_fixture tokdir <<'JSON'
{"format": "oci", "config": {},
 "layers": [{"entries": [
  {"path": "ghp_MoatFakeTokenUnlistableDir00000Ab1xY", "type": "dir", "mode": "0000"},
  {"path": "ghp_MoatFakeTokenUnlistableDir00000Ab1xY/f", "mode": "0644", "content": "x"}
 ]}]}
JSON
rc=0
(cd "$W" && "$LIB/as-user.sh" moat-single "$W/moat" mount --store "$W/users/moat-single.store" --mount userspace \
  "oci:$W/pub/tokdir:latest" -- true) >"$W/out" 2>"$W/err" || rc=$?
[[ $rc -eq 0 ]] || fail "moat-single: moat mount --mount userspace exited $rc: $(cat "$W/err")"
grep -q "could not be copied.*(first: /ghp_" "$W/err" || fail "moat mount: no note of the file it could not copy: $(cat "$W/err")"
! grep -F "$TOKEN" "$W/err" || fail "moat mount: a whole token on stderr"
echo "PASS: $TEST_NAME"
