#!/usr/bin/env bash
# scan.planted: the "done when" of the checks issue (issue 4).
#
#   On an image built with planted problems of every category, every one is
#   found with the right path, owner name (from the image), package and layer,
#   nothing planted-clean is reported, and the exit status is 1.
#
# One five-layer OCI image (layer 2 zstd, the others gzip) is built with
# moat-fixture from the table below (written out by planted.py, embedded at the
# end of this file), scanned as moat-subuid and moat-single, with the kernel
# overlay and with --mount userspace, and every JSON report is compared with
# the table: the multiset of (rule_id, path or config_field, layer.index,
# deleted) must be exactly the planted one, and every planted finding must
# carry its owner names (from the image's /etc/passwd and /etc/group, never
# the host's), mode, package, layer diff_id/created_by and severity.
#
# The image's accounts (L0):
#   passwd  root 0:0, daemon 1:1, toor 0:0 (a second root), appsvc 4711:4712,
#           guest (empty password field), nopass (password "x", empty in shadow)
#   group   root 0, daemon 1, disk 6, mail 8, shadow 42, staff 50, ssl-cert 109,
#           appgrp 4712, guest 1002, nopass 1003, staff2 50 (duplicate gid)
#   No id above is known to the host: uid 4711 is "appsvc" only in the image.
# Packages (dpkg, /etc/os-release ID=debian, /bin -> usr/bin merged /usr):
#   util-linux  lists /bin/su (merged-/usr spelling), md5sums right
#   passwd      /usr/bin/passwd, /usr/bin/chage, md5sums right
#   tooling     /usr/bin/pkgtool, /usr/bin/pkgmail, /usr/lib/tooling/libtool.so
#               (md5sums wrong), /usr/share/doc/tooling/README (right),
#               /etc/tooling.conf (conffile, edited, not in md5sums)
#   libexample  Multi-Arch: same, info/libexample:amd64.{list,md5sums} (wrong md5)
#   removed-pkg Status "deinstall ok config-files"; its stale .list claims
#               /usr/local/bin/rootsh and its .md5sums a wrong digest for it
#
# PLANTED (rule                       path / config field                     layer  owner        mode)
#   L0 gzip  "ADD https://example.com/rootfs.tar.gz /"
#   shadow-readable              /etc/shadow                                   0  root:shadow  0644
#   account-extra-uid0           /etc/passwd  (toor)                           0  -            -
#   account-empty-password       /etc/passwd  (guest)                          0  -            -
#   account-empty-password       /etc/shadow  (nopass)                         0  -            -
#   account-duplicate            /etc/passwd  (uid 0: root, toor)              0  -            -
#   account-duplicate            /etc/group   (gid 50: staff, staff2)          0  -            -
#   setuid-expected              /usr/bin/su      pkg util-linux (via /bin/su) 0  root:root    4755
#   setuid-expected              /usr/bin/passwd  pkg passwd                   0  root:root    4755
#   setgid-expected              /usr/bin/chage   pkg passwd                   0  root:shadow  2755
#   setuid-unpackaged            /usr/local/sbin/su-link (hardlink to su)      0  root:root    4755
#       a hardlink IS the setuid file at a second path; checks.cc classifies
#       by the link's own path, which no package lists: unpackaged, no package.
#   L1 gzip  "RUN sudo apt-get install -y tooling libexample"
#   setuid-packaged              /usr/bin/pkgtool  pkg tooling                 1  root:root    4755
#   setgid-packaged              /usr/bin/pkgmail  pkg tooling                 1  root:mail    2755
#   integrity-mismatch           /usr/lib/tooling/libtool.so  pkg tooling      1  root:root    0644
#   integrity-mismatch           /usr/lib/x86_64-linux-gnu/libexample.so.1     1  root:root    0644
#   sensitive-history (deleted)  /root/.python_history (whiteout in L3)        1  root:root    0600
#   L2 zstd  "COPY --chown=appsvc:appgrp app/ /opt/app/"
#   setuid-unpackaged            /opt/app/bin/both (6755: one per bit)         2  appsvc:appgrp 6755
#   setgid-unpackaged            /opt/app/bin/both                             2  appsvc:appgrp 6755
#   sensitive-dotenv             /opt/app/.env                                 2  appsvc:appgrp 0640
#   sensitive-authorized-keys    /home/appsvc/.ssh/authorized_keys             2  appsvc:appgrp 0600
#   sensitive-credentials-file   /home/appsvc/.npmrc (_authToken=${NPM_TOKEN}) 2  appsvc:appgrp 0600
#   sensitive-git-dir            /srv/www/.git                                 2  appsvc:appgrp 0755
#   world-writable               /srv/shared/notes.txt (file 0666)             2  appsvc:appgrp 0666
#   world-writable               /srv/dropbox (dir 0777, no sticky)            2  root:root    0777
#   L3 gzip  "RUN chmod u-s /opt/legacy/oldsuid && rm -f ..." (only look-alikes)
#   L4 gzip  "RUN setcap cap_net_raw+ep /usr/local/bin/pinger && ..."
#   setuid-unpackaged            /usr/local/bin/rootsh                         4  root:root    4755
#   setgid-unpackaged            /usr/local/bin/grpsh                          4  root:staff   2755
#   setuid-script                /usr/local/bin/suid.sh ("#!")                 4  root:root    4755
#   setgid-script                /usr/local/bin/sgid.sh ("#!")                 4  root:staff   2755
#   setuid-writable              /usr/local/bin/wsuid (4775)                   4  root:staff   4775
#   setgid-writable              /usr/local/bin/wsgid (2775)                   4  root:staff   2775
#   capability                   /usr/local/bin/pinger (v2 cap_net_raw+ep)     4  root:root    0755
#   capability                   /usr/local/bin/binder (v3 cap_net_bind_service+ep, rootid 0)
#                                                                              4  root:staff   0750
#   unknown-owner                /opt/orphan.dat (31337:31337)                 4  -:- (null names) 0644
#   device-node                  /opt/devs/null (char 1:3)                     4  root:root    0666
#   device-node                  /opt/devs/sda (block 8:0)                     4  root:disk    0660
#   private-key-readable         /etc/ssl/private/server.key (0644)            4  root:root    0644
#   sensitive-ssh-key            /etc/ssh/ssh_host_ed25519_key (0600, marker)  4  root:root    0600
#   sensitive-history            /root/.bash_history                           4  root:root    0600
#   sensitive-ssh-key            /root/.ssh/id_ed25519 (marker)                4  root:root    0600
#   image config (User "root", ExposedPorts 22/tcp 8080/tcp 2222/tcp, Healthcheck NONE)
#   config-runs-as-root          User                                          null
#   config-ssh-port              ExposedPorts (22/tcp only, once)              null
#   config-no-healthcheck        Healthcheck (Test ["NONE"])                   null
#   config-add-url               History step 0 (ADD https://...)              0
#   config-sudo                  History step 2 (RUN sudo apt-get ...)         1
#   config-sudo                  History step 9 (ENTRYPOINT ["sudo" ...], empty_layer)  null
#
# PLANTED CLEAN (must not be reported)
#   /tmp, /var/tmp, /srv/public       1777 world-writable with sticky bit
#   /srv/team                         setgid directory 2775 root:staff
#   /bin, /sbin, /lib                 symlinks (mode 0777)
#   /opt/legacy/oldsuid               4755 in L1, same path re-added 0755 in L3
#   /opt/legacy/gone-suid             4755 in L1, whiteout in L3 (deleted setuid: silent)
#   /var/lib/dpkg/status (L0)         replaced in L1 (a deleted non-sensitive file)
#   /usr/local/bin/rootsh             claimed only by removed-pkg (config-files): still unpackaged,
#                                     and its stale wrong md5 is no integrity-mismatch
#   /usr/bin/su                       md5sums entry "bin/su" matches through merged /usr
#   /usr/share/doc/tooling/README     packaged, md5 right
#   /etc/tooling.conf                 conffile, edited (not in md5sums)
#   /etc/gshadow                      0640 root:shadow
#   /etc/ssl/private/other.key        0640 root:ssl-cert
#   /etc/ssl/certs/server.crt, /etc/ssh/ssh_host_ed25519_key.pub, /home/appsvc/.ssh/id_ed25519.pub
#                                     world-readable certificate and public keys
#   /root/.ssh/id_rsa                 a key name without a private-key marker
#   /root/.ssh/known_hosts, /root/.bashrc
#   /root/.npmrc                      registry= only, no credential marker
#   /opt/app/.env.example             except_names
#   /opt/app/empty.env                a .env name, but empty (min_size)
#   /opt/app/config.json, /opt/app    owned by 4711:4712: known only to the image, so not unknown-owner
#   /srv/www/.github, /srv/www/.gitignore
#   History "ENV SUDO_FORCE_REMOVE=yes", "apt-get install -y visudo-docs" (not the word sudo),
#           "ADD --checksum=sha256:... https://..." (pinned URL)
#
# Then: exit 1 (default --fail-on high), 0 with --fail-on none, 1 with
# --format sarif (one result per finding) and with the table; two runs give
# byte-identical JSON apart from scan.duration_ms; -o FILE writes the same
# report; --checks setuid keeps only the setuid category; an ignore file
# suppresses one finding and an expired entry is named on stderr.
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

IMG="oci:$W/pub/planted:latest"
PY="$W/planted.py"
SEVERITIES="$SCAN_DIR/../../rules/policy/severities.json"
# The table and the comparison: planted.py, the here-document at the end.
sed -n '/^# ---- planted.py ----$/,$p' "${BASH_SOURCE[0]}" | tail -n +2 >"$PY"
planted() { python3 "$PY" "$SEVERITIES" "$@"; }

note "building the planted image"
planted spec | build_fixture planted

# Other tools must accept the image as a valid OCI layout.
if command -v skopeo >/dev/null 2>&1; then
  skopeo inspect "$IMG" >"$W/skopeo.json" || fail "skopeo inspect rejects the planted image"
  [[ $(jq '.Layers|length' "$W/skopeo.json") -eq 5 ]] || fail "skopeo sees $(jq '.Layers|length' "$W/skopeo.json") layers, expected 5"
fi
if command -v umoci >/dev/null 2>&1; then
  umoci stat --image "$W/pub/planted:latest" >/dev/null || fail "umoci stat rejects the planted image"
fi

# Mismatches with the table are collected, so one run shows all of them; the
# test fails at the end. A wrong exit status or an invalid report fails at once.
FAILURES=()
soft_fail() { echo "MISMATCH: $*" >&2; FAILURES+=("$*"); }

# check LABEL REPORT [checker options]: validate against the schema, then the table.
check() {
  local label=$1 file=$2; shift 2
  validate_report "$file"
  planted check "$file" "$@" || soft_fail "$label: the report does not match the planted table (above)"
}

# scan_meta LABEL REPORT MAPPING: a rootless scan; an overlay scan names its id mapping.
scan_meta() {
  local label=$1 file=$2 mapping=$3 m
  m=$(jq -c '[.scan.mode, .scan.rootless, .scan.id_mapping]' "$file")
  [[ $(jq -r .scan.rootless "$file") == true ]] || soft_fail "$label: scan.rootless is not true ($m)"
  if [[ $(jq -r .scan.mode "$file") == overlay ]]; then
    [[ $(jq -r .scan.id_mapping "$file") == "$mapping" ]] || soft_fail "$label: overlay scan with id_mapping other than $mapping ($m)"
  fi
}

note "moat-subuid: default (table, --fail-on high)"
scan_as moat-subuid 1 "$IMG"
[[ -s $W/out ]] || fail "the table report is empty"
grep -q /usr/local/bin/rootsh "$W/out" || fail "the table does not name /usr/local/bin/rootsh"

note "moat-subuid: JSON, twice"
scan_as moat-subuid 1 "$IMG" --format json
cp "$W/out" "$W/subuid.json"
check "moat-subuid json" "$W/subuid.json"
scan_meta "moat-subuid json" "$W/subuid.json" subuid
scan_as moat-subuid 1 "$IMG" --format json
cp "$W/out" "$W/subuid2.json"
planted same-bytes "$W/subuid.json" "$W/subuid2.json" || soft_fail "two scans of the same image differ beyond scan.duration_ms"

note "moat-subuid: -o FILE, --fail-on none"
rm -f "$W/users/subuid-o.json"
scan_as moat-subuid 0 "$IMG" --format json --fail-on none -o "$W/users/subuid-o.json"
[[ -s $W/users/subuid-o.json ]] || fail "-o did not write $W/users/subuid-o.json"
check "moat-subuid -o" "$W/users/subuid-o.json"
planted same-findings "$W/subuid.json" "$W/users/subuid-o.json" || soft_fail "-o FILE and stdout reports differ"

note "moat-subuid: --fail-on none (stdout)"
scan_as moat-subuid 0 "$IMG" --format json --fail-on none
planted same-findings "$W/subuid.json" "$W/out" || soft_fail "--fail-on none changed the findings"

note "moat-subuid: SARIF"
scan_as moat-subuid 1 "$IMG" --format sarif
cp "$W/out" "$W/subuid.sarif"
planted sarif "$W/subuid.sarif" || soft_fail "the SARIF report does not match the planted table"

note "moat-subuid: --checks setuid"
scan_as moat-subuid 1 "$IMG" --format json --checks setuid
cp "$W/out" "$W/setuid.json"
check "--checks setuid" "$W/setuid.json" --category setuid

note "moat-subuid: ignore file"
cat >"$W/pub/ignore" <<'EOF'
# planted test: one live entry, one expired
rule=setuid-unpackaged path=/usr/local/bin/rootsh reason=accepted for the test
rule=device-node path=/opt/devs/* expires=2020-01-31 reason=expired long ago
EOF
chmod 0644 "$W/pub/ignore"
scan_as moat-subuid 1 "$IMG" --format json --ignorefile "$W/pub/ignore"
cp "$W/out" "$W/ignored.json"
check "--ignorefile" "$W/ignored.json" --drop setuid-unpackaged=/usr/local/bin/rootsh
if ! grep 'device-node' "$W/err" | grep -q '2020-01-31'; then
  cat "$W/err" >&2; soft_fail "the expired ignore entry (device-node, 2020-01-31) is not named on stderr"
fi
if grep 'setuid-unpackaged' "$W/err" | grep -qi expire; then
  cat "$W/err" >&2; soft_fail "the live ignore entry is named as expired on stderr"
fi

note "moat-subuid: --mount userspace"
scan_as moat-subuid 1 "$IMG" --format json --mount userspace
cp "$W/out" "$W/subuid-us.json"
check "moat-subuid userspace" "$W/subuid-us.json"
[[ $(jq -r .scan.mode "$W/subuid-us.json") == userspace ]] || soft_fail "--mount userspace: scan.mode is $(jq -r .scan.mode "$W/subuid-us.json")"
scan_meta "moat-subuid userspace" "$W/subuid-us.json" subuid
planted same-findings "$W/subuid.json" "$W/subuid-us.json" || soft_fail "moat-subuid: overlay and userspace findings differ"

note "moat-single: JSON"
scan_as moat-single 1 "$IMG" --format json
cp "$W/out" "$W/single.json"
check "moat-single json" "$W/single.json"
scan_meta "moat-single json" "$W/single.json" single
planted same-findings "$W/subuid.json" "$W/single.json" || soft_fail "moat-subuid and moat-single findings differ"

note "moat-single: --mount userspace"
scan_as moat-single 1 "$IMG" --format json --mount userspace
cp "$W/out" "$W/single-us.json"
check "moat-single userspace" "$W/single-us.json"
[[ $(jq -r .scan.mode "$W/single-us.json") == userspace ]] || soft_fail "moat-single --mount userspace: scan.mode is $(jq -r .scan.mode "$W/single-us.json")"
scan_meta "moat-single userspace" "$W/single-us.json" single
planted same-findings "$W/subuid.json" "$W/single-us.json" || soft_fail "moat-single userspace findings differ"

note "moat-single: SARIF, --fail-on none"
scan_as moat-single 1 "$IMG" --format sarif
planted sarif "$W/out" || soft_fail "moat-single: the SARIF report does not match the planted table"
scan_as moat-single 0 "$IMG" --fail-on none

if ((${#FAILURES[@]})); then
  printf '  %s\n' "${FAILURES[@]}" >&2
  fail "${#FAILURES[@]} mismatch(es) with the planted table"
fi
echo "PASS: $TEST_NAME"
exit 0

# The checker, after the exit: a here-document so that `bash -n` parses the
# file; the sed at the top copies it to $W/planted.py.
# shellcheck disable=SC2317
: <<'# ---- end of planted.py ----'
# ---- planted.py ----
"""The planted image and its expected findings (see the table at the top of
test-planted.sh). usage: planted.py SEVERITIES.json spec | check REPORT
[--category C] [--drop RULE=PATH] | sarif SARIF | same-bytes A B | same-findings A B"""
import collections
import hashlib
import json
import re
import sys

def md5(s):
    return hashlib.md5(s.encode()).hexdigest()

# ---------------------------------------------------------------- accounts
PASSWD = """root:x:0:0:root:/root:/bin/bash
daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin
toor:x:0:0:second root:/root:/bin/sh
appsvc:x:4711:4712:app service:/home/appsvc:/bin/sh
guest::1002:1002:guest:/home/guest:/bin/sh
nopass:x:1003:1003:empty shadow password:/home/nopass:/bin/sh
"""
GROUP = """root:x:0:
daemon:x:1:
disk:x:6:
mail:x:8:
shadow:x:42:
staff:x:50:
ssl-cert:x:109:
appgrp:x:4712:appsvc
guest:x:1002:
nopass:x:1003:
staff2:x:50:
"""
SHADOW = """root:*:19700:0:99999:7:::
daemon:*:19700:0:99999:7:::
toor:!:19700:0:99999:7:::
appsvc:!:19700:0:99999:7:::
guest:!:19700:0:99999:7:::
nopass::19700:0:99999:7:::
"""
GSHADOW = "root:*::\nshadow:*::\nstaff:*::\nappgrp:!::appsvc\n"
OS_RELEASE = 'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nNAME="Debian GNU/Linux"\nVERSION_ID="12"\nID=debian\n'

ROOT, DAEMON = 0, 1
APPSVC, APPGRP = 4711, 4712
DISK, MAIL, SHADOW_G, STAFF, SSLCERT = 6, 8, 42, 50, 109
NAMES_U = {0: "root", 1: "daemon", 4711: "appsvc", 1002: "guest", 1003: "nopass"}
NAMES_G = {0: "root", 1: "daemon", 6: "disk", 8: "mail", 42: "shadow", 50: "staff", 109: "ssl-cert",
           4712: "appgrp", 1002: "guest", 1003: "nopass"}

# ---------------------------------------------------------------- file contents
ELF = "\x7fELF planted test binary\n"
SU = "\x7fELF su\n"
PASSWD_BIN = "\x7fELF passwd\n"
CHAGE = "\x7fELF chage\n"
PKGTOOL = "\x7fELF pkgtool\n"
PKGMAIL = "\x7fELF pkgmail\n"
LIBTOOL_RECORDED, LIBTOOL_ON_DISK = "original library\n", "patched library\n"
LIBEX_RECORDED, LIBEX_ON_DISK = "libexample 1.0\n", "libexample 1.0 (trojaned)\n"
README = "tooling: documentation\n"
FAKE_KEY = ("-----BEGIN OPENSSH PRIVATE KEY-----\nplanted-by-moat-tests-not-a-real-key\n"
            "-----END OPENSSH PRIVATE KEY-----\n")

STATUS_L0 = """Package: util-linux
Status: install ok installed
Priority: required
Architecture: amd64
Multi-Arch: foreign
Version: 2.38.1-5+b1
Description: miscellaneous system utilities

Package: passwd
Status: install ok installed
Priority: required
Architecture: amd64
Version: 1:4.13+dfsg1-1+b1
Description: change and administer password and group data

Package: removed-pkg
Status: deinstall ok config-files
Architecture: amd64
Version: 0.1-1
Description: removed; only its conffiles remain
"""
STATUS_L1 = STATUS_L0 + """
Package: tooling
Status: install ok installed
Architecture: amd64
Version: 1.0-1
Conffiles:
 /etc/tooling.conf 5d41402abc4b2a76b9719d911017c592
Description: planted tools

Package: libexample
Status: install ok installed
Architecture: amd64
Multi-Arch: same
Version: 1.0-1
Description: planted multi-arch library
"""

# ---------------------------------------------------------------- layers
# Directory attributes wherever a directory appears (each layer repeats the
# parents of its entries, as image builders do).
DIRS = {
    "root": ("0700", 0, 0), "tmp": ("1777", 0, 0), "var/tmp": ("1777", 0, 0),
    "etc/ssl/private": ("0710", 0, SSLCERT), "root/.ssh": ("0700", 0, 0),
    "home/appsvc": ("0750", APPSVC, APPGRP), "home/appsvc/.ssh": ("0700", APPSVC, APPGRP),
    "opt/app": ("0755", APPSVC, APPGRP), "opt/app/bin": ("0755", APPSVC, APPGRP),
    "srv/www": ("0755", APPSVC, APPGRP), "srv/www/.git": ("0755", APPSVC, APPGRP),
    "srv/www/.github": ("0755", APPSVC, APPGRP), "srv/shared": ("0755", APPSVC, APPGRP),
    "srv/dropbox": ("0777", 0, 0), "srv/team": ("2775", 0, STAFF), "srv/public": ("1777", 0, 0),
}

class Layer:
    def __init__(self, compression, created_by):
        self.compression, self.created_by, self.entries, self.seen = compression, created_by, [], set()

    def _parents(self, path):
        parts = path.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            self.dir("/".join(parts[:i]))

    def dir(self, path):
        if path in self.seen:
            return self
        self._parents(path)
        mode, uid, gid = DIRS.get(path, ("0755", 0, 0))
        self.seen.add(path)
        self.entries.append({"path": path, "type": "dir", "mode": mode, "uid": uid, "gid": gid})
        return self

    def add(self, path, type="file", mode="0644", uid=0, gid=0, **kw):
        self._parents(path)
        e = {"path": path, "type": type, "mode": mode, "uid": uid, "gid": gid}
        e.update(kw)
        self.entries.append(e)
        self.seen.add(path)
        return self

    def file(self, path, content, mode="0644", uid=0, gid=0, **kw):
        return self.add(path, "file", mode, uid, gid, content=content, **kw)

    def json(self):
        return {"compression": self.compression, "created_by": self.created_by, "entries": self.entries}

HISTORY = [
    ("ADD https://example.com/rootfs.tar.gz /", False),                                   # L0
    ("/bin/sh -c #(nop)  ENV SUDO_FORCE_REMOVE=yes", True),
    ("RUN sudo apt-get install -y tooling libexample", False),                            # L1
    ("COPY --chown=appsvc:appgrp app/ /opt/app/", False),                                 # L2
    ("ADD --checksum=sha256:" + "0123456789abcdef" * 4 + " https://example.com/plugin.tar.gz /opt/plugin/", True),
    ("RUN chmod u-s /opt/legacy/oldsuid && rm -f /opt/legacy/gone-suid /root/.python_history", False),  # L3
    ("RUN setcap cap_net_raw+ep /usr/local/bin/pinger && apt-get install -y visudo-docs", False),     # L4
    ("/bin/sh -c #(nop)  EXPOSE 22/tcp 8080/tcp 2222/tcp", True),
    ("/bin/sh -c #(nop)  HEALTHCHECK NONE", True),
    ('/bin/sh -c #(nop)  ENTRYPOINT ["sudo" "-u" "appsvc" "/opt/app/bin/both"]', True),  # step 9
    ("/bin/sh -c #(nop)  USER root", True),
]
LAYER_CREATED_BY = [h for h, empty in HISTORY if not empty]

def cap_hex(words):
    return "".join(w.to_bytes(4, "little").hex() for w in words)

CAP_V2_NET_RAW = cap_hex([0x02000001, 1 << 13, 0, 0, 0])        # cap_net_raw+ep
CAP_V3_BIND = cap_hex([0x03000001, 1 << 10, 0, 0, 0, 0])        # cap_net_bind_service+ep, rootid 0

def layers():
    L0 = Layer("gzip", LAYER_CREATED_BY[0])
    for d in ["usr/bin", "usr/sbin", "usr/lib", "usr/local/bin", "usr/local/sbin", "etc", "tmp", "var/tmp",
              "var/lib/dpkg/info", "root", "home", "opt", "srv", "dev"]:
        L0.dir(d)
    L0.add("bin", "symlink", "0777", link="usr/bin")
    L0.add("sbin", "symlink", "0777", link="usr/sbin")
    L0.add("lib", "symlink", "0777", link="usr/lib")
    L0.file("etc/os-release", OS_RELEASE)
    L0.file("etc/passwd", PASSWD)
    L0.file("etc/group", GROUP)
    L0.file("etc/shadow", SHADOW, "0644", 0, SHADOW_G)           # shadow-readable
    L0.file("etc/gshadow", GSHADOW, "0640", 0, SHADOW_G)         # clean
    L0.file("var/lib/dpkg/status", STATUS_L0)                    # replaced in L1: clean
    L0.file("var/lib/dpkg/info/util-linux.list", "/.\n/bin\n/bin/su\n/usr\n/usr/bin\n")
    L0.file("var/lib/dpkg/info/util-linux.md5sums", md5(SU) + "  bin/su\n")
    L0.file("var/lib/dpkg/info/passwd.list", "/.\n/usr\n/usr/bin\n/usr/bin/chage\n/usr/bin/passwd\n")
    L0.file("var/lib/dpkg/info/passwd.md5sums",
            md5(CHAGE) + "  usr/bin/chage\n" + md5(PASSWD_BIN) + "  usr/bin/passwd\n")
    L0.file("var/lib/dpkg/info/removed-pkg.list", "/.\n/usr\n/usr/local\n/usr/local/bin\n/usr/local/bin/rootsh\n")
    L0.file("var/lib/dpkg/info/removed-pkg.md5sums", md5("something else") + "  usr/local/bin/rootsh\n")
    L0.file("usr/bin/su", SU, "4755")                            # setuid-expected (util-linux, /bin/su)
    L0.file("usr/bin/passwd", PASSWD_BIN, "4755")                # setuid-expected (passwd)
    L0.file("usr/bin/chage", CHAGE, "2755", 0, SHADOW_G)         # setgid-expected (passwd)
    L0.add("usr/local/sbin/su-link", "hardlink", "4755", link="usr/bin/su")  # setuid-unpackaged

    L1 = Layer("gzip", LAYER_CREATED_BY[1])
    L1.file("var/lib/dpkg/status", STATUS_L1)
    L1.file("var/lib/dpkg/info/tooling.list",
            "/.\n/etc\n/etc/tooling.conf\n/usr\n/usr/bin\n/usr/bin/pkgmail\n/usr/bin/pkgtool\n/usr/lib\n"
            "/usr/lib/tooling\n/usr/lib/tooling/libtool.so\n/usr/share\n/usr/share/doc\n"
            "/usr/share/doc/tooling\n/usr/share/doc/tooling/README\n")
    L1.file("var/lib/dpkg/info/tooling.md5sums",
            md5(PKGMAIL) + "  usr/bin/pkgmail\n" + md5(PKGTOOL) + "  usr/bin/pkgtool\n" +
            md5(LIBTOOL_RECORDED) + "  usr/lib/tooling/libtool.so\n" + md5(README) + "  usr/share/doc/tooling/README\n")
    L1.file("var/lib/dpkg/info/tooling.conffiles", "/etc/tooling.conf\n")
    L1.file("var/lib/dpkg/info/libexample:amd64.list",
            "/.\n/usr\n/usr/lib\n/usr/lib/x86_64-linux-gnu\n/usr/lib/x86_64-linux-gnu/libexample.so.1\n")
    L1.file("var/lib/dpkg/info/libexample:amd64.md5sums",
            md5(LIBEX_RECORDED) + "  usr/lib/x86_64-linux-gnu/libexample.so.1\n")
    L1.file("usr/bin/pkgtool", PKGTOOL, "4755")                  # setuid-packaged
    L1.file("usr/bin/pkgmail", PKGMAIL, "2755", 0, MAIL)         # setgid-packaged
    L1.file("usr/lib/tooling/libtool.so", LIBTOOL_ON_DISK)       # integrity-mismatch
    L1.file("usr/lib/x86_64-linux-gnu/libexample.so.1", LIBEX_ON_DISK)  # integrity-mismatch
    L1.file("usr/share/doc/tooling/README", README)              # clean (md5 right)
    L1.file("etc/tooling.conf", "edited = yes\n")                # clean (conffile)
    L1.file("opt/legacy/oldsuid", ELF, "4755")                   # re-added 0755 in L3: clean
    L1.file("opt/legacy/gone-suid", ELF, "4755")                 # whiteout in L3: clean
    L1.file("root/.python_history", "print('hello')\n", "0600")  # whiteout in L3: sensitive-history, deleted

    L2 = Layer("zstd", LAYER_CREATED_BY[2])
    L2.dir("opt/app")
    L2.file("opt/app/bin/both", ELF, "6755", APPSVC, APPGRP)     # setuid-unpackaged + setgid-unpackaged
    L2.file("opt/app/.env", "APP_MODE=production\nLOG_LEVEL=debug\n", "0640", APPSVC, APPGRP)  # sensitive-dotenv
    L2.file("opt/app/.env.example", "APP_MODE=\n", "0644", APPSVC, APPGRP)   # clean
    L2.file("opt/app/empty.env", "", "0644", APPSVC, APPGRP)                 # clean (empty)
    L2.file("opt/app/config.json", '{"port": 8080}\n', "0644", APPSVC, APPGRP)  # clean
    L2.file("home/appsvc/.ssh/authorized_keys", "ssh-ed25519 AAAAplantedtestkey appsvc@ci\n", "0600",
            APPSVC, APPGRP)                                                  # sensitive-authorized-keys
    L2.file("home/appsvc/.ssh/id_ed25519.pub", "ssh-ed25519 AAAAplantedtestkey appsvc@ci\n", "0644",
            APPSVC, APPGRP)                                                  # clean
    L2.file("home/appsvc/.npmrc", "//registry.npmjs.org/:_authToken=${NPM_TOKEN}\n", "0600",
            APPSVC, APPGRP)                                                  # sensitive-credentials-file
    L2.dir("srv/www/.git")                                                   # sensitive-git-dir
    L2.file("srv/www/.git/HEAD", "ref: refs/heads/main\n", "0644", APPSVC, APPGRP)
    L2.dir("srv/www/.github")
    L2.file("srv/www/.gitignore", "*.log\n", "0644", APPSVC, APPGRP)
    L2.file("srv/shared/notes.txt", "shared notes\n", "0666", APPSVC, APPGRP)  # world-writable (file)
    L2.dir("srv/dropbox")                                                    # world-writable (dir)
    L2.dir("srv/team")                                                       # clean (setgid dir)
    L2.dir("srv/public")                                                     # clean (sticky)

    L3 = Layer("gzip", LAYER_CREATED_BY[3])
    L3.file("opt/legacy/oldsuid", ELF, "0755")
    L3.file("opt/legacy/.wh.gone-suid", "")
    L3.file("root/.wh..python_history", "")

    L4 = Layer("gzip", LAYER_CREATED_BY[4])
    L4.file("usr/local/bin/rootsh", ELF, "4755")                            # setuid-unpackaged
    L4.file("usr/local/bin/grpsh", ELF, "2755", 0, STAFF)                   # setgid-unpackaged
    L4.file("usr/local/bin/suid.sh", "#!/bin/sh\nexec /bin/sh\n", "4755")   # setuid-script
    L4.file("usr/local/bin/sgid.sh", "#!/bin/sh\nexec id\n", "2755", 0, STAFF)  # setgid-script
    L4.file("usr/local/bin/wsuid", ELF, "4775", 0, STAFF)                   # setuid-writable
    L4.file("usr/local/bin/wsgid", ELF, "2775", 0, STAFF)                   # setgid-writable
    L4.file("usr/local/bin/pinger", ELF, "0755",
            xattrs={"security.capability": {"hex": CAP_V2_NET_RAW}})        # capability
    L4.file("usr/local/bin/binder", ELF, "0750", 0, STAFF,
            xattrs={"security.capability": {"hex": CAP_V3_BIND}})           # capability
    L4.file("opt/orphan.dat", "orphan\n", "0644", 31337, 31337)             # unknown-owner
    L4.add("opt/devs/null", "char", "0666", major=1, minor=3)               # device-node
    L4.add("opt/devs/sda", "block", "0660", 0, DISK, major=8, minor=0)      # device-node
    L4.file("etc/ssl/private/server.key", "not a real key, planted by moat tests\n", "0644")  # private-key-readable
    L4.file("etc/ssl/private/other.key", "not a real key either\n", "0640", 0, SSLCERT)      # clean
    L4.file("etc/ssl/certs/server.crt", "-----BEGIN CERTIFICATE-----\nplanted\n-----END CERTIFICATE-----\n")
    L4.file("etc/ssh/ssh_host_ed25519_key", FAKE_KEY, "0600")               # sensitive-ssh-key
    L4.file("etc/ssh/ssh_host_ed25519_key.pub", "ssh-ed25519 AAAAplantedhostkey root@ci\n")  # clean
    L4.file("root/.bash_history", "ls -la\napt-get update\n", "0600")       # sensitive-history
    L4.file("root/.bashrc", "alias ll='ls -l'\n")
    L4.file("root/.npmrc", "registry=https://registry.example.com/\n", "0600")  # clean (no marker)
    L4.file("root/.ssh/id_ed25519", FAKE_KEY, "0600")                       # sensitive-ssh-key
    L4.file("root/.ssh/id_rsa", "this file only has a key's name\n", "0600")  # clean (no marker)
    L4.file("root/.ssh/known_hosts", "example.com ssh-ed25519 AAAAplanted\n")
    return [L0, L1, L2, L3, L4]

def spec():
    return {
        "format": "oci",
        "tag": "latest",
        "layers": [l.json() for l in layers()],
        "config": {
            "User": "root",
            "ExposedPorts": {"22/tcp": {}, "8080/tcp": {}, "2222/tcp": {}},
            "Healthcheck": {"Test": ["NONE"]},
            "Entrypoint": ["sudo", "-u", "appsvc", "/opt/app/bin/both"],
        },
        "history": [dict({"created": "2024-01-01T00:00:00Z", "created_by": h}, **({"empty_layer": True} if e else {}))
                    for h, e in HISTORY],
    }

# ---------------------------------------------------------------- expected findings
def own(uid, gid):
    return {"uid": uid, "gid": gid, "user": NAMES_U.get(uid), "group": NAMES_G.get(gid)}

def F(rule, path, layer, uid=0, gid=0, mode=None, package=None, deleted=False, msg=None):
    return {"rule_id": rule, "target": "filesystem", "path": path, "config_field": None, "layer": layer,
            "deleted": deleted, "owner": own(uid, gid), "mode": mode, "package": package, "msg": msg}

def A(rule, path, msg):  # account findings: the file and layer, no owner or mode
    return {"rule_id": rule, "target": "filesystem", "path": path, "config_field": None, "layer": 0,
            "deleted": False, "owner": None, "mode": None, "package": None, "msg": msg}

def C(rule, field, layer, msg=None):
    return {"rule_id": rule, "target": "config", "path": None, "config_field": field, "layer": layer,
            "deleted": False, "owner": None, "mode": None, "package": None, "msg": msg}

EXPECTED = [
    # L0
    F("shadow-readable", "/etc/shadow", 0, 0, SHADOW_G, "0644"),
    A("account-extra-uid0", "/etc/passwd", "toor"),
    A("account-empty-password", "/etc/passwd", "guest"),
    A("account-empty-password", "/etc/shadow", "nopass"),
    A("account-duplicate", "/etc/passwd", "toor"),
    A("account-duplicate", "/etc/group", "staff2"),
    F("setuid-expected", "/usr/bin/su", 0, mode="4755", package="util-linux"),
    F("setuid-expected", "/usr/bin/passwd", 0, mode="4755", package="passwd"),
    F("setgid-expected", "/usr/bin/chage", 0, 0, SHADOW_G, "2755", package="passwd"),
    F("setuid-unpackaged", "/usr/local/sbin/su-link", 0, mode="4755"),
    # L1
    F("setuid-packaged", "/usr/bin/pkgtool", 1, mode="4755", package="tooling"),
    F("setgid-packaged", "/usr/bin/pkgmail", 1, 0, MAIL, "2755", package="tooling"),
    F("integrity-mismatch", "/usr/lib/tooling/libtool.so", 1, mode="0644", package="tooling"),
    F("integrity-mismatch", "/usr/lib/x86_64-linux-gnu/libexample.so.1", 1, mode="0644", package="libexample"),
    F("sensitive-history", "/root/.python_history", 1, mode="0600", deleted=True),
    # L2 (zstd)
    F("setuid-unpackaged", "/opt/app/bin/both", 2, APPSVC, APPGRP, "6755", msg="appsvc"),
    F("setgid-unpackaged", "/opt/app/bin/both", 2, APPSVC, APPGRP, "6755", msg="appgrp"),
    F("sensitive-dotenv", "/opt/app/.env", 2, APPSVC, APPGRP, "0640"),
    F("sensitive-authorized-keys", "/home/appsvc/.ssh/authorized_keys", 2, APPSVC, APPGRP, "0600"),
    F("sensitive-credentials-file", "/home/appsvc/.npmrc", 2, APPSVC, APPGRP, "0600"),
    F("sensitive-git-dir", "/srv/www/.git", 2, APPSVC, APPGRP, "0755"),
    F("world-writable", "/srv/shared/notes.txt", 2, APPSVC, APPGRP, "0666"),
    F("world-writable", "/srv/dropbox", 2, 0, 0, "0777"),
    # L4
    F("setuid-unpackaged", "/usr/local/bin/rootsh", 4, mode="4755"),
    F("setgid-unpackaged", "/usr/local/bin/grpsh", 4, 0, STAFF, "2755", msg="staff"),
    F("setuid-script", "/usr/local/bin/suid.sh", 4, mode="4755"),
    F("setgid-script", "/usr/local/bin/sgid.sh", 4, 0, STAFF, "2755"),
    F("setuid-writable", "/usr/local/bin/wsuid", 4, 0, STAFF, "4775", msg="group"),
    F("setgid-writable", "/usr/local/bin/wsgid", 4, 0, STAFF, "2775", msg="group"),
    F("capability", "/usr/local/bin/pinger", 4, mode="0755", msg="cap_net_raw+ep"),
    F("capability", "/usr/local/bin/binder", 4, 0, STAFF, "0750", msg="cap_net_bind_service+ep"),
    F("unknown-owner", "/opt/orphan.dat", 4, 31337, 31337, "0644", msg="31337"),
    F("device-node", "/opt/devs/null", 4, 0, 0, "0666", msg="1:3"),
    F("device-node", "/opt/devs/sda", 4, 0, DISK, "0660", msg="8:0"),
    F("private-key-readable", "/etc/ssl/private/server.key", 4, mode="0644"),
    F("sensitive-ssh-key", "/etc/ssh/ssh_host_ed25519_key", 4, mode="0600"),
    F("sensitive-history", "/root/.bash_history", 4, mode="0600"),
    F("sensitive-ssh-key", "/root/.ssh/id_ed25519", 4, mode="0600"),
    # image config
    C("config-runs-as-root", "User", None, "root"),
    C("config-ssh-port", "ExposedPorts", None, "22/tcp"),
    C("config-no-healthcheck", "Healthcheck", None),
    C("config-add-url", "History", 0, "example.com/rootfs.tar.gz"),
    C("config-sudo", "History", 1, "sudo apt-get"),
    C("config-sudo", "History", None, "ENTRYPOINT"),
]

def category(rule):
    for prefix, cat in [("setuid-", "setuid"), ("setgid-", "setgid"), ("account-", "account"),
                        ("sensitive-", "sensitive-file"), ("config-", "config")]:
        if rule.startswith(prefix):
            return cat
    return {"capability": "capability", "world-writable": "permission", "shadow-readable": "permission",
            "private-key-readable": "permission", "unknown-owner": "ownership", "device-node": "device",
            "integrity-mismatch": "integrity"}[rule]

def key(f):
    layer = f["layer"] if isinstance(f["layer"], (int, type(None))) else f["layer"]["index"]
    subject = f["path"] if f["target"] == "filesystem" else f["config_field"]
    return (f["rule_id"], subject, layer, f["deleted"])

def fmt(k):
    return "%s %s layer=%s%s" % (k[0], k[1], k[2], " deleted" if k[3] else "")

def check(severities, report, argv):
    only, drop = None, set()
    i = 0
    while i < len(argv):
        if argv[i] == "--category":
            only = argv[i + 1]
        elif argv[i] == "--drop":
            drop.add(tuple(argv[i + 1].split("=", 1)))
        else:
            raise SystemExit("planted.py: unknown option " + argv[i])
        i += 2
    problems = []
    missing_rules = set(severities) - {e["rule_id"] for e in EXPECTED}
    if missing_rules:
        problems.append("the planted table has no plant for " + ", ".join(sorted(missing_rules)))
    expected = [e for e in EXPECTED if (only is None or category(e["rule_id"]) == only)
                and (e["rule_id"], e["path"]) not in drop]
    with open(report, "rb") as f:
        doc = json.load(f)
    got = doc["findings"]
    layers = doc["image"]["layers"]
    if [l["index"] for l in layers] != list(range(5)):
        problems.append("image.layers indexes are %s, expected 0..4" % [l["index"] for l in layers])
    for l in layers:
        if l["index"] < len(LAYER_CREATED_BY) and l["created_by"] != LAYER_CREATED_BY[l["index"]]:
            problems.append("image.layers[%d].created_by is %r, expected %r" % (l["index"], l["created_by"],
                                                                              LAYER_CREATED_BY[l["index"]]))
    want_keys = collections.Counter(key(e) for e in expected)
    got_keys = collections.Counter(key(f) for f in got)
    for k in sorted(want_keys - got_keys, key=str):
        problems.append("MISSING    " + fmt(k))
    for k in sorted(got_keys - want_keys, key=str):
        f = next(f for f in got if key(f) == k)
        problems.append("UNEXPECTED " + fmt(k) + "  (" + f.get("message", "") + ")")
    by_key = {}
    for f in got:
        by_key.setdefault(key(f), f)
    for e in expected:
        f = by_key.get(key(e))
        if f is None:
            continue
        where = fmt(key(e))
        def differ(field, want, have):
            if want != have:
                problems.append("%s: %s is %s, expected %s" % (where, field, json.dumps(have), json.dumps(want)))
        differ("category", category(e["rule_id"]), f["category"])
        differ("severity", severities[e["rule_id"]], f["severity"])
        differ("target", e["target"], f["target"])
        differ("path", e["path"], f["path"])
        differ("config_field", e["config_field"], f["config_field"])
        differ("owner", e["owner"], f["owner"])
        differ("mode", e["mode"], f["mode"])
        differ("package", e["package"], f["package"])
        differ("secret", None, f["secret"])
        if e["layer"] is None:
            differ("layer", None, f["layer"])
        elif f["layer"] is not None and e["layer"] < len(layers):
            l = layers[e["layer"]]
            differ("layer.diff_id", l["diff_id"], f["layer"]["diff_id"])
            differ("layer.created_by", LAYER_CREATED_BY[e["layer"]], f["layer"]["created_by"])
        if e["msg"] and e["msg"] not in f["message"]:
            problems.append("%s: message %r does not contain %r" % (where, f["message"], e["msg"]))
        if not f["title"]:
            problems.append(where + ": empty title")
    fps = [f["fingerprint"] for f in got]
    if len(set(fps)) != len(fps):
        problems.append("fingerprints are not unique")
    counts = collections.Counter(f["severity"] for f in got)
    for sev in ["critical", "high", "medium", "low", "info"]:
        if doc["summary"][sev] != counts.get(sev, 0):
            problems.append("summary.%s is %d, the findings have %d" % (sev, doc["summary"][sev], counts.get(sev, 0)))
    if doc["errors"]:
        problems.append("report errors: %s" % doc["errors"])
    for p in problems:
        print("  " + p, file=sys.stderr)
    print("  %d findings, %d expected, %d problems" % (len(got), len(expected), len(problems)), file=sys.stderr)
    return 1 if problems else 0

def sarif(severities, path):
    with open(path, "rb") as f:
        doc = json.load(f)
    results = doc["runs"][0]["results"]
    want = collections.Counter(e["rule_id"] for e in EXPECTED)
    got = collections.Counter(r["ruleId"] for r in results)
    if want != got:
        print("  SARIF ruleIds differ: missing %s, unexpected %s" % (dict(want - got), dict(got - want)),
              file=sys.stderr)
        return 1
    return 0

def without_duration(b):
    return re.sub(rb'"duration_ms"\s*:\s*[0-9]+', b'"duration_ms":0', b)

def main():
    severities = json.load(open(sys.argv[1]))["severities"]
    cmd, args = sys.argv[2], sys.argv[3:]
    if cmd == "spec":
        json.dump(spec(), sys.stdout, indent=1)
        return 0
    if cmd == "check":
        return check(severities, args[0], args[1:])
    if cmd == "sarif":
        return sarif(severities, args[0])
    if cmd == "same-bytes":
        a, b = (without_duration(open(p, "rb").read()) for p in args)
        return 0 if a == b else 1
    if cmd == "same-findings":
        a, b = (json.load(open(p))["findings"] for p in args)
        if a != b:
            ka, kb = [fmt(key(f)) for f in a], [fmt(key(f)) for f in b]
            print("  findings differ; only in %s: %s; only in %s: %s" % (
                args[0], sorted(set(ka) - set(kb)), args[1], sorted(set(kb) - set(ka))), file=sys.stderr)
            for fa, fb in zip(a, b):
                if fa != fb:
                    print("  first difference:\n   %s\n   %s" % (json.dumps(fa), json.dumps(fb)), file=sys.stderr)
                    break
            return 1
        return 0
    raise SystemExit("planted.py: unknown command " + cmd)

sys.exit(main())
# ---- end of planted.py ----
