#!/usr/bin/env bash
# libcurl and gpgme are loaded on first use (storage/lazylib/). When one
# cannot be loaded, the command that needs it exits 2, names the library and
# the Debian package to install, prints no report and leaves the store clean;
# a scan that needs neither library runs as usual.
#
# The library is hidden as a missing or broken install would: in a private
# mount namespace, /dev/null is bind-mounted over the file the dynamic
# loader's cache points to, so dlopen() fails ("file too short"). As root the
# namespace is `unshare -m`; otherwise `unshare -rm` (a user namespace whose
# root may mount), where moat sees itself as root.
source "$(dirname "$0")/lib.sh"
need skopeo unshare python3
need_images
S=$WORK/store
UNSHARE=(unshare -m)
[[ $(id -u) -eq 0 ]] || UNSHARE=(unshare -rm)
"${UNSHARE[@]}" true 2>/dev/null || skip "cannot make a private mount namespace here (${UNSHARE[*]})"

# lib_path SONAME: the file the loader's cache resolves SONAME to (x86-64 or the machine's).
lib_path() {
  local p
  p=$(PATH=$PATH:/sbin:/usr/sbin ldconfig -p | awk -v so="$1" '$1 == so { print $NF; exit }')
  [[ -n $p ]] || skip "$1 is not in the loader's cache"
  readlink -f "$p"
}

# hidden SONAME EXPECTED ARGS...: runs moat ARGS with SONAME hidden, expecting EXPECTED.
hidden() {
  local lib want=$2 rc=0
  lib=$(lib_path "$1")
  shift 2
  "${UNSHARE[@]}" bash -c 'mount --bind /dev/null "$1" && shift && exec "$@"' _ "$lib" \
    "$MOAT" "$@" >"$WORK/out" 2>"$WORK/err" || rc=$?
  if [[ $rc -ne $want ]]; then
    echo "--- stderr:" >&2; head -c 4000 "$WORK/err" >&2 || true
    fail "moat $* with $lib hidden exited $rc, expected $want"
  fi
}
store_clean() {  # store_clean STORE: a failed command left nothing in STORE
  local d
  for d in layers images tmp; do
    [[ ! -d $1/$d || -z $(ls -A "$1/$d") ]] || fail "a failed command left something in $1/$d: $(ls -A "$1/$d")"
  done
}

note "libcurl hidden: a registry scan names the library and the package"
hidden libcurl.so.4 2 scan --store "$S" docker://127.0.0.1:1/img:1
expect_err '^moat: error: talking to a registry .* needs libcurl\.so\.4, which cannot be loaded: .*file too short'
expect_err 'apt-get install libcurl4'
[[ ! -s $WORK/out ]] || fail "a failed scan printed a report"
store_clean "$S"

note "libcurl hidden: a local scan needs no libcurl and still works"
hidden libcurl.so.4 1 scan --store "$S" --checks setuid --format json "oci:$IMAGES/layout:v1"
python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); assert any(f["category"]=="setuid" for f in r["findings"])' "$WORK/out" \
  || fail "the local scan's report has no setuid finding"

note "gpgme hidden: checking a signature names the library and the package"
# A dir: image with one signature that looks like OpenPGP (its first byte is a
# packet tag), under a policy that wants a GPG key: reading the key loads gpgme.
skopeo copy -q "oci:$IMAGES/layout:v1" "dir:$WORK/signed"
printf '\xa3\x01not really a signature' >"$WORK/signed/signature-1"
: >"$WORK/key.gpg"
cat >"$WORK/policy.json" <<EOF
{"default": [{"type": "reject"}],
 "transports": {"dir": {"": [{"type": "signedBy", "keyType": "GPGKeys", "keyPath": "$WORK/key.gpg"}]}}}
EOF
S=$WORK/store2  # a fresh store: nothing may be left in it
hidden libgpgme.so.11 2 scan --store "$S" --policy "$WORK/policy.json" "dir:$WORK/signed"
expect_err '^moat: error: checking an OpenPGP signature needs libgpgme\.so\.11, which cannot be loaded'
expect_err 'apt-get install libgpgme11'
[[ ! -s $WORK/out ]] || fail "a failed scan printed a report"
store_clean "$S"

note "gpgme present: the same scan reaches gpgme, which reads the (empty) key file"
run_moat 2 scan --store "$S" --policy "$WORK/policy.json" "dir:$WORK/signed"
expect_err 'no public keys were imported'
if grep -q 'cannot be loaded' "$WORK/err"; then fail "gpgme failed to load without being hidden"; fi
echo "PASS: $TEST_NAME"
