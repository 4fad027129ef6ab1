#!/usr/bin/env bash
# The secrets corpus, end to end: every file of tests/secrets/corpus/ (realistic
# configs, scripts and manifests for each leak shape of issue 13, plus
# look-alikes that must stay silent) goes into an OCI image made by
# moat-fixture, together with a config whose history and Env hold credentials;
# the real binary scans it.
#
#   bash test-corpus.sh MOAT_BINARY FIXTURE_BINARY
#
# Checks:
#  - the secret findings are exactly tests/secrets/corpus.expected (path, rule,
#    line) plus the config ones listed below: nothing missed, nothing extra (a
#    diff on mismatch), each with its rule's severity and a redaction that is
#    not the secret;
#  - no whole secret of the corpus or of the config (the history password no
#    rule reports included) appears in the JSON, table (--verbose) or SARIF
#    output, or on stderr.
# Runs as the calling user with a private store; ~5 s.
# With MOAT_CORPUS_COUNT=1 it only prints "found X of Y expected, Z extra"
# (for comparing two moat builds) and exits 0.
set -euo pipefail
MOAT=${1:?usage: $0 MOAT_BINARY FIXTURE_BINARY}
FIXTURE=${2:?usage: $0 MOAT_BINARY FIXTURE_BINARY}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
TEST_NAME=secrets.corpus
source "$HERE/../lib/common.sh"
need python3 jq

W=$(mktemp -d /tmp/moat-secrets-corpus.XXXXXX)
trap 'rm -rf "$W"' EXIT

# ---- the image: the corpus under /srv/corpus, a config with history and Env
python3 - "$HERE/corpus" "$HERE/corpus.expected" "$W" <<'PY'
import hashlib, json, os, sys
corpus, manifest, out = sys.argv[1:4]
entries, dirs = [], set()
for root, ds, fs in os.walk(corpus):
    ds.sort()
    for name in sorted(fs):
        full = os.path.join(root, name)
        rel = os.path.relpath(full, corpus)
        data = open(full, "rb").read()
        assert all(b < 0x80 for b in data), f"{rel}: corpus files must be ASCII (moat-fixture takes content as text)"
        parts = ("srv/corpus/" + rel).split("/")
        for i in range(1, len(parts)):
            d = "/".join(parts[:i])
            if d not in dirs:
                dirs.add(d)
                entries.append({"path": d, "type": "dir", "mode": "0755"})
        entries.append({"path": "srv/corpus/" + rel, "content": data.decode("ascii"), "mode": "0644"})

def rnd(tag, n, alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"):
    s, i = "", 0
    while len(s) < n:
        s += "".join(alphabet[b % len(alphabet)] for b in hashlib.sha256(f"moat-corpus-config/{tag}/{i}".encode()).digest())
        i += 1
    return s[:n]

hist_pw = rnd("histpw", 18)           # db_password in a RUN line: generic.command-assignment finds it
hist_weak = "aaaabbbb1111"             # too weak for any rule: only the history redaction hides it
npm = "npm_" + rnd("npm", 36)
env_pw = rnd("envpw", 20)
history = [
    {"created_by": "/bin/sh -c #(nop) ADD file:0c3b5d7e9f in / "},
    {"created_by": f"ARG NPM_TOKEN={npm}", "empty_layer": True},
    {"created_by": f"/bin/sh -c echo \"db_password={hist_pw}\" > /etc/billing.conf && echo \"smtp_password={hist_weak}\" >> /etc/billing.conf",
     "empty_layer": True},
    {"created_by": "/bin/sh -c #(nop)  CMD [\"/usr/local/bin/billing\"]", "empty_layer": True},
]
env = ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
       f"BILLING_DB_PASSWORD={env_pw}",   # a rule reports it: no second finding
       "SMTP_PASSWORD=hunter22",          # no rule (too weak): config.env-credential, medium
       "AUTH_KEY_FILE=/run/secrets/auth", "GITHUB_TOKEN=${GITHUB_TOKEN}"]
spec = {"format": "oci", "tag": "latest", "layers": [{"created_by": "COPY corpus /srv/corpus", "entries": entries}],
        "config": {"Env": env, "User": "1000"}, "history": history}
json.dump(spec, open(os.path.join(out, "spec.json"), "w"))

expect = []
for line in open(manifest):
    if line.startswith("#") or not line.strip():
        continue
    path, rule, ln, secret = line.rstrip("\n").split("\t")
    expect.append({"where": "/srv/corpus/" + path, "rule": rule, "line": int(ln), "secret": secret})
expect += [{"where": "History", "rule": "generic.command-assignment", "line": None, "secret": hist_pw},
           {"where": "History", "rule": "npm.access-token", "line": None, "secret": npm},
           {"where": "Env", "rule": "generic.env-assignment", "line": None, "secret": env_pw},
           {"where": "Env", "rule": "config.env-credential", "line": None, "secret": "hunter22", "severity": "medium"}]
json.dump(expect, open(os.path.join(out, "expected.json"), "w"), indent=1)
with open(os.path.join(out, "secrets.txt"), "w") as fh:
    fh.write("\n".join(sorted({e["secret"] for e in expect} | {hist_weak})) + "\n")
PY
"$FIXTURE" "$W/spec.json" "$W/image" >/dev/null || fail "moat-fixture could not build the corpus image"
IMG="oci:$W/image:latest"

scan() {  # scan NAME ARGS...: stdout to $W/NAME, stderr to $W/NAME.err; exit status 0 or 1 is fine
  local name=$1 rc=0; shift
  "$MOAT" scan --store "$W/store" --fail-on none "$IMG" "$@" >"$W/$name" 2>"$W/$name.err" || rc=$?
  [[ $rc -eq 0 ]] || { cat "$W/$name.err" >&2; fail "moat scan $* exited $rc"; }
}
scan report.json --format json
"$MOAT" rules list >"$W/rules.txt"

cat >"$W/check.py" <<'PY'
import collections, json, os, re, sys
W = sys.argv[1]
count_only = os.environ.get("MOAT_CORPUS_COUNT") == "1"
exp = json.load(open(f"{W}/expected.json"))
rep = json.load(open(f"{W}/report.json"))
sev = {}
for line in open(f"{W}/rules.txt"):
    p = line.split()
    if len(p) >= 2 and p[1] in ("critical", "high", "medium", "low", "info"):
        sev[p[0]] = p[1]
def where(f):
    return f["path"] if f.get("target") == "filesystem" else f.get("config_field")
def key(f):
    sec = f.get("secret") or {}
    return (where(f), f["rule_id"], sec.get("line") if f.get("target") == "filesystem" else None)
got = collections.Counter(key(f) for f in rep["findings"] if f.get("category") == "secret")
want = collections.Counter((e["where"], e["rule"], e["line"]) for e in exp)
missing, extra = want - got, got - want
if count_only:
    print(f"found {sum((want & got).values())} of {sum(want.values())} expected findings, {sum(extra.values())} extra")
    sys.exit(0)
errors = []
for k in sorted(missing, key=str):
    errors.append(f"missed:     {k[0]} line {k[2]}: {k[1]}")
for k in sorted(extra, key=str):
    f = next(f for f in rep["findings"] if f.get("category") == "secret" and key(f) == k)
    errors.append(f"unexpected: {k[0]} line {k[2]}: {k[1]} ({f['secret'].get('redacted')}, {f['severity']})")
by = {(e["where"], e["rule"], e["line"]): e for e in exp}
for f in rep["findings"]:
    e = by.get(key(f))
    if f.get("category") != "secret" or e is None:
        continue
    red = (f.get("secret") or {}).get("redacted", "")
    if not red or e["secret"] in red or len(re.sub(r"[*.]", "", red)) > len(e["secret"]) // 2:
        errors.append(f"{key(f)}: redaction {red!r} shows too much")
    want_sev = e.get("severity") or sev.get(f["rule_id"])
    if f["severity"] != want_sev:
        errors.append(f"{key(f)}: severity {f['severity']}, the rule says {want_sev}")
for m in errors:
    print(m)
print(f"{sum((want & got).values())} of {sum(want.values())} expected findings, {sum(extra.values())} unexpected")
sys.exit(1 if errors else 0)
PY
if [[ ${MOAT_CORPUS_COUNT:-0} == 1 ]]; then python3 "$W/check.py" "$W"; exit 0; fi
python3 "$W/check.py" "$W" || fail "the findings differ from tests/secrets/corpus.expected (above)"

scan table.txt --format table --verbose
scan report.sarif --format sarif
leaks=0
while IFS= read -r s; do
  [[ -n $s ]] || continue
  for f in report.json report.json.err table.txt table.txt.err report.sarif report.sarif.err; do
    if grep -qF -- "$s" "$W/$f"; then
      echo "LEAK: $f holds a whole secret (${s:0:4}..., ${#s} characters)" >&2
      leaks=$((leaks + 1))
    fi
  done
done <"$W/secrets.txt"
[[ $leaks -eq 0 ]] || fail "$leaks whole secret(s) in moat's output"
echo "PASS: secrets.corpus"
