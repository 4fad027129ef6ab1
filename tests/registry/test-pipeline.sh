#!/usr/bin/env bash
# The secret scan that starts while the image is still being pulled
# (scanner/checks/secret_prefetch.h) gives exactly the report of a scan of the
# same image from an OCI layout, and the report of a scan after the pull: the
# JSON of `moat scan docker://`, of `moat scan oci:` and of `moat image pull`
# then `moat scan` are the same but for the reference and the duration, for a
# user with a subuid range (root of its namespace) and one without (moat-single).
# The image has what the early scan must not get wrong: files rewritten later in
# the same layer (secret first, secret last), a file replaced by a symlink, a
# hardlink to a lower layer's file (a copy made after the unpack, also over a
# file of the same layer), a whiteout, a
# parent directory the tar does not list, a directory without search permission,
# a large file, and enough files for many batches. `-v` shows the early scan
# really ran (files scanned as they landed) and where the pull rewrote a file.
source "$(dirname "$0")/lib.sh" "$@"
need jq

# Tokens are made here (no secret-looking literal in the repository).
$PY - "$W/pub/pipe.json" <<'PYEOF'
import json, random, sys
r = random.Random(9)
al = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
def tok(): return "ghp_" + "".join(r.choice(al) for _ in range(36))
def text(n): return "".join(r.choice(al + "   \n") for _ in range(n))
def f(path, content, **kw): return dict(path=path, content=content, **kw)
l0 = [dict(path="d0/", type="dir"), dict(path="d1/", type="dir"), dict(path="locked/", type="dir", mode="0600")]
for i in range(700):
    body = text(300 + (i * 37) % 2000)
    if i % 97 == 0: body += "\ntoken=" + tok() + "\n"
    l0.append(f("d%d/f%03d.txt" % (i % 2, i), body))
l0 += [
    f("big.bin", text(3 << 20) + "\nkey " + tok() + "\n"),
    f("dup-secret-first", "first " + tok() + "\n"), f("dup-secret-first", "clean now\n"),
    f("dup-secret-last", "clean at first\n"), f("dup-secret-last", "then " + tok() + "\n"),
    f("dup-twice", "a " + tok() + "\n"), f("dup-twice", "b " + tok() + "\n"),
    f("gone", "gh " + tok() + "\n"), dict(path="gone", type="symlink", link="d0/f000.txt"),
    f("lowtarget", "lower " + tok() + "\n"),
    f("deleted-later", "del " + tok() + "\n"),
    f("locked/inside", "locked " + tok() + "\n"),
    f("empty", ""),
]
l1 = [
    dict(path="lowlink", type="hardlink", link="lowtarget"),
    f("relinked", "before " + tok() + "\n"), dict(path="relinked", type="hardlink", link="lowtarget"),
    f("d0/sub/implicit-parent", "imp " + tok() + "\n"),
    f("new/deep/implicit", "new " + tok() + "\n"),
    f(".wh.deleted-later", ""),
    f("d1/f001.txt", "overwritten " + tok() + "\n"),
]
l2 = [f("top/t%03d" % i, text(500) + ("\n" + tok() if i == 5 else "")) for i in range(300)]
json.dump({"tag": "latest", "layers": [{"entries": l0}, {"compression": "zstd", "entries": l1},
                                       {"entries": l2}]}, open(sys.argv[1], "w"))
PYEOF
"$W/moat-fixture" "$W/pub/pipe.json" "$W/pub/pipe" >/dev/null || fail "moat-fixture pipe"
chmod -R a+rX "$W/pub/pipe"
start_registry plain
R=127.0.0.1:$REG_PORT_plain
push oci:$W/pub/pipe:latest docker://$R/moat/pipe:1
: >"$W/empty.conf"
chmod a+r "$W/empty.conf"
export MOAT_ENV="CONTAINERS_REGISTRIES_CONF=$W/empty.conf"

# The report without what names the source or the time.
norm() { jq -S 'del(.image.reference) | del(.scan.duration_ms)' "$1"; }

for u in moat-subuid moat-single; do
  note "$u: docker:// (secrets scanned during the pull) and oci: (after it) give the same report"
  STORE=$W/users/$u.reg scan_as "$u" 0 "docker://$R/moat/pipe:1" --cert-dir "$W/certs" -v
  norm "$W/out" >"$W/$u.reg.json"
  cp "$W/err" "$W/$u.reg.err"
  STORE=$W/users/$u.oci scan_as "$u" 0 "oci:$W/pub/pipe:latest"
  norm "$W/out" >"$W/$u.oci.json"
  diff -u "$W/$u.oci.json" "$W/$u.reg.json" >&2 || fail "$u: docker:// and oci: reports differ"
  # The reference: the pull first (nothing scanned during it), then the scan of the stored layers.
  moat_as "$u" 0 image pull --store "$W/users/$u.ref" "oci:$W/pub/pipe:latest"
  STORE=$W/users/$u.ref scan_as "$u" 0 "oci:$W/pub/pipe:latest" -v
  expect_no_err "scanned as they landed"
  norm "$W/out" >"$W/$u.ref.json"
  diff -u "$W/$u.ref.json" "$W/$u.oci.json" >&2 || fail "$u: the scan during the pull and the scan after it differ"
  n=$(jq '[.findings[] | select(.category == "secret")] | length' "$W/$u.reg.json")
  [[ $n -ge 12 ]] || fail "$u: only $n secret findings"
  for p in /dup-secret-last /dup-twice /lowlink /new/deep/implicit /d1/f001.txt /big.bin /top/t005; do
    jq -e --arg p "$p" '.findings[] | select(.category == "secret" and .path == $p)' "$W/$u.reg.json" >/dev/null ||
      fail "$u: no secret reported in $p"
  done
  # The first version of dup-secret-first never reached the image's final layer tree.
  if jq -e '.findings[] | select(.category == "secret" and .path == "/dup-secret-first")' "$W/$u.reg.json" >/dev/null; then
    fail "$u: a secret reported in /dup-secret-first, whose last version is clean"
  fi
  [[ $(jq '[.findings[] | select(.category == "secret" and .path == "/dup-twice")] | length' "$W/$u.reg.json") -eq 1 ]] ||
    fail "$u: /dup-twice must report only its last version's token"
  # The layer with the hardlink to a lower file: one file rewritten by the pull, scanned after it.
  grep -qE "secrets of [0-9]+ of [0-9]+ files scanned as they landed, [1-9][0-9]* after the layer was complete" "$W/$u.reg.err" ||
    { cat "$W/$u.reg.err" >&2; fail "$u: no layer had files scanned after it was complete"; }
done

note "the early scan ran: the first layer's files were scanned as they landed (root of the namespace)"
grep -qE "secrets of [1-9][0-9]{2,} of [0-9]+ files scanned as they landed" "$W/moat-subuid.reg.err" ||
  { cat "$W/moat-subuid.reg.err" >&2; fail "no layer's files were scanned while the image was pulled"; }
note "without a subuid range, a layer with a directory the user cannot search is scanned after the pull"
grep -qE "secrets of 0 of [0-9]+ files scanned as they landed" "$W/moat-single.reg.err" ||
  { cat "$W/moat-single.reg.err" >&2; fail "moat-single: the layer with locked/ was not left to the scan after the pull"; }
grep -q '"locked/inside' "$W/moat-single.reg.json" || grep -q 'locked/inside' "$W/moat-single.reg.json" ||
  fail "moat-single: nothing about locked/inside (an error or a finding) in the report"

note "a rescan finds every layer's secrets in its cache: same report"
STORE=$W/users/moat-subuid.reg scan_as moat-subuid 0 "docker://$R/moat/pipe:1" --cert-dir "$W/certs" -v
norm "$W/out" | diff -u "$W/moat-subuid.reg.json" - >&2 || fail "rescan report differs"
expect_err "secrets from the cache"
echo "PASS: $TEST_NAME"
