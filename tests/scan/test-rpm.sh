#!/usr/bin/env bash
# scan.rpm: rpm images (Fedora, RHEL/UBI 9+, Amazon Linux 2023): moat reads the
# rpmdb.sqlite a real rpm wrote, so rpm-owned setuid files are packaged and
# files rpm recorded are integrity-checked.
#
# The producer is Debian's own rpm 4.18 (package `rpm`, installed here when
# missing): rpmbuild makes a noarch package, `rpm --root` installs it into a
# Fedora-shaped tree with the sqlite backend, umoci makes the OCI images (as
# root, so owners and the setuid bit are kept). The package, moat-rpmtest-1.2-3:
#   /usr/bin/rpmsu                  4755 root   not in the policy: setuid-packaged
#   /usr/bin/su                     4755 root   in the fedora policy: setuid-expected
#   /usr/share/moat-rpmtest/data.txt 0644       recorded SHA-256
#   /etc/moat-rpmtest.conf          %config     no digest (edited in the tree: no finding)
#   /usr/bin/rpmsu-link             symlink     no digest
# The tree is laid out like Fedora 36+: merged /usr, the database at
# /usr/lib/sysimage/rpm with /var/lib/rpm a symlink to it (moat follows the
# image's own symlink), /etc/os-release ID=fedora. Plus, unpackaged,
# /usr/local/bin/rootsh 4755 (the control: setuid-unpackaged).
#
# Images (tags of one layout), scanned as moat-subuid with --fail-on none:
#   clean      one layer: report validates, packages "rpm", distribution
#              "fedora", no errors; rpmsu setuid-packaged and su setuid-expected
#              with package moat-rpmtest; rootsh setuid-unpackaged; no
#              integrity finding. `rpm -qf` in the tree agrees on the owners.
#   tampered   + a layer that rewrites data.txt and the %config file: exactly
#              one integrity-mismatch, data.txt, package moat-rpmtest.
#   bdb        + a layer that swaps rpmdb.sqlite for a BerkeleyDB Packages
#              written by libdb (db5.3_load; read back by rpm's bdb_ro) and says
#              ID=centos: the same classification, no errors.
#   ndb        + a layer that swaps rpmdb.sqlite for an ndb Packages.db (SUSE;
#              written here as rpm's rpmpkg.c lays it out) and says ID=sles:
#              the same classification (su expected by the suse policy).
#   ndbflip    the same with one header byte flipped: a report error naming
#              Packages.db and its checksum; rpmsu is then unpackaged.
#   truncated  + a layer with rpmdb.sqlite cut to 8 KiB, and
#   garbage    + a layer with rpmdb.sqlite replaced by random bytes: moat exits
#              2 naming rpmdb.sqlite, or completes with a report error naming
#              it; never a crash (a signal) and never a silent pass.
# Time: ~10 s (rpmbuild ~2 s, 5 umoci repacks, 5 scans).
source "$(dirname "$0")/lib.sh"
need umoci tar dpkg

if ! command -v rpmbuild >/dev/null 2>&1 || ! command -v rpm >/dev/null 2>&1; then
  note "installing Debian's rpm (rpmbuild, rpm)"
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq rpm; } >/dev/null 2>&1 ||
    skip "rpm is not installed and apt-get could not install it"
fi
need rpm rpmbuild

T=$W/rpmwork
mkdir -p "$T/top"
PKG=moat-rpmtest
NVRA=$PKG-1.2-3.noarch

# ---- the package ---------------------------------------------------------------
cat >"$T/$PKG.spec" <<'EOF'
Name: moat-rpmtest
Version: 1.2
Release: 3
Summary: moat test package
License: MIT
BuildArch: noarch
%description
A package with setuid files, a data file and a config file.
%install
mkdir -p %{buildroot}/usr/bin %{buildroot}/usr/share/moat-rpmtest %{buildroot}/etc
# Not scripts ("#!" would be setuid-script) and not ELF (rpmbuild refuses
# arch-dependent binaries in a noarch package): plain bytes.
printf 'rpmsu test program\n' > %{buildroot}/usr/bin/rpmsu
printf 'su test program\n' > %{buildroot}/usr/bin/su
printf 'hello from moat-rpmtest\n' > %{buildroot}/usr/share/moat-rpmtest/data.txt
printf 'setting=1\n' > %{buildroot}/etc/moat-rpmtest.conf
ln -s rpmsu %{buildroot}/usr/bin/rpmsu-link
%files
%attr(4755,root,root) /usr/bin/rpmsu
%attr(4755,root,root) /usr/bin/su
/usr/bin/rpmsu-link
%config(noreplace) /etc/moat-rpmtest.conf
%dir /usr/share/moat-rpmtest
/usr/share/moat-rpmtest/data.txt
EOF
rpmbuild --define "_topdir $T/top" -bb "$T/$PKG.spec" >"$T/rpmbuild.log" 2>&1 ||
  { tail -n 30 "$T/rpmbuild.log" >&2; fail "rpmbuild failed (log above)"; }
RPM=$T/top/RPMS/noarch/$NVRA.rpm
[[ -s $RPM ]] || fail "rpmbuild made no $RPM"

# ---- the tree --------------------------------------------------------------------
R=$T/root
mkdir -p "$R"/usr/{bin,sbin,lib,lib64} "$R"/usr/lib/sysimage/rpm "$R"/var/lib "$R"/etc "$R"/usr/local/bin
ln -s usr/bin "$R/bin"
ln -s usr/sbin "$R/sbin"
ln -s usr/lib "$R/lib"
ln -s usr/lib64 "$R/lib64"
ln -s ../../usr/lib/sysimage/rpm "$R/var/lib/rpm"
rpm --root "$R" --dbpath /usr/lib/sysimage/rpm --define '_db_backend sqlite' \
  -i --nodeps --noscripts --notriggers "$RPM" >"$T/rpm-i.log" 2>&1 ||
  { cat "$T/rpm-i.log" >&2; fail "rpm -i into $R failed"; }
DB=$R/usr/lib/sysimage/rpm/rpmdb.sqlite
[[ -s $DB ]] || { ls -la "$R/usr/lib/sysimage/rpm" >&2; fail "rpm wrote no rpmdb.sqlite (is its backend sqlite?)"; }
head -c 16 "$DB" | grep -q "SQLite format 3" || fail "$DB is not an SQLite database"
rpm --root "$R" --dbpath /usr/lib/sysimage/rpm -q "$PKG" >/dev/null || fail "rpm -q does not see $PKG in $R"
# The reference owners, from rpm itself.
for f in /usr/bin/rpmsu /usr/bin/su; do
  owner=$(rpm --root "$R" --dbpath /usr/lib/sysimage/rpm -qf --qf '%{NAME}\n' "$f" 2>/dev/null) || true
  [[ $owner == "$PKG" ]] || fail "rpm -qf $f says '$owner', expected $PKG (reference broken?)"
done
[[ $(stat -c %a "$R/usr/bin/rpmsu") == 4755 ]] || fail "rpm did not install /usr/bin/rpmsu setuid"
# rpm leaves its lock and the (empty, checkpointed) WAL files: keep them, as images do.
printf 'NAME="Fedora Linux"\nID=fedora\nVERSION_ID=40\n' >"$R/etc/os-release"
printf 'root:x:0:0:root:/root:/bin/bash\n' >"$R/etc/passwd"
printf 'root:x:0:\n' >"$R/etc/group"
cp "$R/usr/bin/rpmsu" "$R/usr/local/bin/rootsh"
chmod 4755 "$R/usr/local/bin/rootsh"

# ---- the images -------------------------------------------------------------------
L=$W/pub/rpm
B=$T/bundle
ARCH=$(dpkg --print-architecture)
umoci init --layout "$L"
umoci new --image "$L:base"
umoci config --image "$L:base" --os linux --architecture "$ARCH" --config.cmd /bin/sh --no-history
umoci unpack --image "$L:base" "$B" >/dev/null
tar -C "$R" --numeric-owner -cpf - . | tar -C "$B/rootfs" --numeric-owner --same-owner -xpf -
umoci repack --image "$L:clean" --history.created_by "rpm -i $NVRA.rpm" "$B" >/dev/null
rm -rf "$B"

# layer IMAGE FROM CREATED_BY CMD...: a new tag = FROM + one layer made by CMD run in the rootfs.
layer() {
  local tag=$1 from=$2 by=$3; shift 3
  umoci unpack --image "$L:$from" "$B" >/dev/null
  (cd "$B/rootfs" && "$@") || fail "building the $tag layer"
  umoci repack --image "$L:$tag" --history.created_by "$by" "$B" >/dev/null
  rm -rf "$B"
}
tamper() {
  printf 'tampered\n' >usr/share/moat-rpmtest/data.txt
  printf 'setting=2\n' >etc/moat-rpmtest.conf
}
truncate_db() { head -c 8192 usr/lib/sysimage/rpm/rpmdb.sqlite >db.tmp && mv db.tmp usr/lib/sysimage/rpm/rpmdb.sqlite; }
garbage_db() { head -c 65536 /dev/urandom >usr/lib/sysimage/rpm/rpmdb.sqlite; }
layer tampered clean "RUN echo tampered > /usr/share/moat-rpmtest/data.txt" tamper
layer truncated clean "RUN truncate rpmdb.sqlite" truncate_db
layer garbage clean "RUN garbage > rpmdb.sqlite" garbage_db
umoci gc --layout "$L"
chmod -R a+rX "$L"

findings_tsv() {
  jq -r '.findings[] | [.rule_id, .severity, (.path // .config_field), (.package // "-"), (.mode // "-")] | @tsv' "$1"
}

# ---- clean ---------------------------------------------------------------------------
# want RULE PATH PACKAGE: exactly one finding with that rule and path, and that package.
want() {
  local rule=$1 path=$2 pkg=$3 rep=$4 n got
  n=$(jq --arg r "$rule" --arg p "$path" '[.findings[] | select(.rule_id == $r and .path == $p)] | length' "$rep")
  [[ $n -eq 1 ]] || fail "$(basename "$rep" .json): $n findings $rule for $path, expected 1 (findings above)"
  got=$(jq -r --arg r "$rule" --arg p "$path" '.findings[] | select(.rule_id == $r and .path == $p) | .package // "-"' "$rep")
  [[ $got == "$pkg" ]] || fail "$(basename "$rep" .json): $rule $path has package '$got', expected '$pkg'"
}
# check_image TAG DISTRIBUTION: the image TAG (the clean tree, or it with its
# rpm database in another format) classifies rpmsu, su and rootsh as below,
# with no report error and no integrity finding; moat --verbose names the
# packages and the policy's distribution.
check_image() {
  local tag=$1 dist=$2 rep=$W/users/$1.json
  chmod -R a+rX "$L"
  scan_as moat-subuid 0 "oci:$L:$tag" --format json --fail-on none -o "$rep" --verbose
  validate_report "$rep"
  note "$tag: $(jq -c .summary "$rep"), findings:"
  findings_tsv "$rep" | sed 's/^/    /' >&2
  [[ $(jq '.errors | length' "$rep") -eq 0 ]] || { jq -r '.errors[] | "  " + .' "$rep" >&2; fail "$tag: report errors"; }
  grep -qE "[0-9]+ packages \(rpm\), distribution $dist" "$W/err" ||
    { cat "$W/err" >&2; fail "$tag: moat --verbose does not say 'N packages (rpm), distribution $dist'"; }
  want setuid-packaged /usr/bin/rpmsu "$PKG" "$rep"
  want setuid-expected /usr/bin/su "$PKG" "$rep"
  want setuid-unpackaged /usr/local/bin/rootsh - "$rep"
  [[ $(jq '[.findings[] | select(.category == "integrity")] | length' "$rep") -eq 0 ]] ||
    fail "$tag: integrity findings on an untouched rpm image"
}

check_image clean fedora
rep=$W/users/clean.json
bad=$(jq -r '.findings[] | select(.rule_id == "setuid-unpackaged" and .path != "/usr/local/bin/rootsh") | .path' "$rep")
[[ -z $bad ]] || fail "clean: rpm-owned files reported unpackaged: $bad"

# ---- tampered --------------------------------------------------------------------------
rep=$W/users/tampered.json
scan_as moat-subuid 0 "oci:$L:tampered" --format json --fail-on none -o "$rep"
validate_report "$rep"
note "tampered: $(jq -c .summary "$rep"), findings:"
findings_tsv "$rep" | sed 's/^/    /' >&2
[[ $(jq '.errors | length' "$rep") -eq 0 ]] || { jq -r '.errors[] | "  " + .' "$rep" >&2; fail "tampered: report errors"; }
want integrity-mismatch /usr/share/moat-rpmtest/data.txt "$PKG" "$rep"
n=$(jq '[.findings[] | select(.rule_id == "integrity-mismatch")] | length' "$rep")
[[ $n -eq 1 ]] || fail "tampered: $n integrity findings, expected 1 (the %config file is not checked)"
[[ $(jq -r '.findings[] | select(.rule_id == "integrity-mismatch") | .layer.index' "$rep") == 1 ]] ||
  fail "tampered: the integrity finding does not name layer 1"
want setuid-packaged /usr/bin/rpmsu "$PKG" "$rep"

# ---- BerkeleyDB Packages (RHEL/CentOS 7-8, Amazon Linux 2) ----------------------------------
# The same headers in a BerkeleyDB hash `Packages` written by libdb 5.3
# (db5.3_load from a dump of rpmdb.sqlite, as rpm lays it out: key = the 4-byte
# header number, key 0 = the next number); Debian's rpm (bdb_ro) must read it
# back. The layer removes rpmdb.sqlite and says ID=centos.
if ! command -v db5.3_load >/dev/null 2>&1; then
  note "installing db5.3-util (db5.3_load)"
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq db5.3-util; } >/dev/null 2>&1 || true
fi
if command -v db5.3_load >/dev/null 2>&1; then
  mkdir -p "$T/bdbcheck/var/lib/rpm"
  python3 - "$DB" >"$T/Packages.dump" <<'PY'
import sqlite3, struct, sys
con = sqlite3.connect("file:" + sys.argv[1] + "?mode=ro", uri=True)
rows = con.execute("SELECT hnum, blob FROM Packages ORDER BY hnum").fetchall()
print("VERSION=3\nformat=bytevalue\ntype=hash\ndb_pagesize=4096\nHEADER=END")
print(" " + struct.pack("<I", 0).hex())
print(" " + struct.pack("<I", max(h for h, _ in rows) + 1).hex())
for h, blob in rows:
    print(" " + struct.pack("<I", h).hex())
    print(" " + bytes(blob).hex())
print("DATA=END")
PY
  db5.3_load -f "$T/Packages.dump" "$T/bdbcheck/var/lib/rpm/Packages" || fail "db5.3_load failed"
  got=$(rpm --root "$T/bdbcheck" --dbpath /var/lib/rpm --define '_db_backend bdb_ro' -qa 2>/dev/null) || true
  [[ $got == "$NVRA" ]] || fail "rpm (bdb_ro) reads '$got' from the BerkeleyDB Packages, expected $NVRA"
  to_bdb() {
    rm -f usr/lib/sysimage/rpm/rpmdb.sqlite* var/lib/rpm
    mkdir -p var/lib/rpm
    cp "$T/bdbcheck/var/lib/rpm/Packages" var/lib/rpm/Packages
    printf 'NAME="CentOS Linux"\nID="centos"\nID_LIKE="rhel fedora"\nVERSION_ID="7"\n' >etc/os-release
  }
  layer bdb clean "RUN rpm --rebuilddb (BerkeleyDB)" to_bdb
  check_image bdb fedora
else
  # Not a silent pass: the BerkeleyDB reader would go untested.
  skip "db5.3_load (db5.3-util) is not installed and apt-get could not install it: scripts/install-deps.sh installs it"
fi

# ---- ndb Packages.db (SLES 15, openSUSE Leap 15) ---------------------------------------------
# The same headers in rpm's ndb format, written here as rpm's rpmpkg.c lays it
# out (a header page of slots, each package's blob in 16-byte blocks with an
# adler32 tail): Debian's rpm has no ndb backend, so no Debian tool writes
# one (a real SLES 15 Packages.db was checked by hand: docs/findings.md). The
# layer replaces rpmdb.sqlite with Packages.db and says ID=sles.
python3 - "$DB" "$T/Packages.db" <<'PY'
import sqlite3, struct, sys, zlib
con = sqlite3.connect("file:" + sys.argv[1] + "?mode=ro", uri=True)
rows = con.execute("SELECT hnum, blob FROM Packages ORDER BY hnum").fetchall()
head = bytearray(4096)
struct.pack_into("<4I", head, 0, 0x506D7052, 0, len(rows) + 1, 1)  # "RpmP", version, generation, slot pages
for o in range(32, 4096, 16):
    struct.pack_into("<I", head, o, 0x746F6C53)  # "Slot", free
body = bytearray()
for i, (hnum, blob) in enumerate(rows):
    blob = bytes(blob)
    n = (16 + len(blob) + 12 + 15) // 16
    b = bytearray(struct.pack("<4I", 0x53626C42, hnum, 1700000000, len(blob)) + blob)
    b += bytes(n * 16 - 12 - len(b))
    b += struct.pack("<3I", zlib.adler32(bytes(b)), len(blob), 0x45626C42)
    struct.pack_into("<4I", head, 32 + 16 * i, 0x746F6C53, hnum, (4096 + len(body)) // 16, n)
    body += b
open(sys.argv[2], "wb").write(bytes(head + body))
PY
to_ndb() {
  rm -f usr/lib/sysimage/rpm/rpmdb.sqlite*
  cp "$T/Packages.db" usr/lib/sysimage/rpm/Packages.db
  printf 'NAME="SLES"\nID="sles"\nID_LIKE="suse"\nVERSION_ID="15.6"\n' >etc/os-release
}
layer ndb clean "RUN rpm --rebuilddb (ndb)" to_ndb
check_image ndb suse
# One byte of a header flipped: the blob's checksum catches it, said by name.
python3 - "$T/Packages.db" <<'PY'
import sys
b = bytearray(open(sys.argv[1], "rb").read())
b[4096 + 40] ^= 0x20
open(sys.argv[1], "wb").write(b)
PY
layer ndbflip clean "RUN rpm --rebuilddb (ndb, damaged)" to_ndb
chmod -R a+rX "$L"
rep=$W/users/ndbflip.json
scan_as moat-subuid 0 "oci:$L:ndbflip" --format json --fail-on none -o "$rep"
jq -e '[.errors[] | select(test("Packages.db.*adler32"))] | length == 1' "$rep" >/dev/null ||
  { jq -r '.errors[]' "$rep" >&2; fail "ndbflip: no report error naming Packages.db and its checksum"; }
want setuid-unpackaged /usr/bin/rpmsu - "$rep"

# ---- truncated and garbage databases -------------------------------------------------------
for tag in truncated garbage; do
  rep=$W/users/$tag.json
  rc=0
  (cd "$W" && "$LIB/as-user.sh" moat-subuid "$W/moat" scan --store "$W/users/moat-subuid.store" \
    "oci:$L:$tag" --format json --fail-on none -o "$rep") >"$W/out" 2>"$W/err" || rc=$?
  note "$tag: exit $rc; stderr: $(head -c 400 "$W/err")"
  case $rc in
    2)
      grep -q "rpmdb.sqlite" "$W/err" || { cat "$W/err" >&2; fail "$tag: exit 2 without naming rpmdb.sqlite"; }
      ;;
    0 | 1)
      validate_report "$rep"
      jq -e '[.errors[] | select(test("rpmdb.sqlite"))] | length > 0' "$rep" >/dev/null ||
        { jq -r '.errors[]' "$rep" >&2; fail "$tag: the scan completed without an error about rpmdb.sqlite"; }
      ;;
    *)
      cat "$W/err" >&2
      fail "$tag: moat exited $rc (a crash?)"
      ;;
  esac
done
echo "PASS: $TEST_NAME"
