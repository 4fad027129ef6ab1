#!/usr/bin/env bash
# Secret scanning, end to end (the "done when" of the secrets issue): an image
# with planted secrets of a dozen kinds -- text files, an ELF-like binary, a
# file deleted by a whiteout, a directory made opaque, a file replaced by a
# later layer, a secret straddling the 64 KiB chunk boundary, one at the very
# end of a 200 MiB file, Env (a token as a name), Labels (one as a key), User ("root:TOKEN"), a directory
# and an account named by a token (printed by the setuid and uid-0 findings), history (an ARG step without a layer and
# a RUN step that made one) -- next to decoys that must stay silent
# (AKIAIOSFODNN7EXAMPLE, xxxx and <your-token-here> placeholders, PEM public
# keys and certificates, ssh-rsa public keys, os.environ reads, ${VAR}).
#
#   bash test-secrets.sh MOAT_BINARY FIXTURE_BINARY
#
# Checks: exactly the planted (rule_id, path or config_field, layer index,
# deleted) set among category=secret findings (a diff on mismatch), with the
# rule's severity, secret.kind, the planted line, a redaction that is not the
# secret; no whole secret in the json, table or sarif output or on stderr;
# exit 1 with the default --fail-on high; a second scan on the same store
# gives the same findings; moat-subuid and moat-single agree; a second image
# sharing the two base layers reports those layers' secrets alike.
#
# The secrets are generated at run time (sha256 in counter mode, fixed seeds),
# so this file holds none of them and every run plants the same values.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

G=$W/gen
mkdir -m 0755 "$G"

# --------------------------------------------------------------- generator
# gen.py spec DIR: the fixture specs, the expected findings, the planted secrets.
# gen.py biglayer LAYOUT: appends the 200 MiB layer to an OCI layout.
cat >"$G/gen.py" <<'PY'
import base64, gzip, hashlib, io, json, os, sys, tarfile

OUT = sys.argv[2]
MODE = sys.argv[1]

# Deterministic fake secrets: sha256 in counter mode picks the characters, so
# every run (and every Python) plants the same values and fingerprints can be
# compared across runs. None of them is a credential.
def rnd(tag, n, alphabet):
    out, ctr = [], 0
    while len(out) < n:
        for b in hashlib.sha256(f"moat-secrets-test/{tag}/{ctr}".encode()).digest():
            if b < 256 - 256 % len(alphabet):
                out.append(alphabet[b % len(alphabet)])
        ctr += 1
    return "".join(out[:n])

UP = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
LO = UP.lower()
DIG = "0123456789"
AN = UP + LO + DIG
B64 = AN + "+/"
URLB64 = AN + "_-"
HEX = "0123456789abcdef"

def b64url(b):
    return base64.urlsafe_b64encode(b).decode().rstrip("=")

S = {}
S["aws_id"] = "AKIA" + rnd("aws-id", 16, UP + "234567")
S["aws_secret"] = rnd("aws-secret", 40, B64)
S["ghp"] = "ghp_" + rnd("ghp", 36, AN)
S["gh_fine"] = "github_pat_11" + rnd("ghf1", 20, UP + DIG) + "_" + rnd("ghf2", 59, AN)
S["glpat"] = "glpat-" + rnd("glpat", 20, AN + "_-")
S["xoxb"] = "xoxb-" + rnd("xoxb1", 12, DIG) + "-" + rnd("xoxb2", 13, DIG) + "-" + rnd("xoxb3", 24, AN)
S["webhook"] = ("https://hooks.slack.com/services/T" + rnd("wh1", 10, UP + DIG) + "/B" + rnd("wh2", 10, UP + DIG)
                + "/" + rnd("wh3", 24, AN))
S["stripe"] = "sk_live_51" + rnd("stripe", 97, AN)
S["rsa_line"] = "MIIEpAIBAAKCAQEA" + rnd("rsa", 48, B64)

# An unencrypted OpenSSH ed25519 key laid out as ssh-keygen writes it (the
# key bytes are random, not a key pair): base64 in lines of 70.
def sshstr(b):
    return len(b).to_bytes(4, "big") + b
_pk = hashlib.sha256(b"moat-secrets-test/ed25519-pk").digest()
_seed = hashlib.sha256(b"moat-secrets-test/ed25519-seed").digest()
_pub = sshstr(b"ssh-ed25519") + sshstr(_pk)
_priv = (b"\x5a\x17\xc3\x01" * 2 + _pub + sshstr(_seed + _pk) + sshstr(b"app@build"))
_priv += bytes(range(1, 1 + (-len(_priv)) % 8))
_blob = base64.b64encode(b"openssh-key-v1\0" + sshstr(b"none") + sshstr(b"none") + sshstr(b"")
                         + (1).to_bytes(4, "big") + sshstr(_pub) + sshstr(_priv)).decode()
OSSH_LINES = [_blob[i:i + 70] for i in range(0, len(_blob), 70)]
S["ossh_line"] = OSSH_LINES[0]
# The same for a 3072-bit RSA key.
_n = b"\x00\xc7" + b"".join(hashlib.sha256(b"moat-secrets-test/rsa-n/%d" % i).digest() for i in range(13))[:383]
_rpub = sshstr(b"ssh-rsa") + sshstr(b"\x01\x00\x01") + sshstr(_n)
_rpriv = (b"\x33\x0e\x91\x7a" * 2 + sshstr(b"ssh-rsa") + sshstr(_n) + sshstr(b"\x01\x00\x01")
          + b"".join(sshstr(hashlib.sha512(b"moat-secrets-test/rsa-%d" % i).digest() * 3) for i in range(4))
          + sshstr(b"app@build"))
_rpriv += bytes(range(1, 1 + (-len(_rpriv)) % 8))
_rblob = base64.b64encode(b"openssh-key-v1\0" + sshstr(b"none") + sshstr(b"none") + sshstr(b"")
                          + (1).to_bytes(4, "big") + sshstr(_rpub) + sshstr(_rpriv)).decode()
OSSH_RSA_LINES = [_rblob[i:i + 70] for i in range(0, len(_rblob), 70)]
S["ossh_rsa_line"] = OSSH_RSA_LINES[0]
S["jwt"] = (b64url(b'{"alg":"RS256","typ":"JWT","kid":"' + rnd("jwtkid", 16, HEX).encode() + b'"}') + "."
            + b64url(b'{"sub":"svc-billing","iss":"https://auth.corp.internal","aud":"billing","iat":1716200000,"exp":1747736000}')
            + "." + rnd("jwtsig", 86, URLB64))
S["pg_pw"] = rnd("pgpw", 18, AN + "-_!")
S["npm"] = "npm_" + rnd("npm", 36, AN)
S["docker_auth"] = base64.b64encode(("ci-pusher:" + rnd("dockerpw", 24, AN)).encode()).decode()
S["k8s_data"] = base64.b64encode(rnd("k8spw", 24, AN + "#%").encode()).decode()
S["openai"] = "sk-proj-" + rnd("oai1", 64, URLB64) + "T3BlbkFJ" + rnd("oai2", 64, URLB64)
S["anthropic"] = "sk-ant-api03-" + rnd("ant", 93, URLB64) + "AA"
S["sendgrid"] = "SG." + rnd("sg1", 22, URLB64) + "." + rnd("sg2", 43, URLB64)
S["xoxp"] = "xoxp-" + rnd("xoxp1", 12, DIG) + "-" + rnd("xoxp2", 12, DIG) + "-" + rnd("xoxp3", 13, DIG) + "-" + rnd("xoxp4", 32, HEX)
S["dckr"] = "dckr_pat_" + rnd("dckr", 27, AN + "_-")
S["hf"] = "hf_" + rnd("hf", 34, UP + LO)
S["label_pw"] = rnd("labelpw", 20, AN)
# Tokens where a name is printed: an Env name, a label key, the User.
S["ghp_env_name"] = "ghp_" + rnd("ghp-env-name", 36, AN)
S["ghp_label_key"] = "ghp_" + rnd("ghp-label-key", 36, AN)
S["ghp_user"] = "ghp_" + rnd("ghp-user", 36, AN)
# Tokens in names no rule reads, printed by other checks' findings: a
# directory (a setuid binary's path) and an account (uid 0).
S["ghp_path"] = "ghp_" + rnd("ghp-path", 36, AN)
S["ghp_account"] = "ghp_" + rnd("ghp-account", 36, AN)

# File content for the fixture: JSON text taken byte for byte (the fixture
# does not decode escapes in content), so every byte must be ASCII; NUL and
# other control bytes travel as JSON \u00XX escapes.
def fx(data):
    if isinstance(data, str):
        data = data.encode()
    assert all(b < 0x80 for b in data), "fixture content must be ASCII"
    return data.decode("ascii")

EXPECT = []  # rule, where (path or config field), layer, deleted, capture, line (None: not checked)

def lines_of(content, *marks):
    # 1-based line of the first occurrence of each mark
    return [content[: content.index(m)].count("\n") + 1 for m in marks]

def d(path):
    return {"path": path, "type": "dir", "mode": "0755"}

def f(path, content, mode="0644"):
    return {"path": path, "content": fx(content), "mode": mode}

def pem(kind, first, tag, nlines=10):
    body = [first] + [rnd(f"{tag}-{i}", 64, B64) for i in range(nlines)] + [rnd(tag + "-last", 28, B64) + "=="]
    return f"-----BEGIN {kind}-----\n" + "\n".join(body) + f"\n-----END {kind}-----\n"

# ---------------------------------------------------------------- layer 0
aws_creds = ("[default]\n"
             f"aws_access_key_id = {S['aws_id']}\n"
             f"aws_secret_access_key = {S['aws_secret']}\n"
             "region = eu-west-1\n\n"
             "[docs]\n"
             "aws_access_key_id = AKIAIOSFODNN7EXAMPLE\n"
             "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\n")
l = lines_of(aws_creds, S["aws_id"], S["aws_secret"])
EXPECT += [("aws.access-key-id", "/root/.aws/credentials", 0, False, S["aws_id"], l[0]),
           ("aws.secret-access-key", "/root/.aws/credentials", 0, False, S["aws_secret"], l[1])]

ossh = "-----BEGIN OPENSSH PRIVATE KEY-----\n" + "\n".join(OSSH_LINES) + "\n-----END OPENSSH PRIVATE KEY-----\n"
ossh_rsa = "-----BEGIN OPENSSH PRIVATE KEY-----\n" + "\n".join(OSSH_RSA_LINES) + "\n-----END OPENSSH PRIVATE KEY-----\n"
EXPECT += [("private-key.openssh", "/home/app/.ssh/id_ed25519", 0, False, S["ossh_line"], 2),
           ("private-key.openssh", "/home/app/.ssh/id_rsa", 0, False, S["ossh_rsa_line"], 2)]

ssh_pub = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABgQ" + rnd("sshpub", 500, B64) + " app@build\n"
cert = pem("CERTIFICATE", "MIIDazCCAlOgAwIBAgIU" + rnd("cert", 44, B64), "cert", 16)
pubkey = pem("PUBLIC KEY", "MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA" + rnd("pub", 20, B64), "pub", 5)
rsapub = pem("RSA PUBLIC KEY", "MIIBCgKCAQEA" + rnd("rsapub", 52, B64), "rsapub", 4)

# An ELF-like blob: the token is a printable run between NUL bytes.
elf = bytearray(b"\x7fELF\x02\x01\x01\x00" + b"\x00" * 8 + b"\x02\x00\x3e\x00\x01\x00\x00\x00")
elf += bytes(range(128)) * 8
elf += b"\x00\x00GCC: (Debian 12.2.0-14) 12.2.0\x00.shstrtab\x00.text\x00.rodata\x00\x00"
elf += b"\x00\x00\x00\x00" + S["gh_fine"].encode() + b"\x00\x00\x00\x00"
elf += b"\x10\x20\x30\x00AKIAIOSFODNN7EXAMPLE\x00\x00https://api.github.com/repos/%s/%s/releases\x00"
elf += bytes((i * 37) & 0x7F for i in range(3000))
EXPECT.append(("github.pat.fine-grained", "/usr/local/bin/agent", 0, False, S["gh_fine"], 0))

layer0 = {"created_by": "ADD rootfs", "entries": [
    d("etc"), f("etc/os-release", 'PRETTY_NAME="Moat Test Linux 1"\nID=moattest\n'),
    d("etc/ssl"), d("etc/ssl/certs"), f("etc/ssl/certs/internal-ca.pem", cert),
    d("etc/ssl/public"), f("etc/ssl/public/signing.pub", pubkey + rsapub),
    d("root"), d("root/.aws"), f("root/.aws/credentials", aws_creds, "0600"),
    d("home"), d("home/app"), d("home/app/.ssh"),
    f("home/app/.ssh/id_ed25519", ossh, "0600"), f("home/app/.ssh/id_rsa", ossh_rsa, "0600"),
    f("home/app/.ssh/id_ed25519.pub", ssh_pub), f("home/app/.ssh/authorized_keys", ssh_pub),
    d("usr"), d("usr/local"), d("usr/local/bin"), f("usr/local/bin/agent", bytes(elf), "0755"),
]}

# ---------------------------------------------------------------- layer 1
dotenv = (f"GITHUB_TOKEN={S['ghp']}\n"
          f"GITLAB_TOKEN={S['glpat']}\n"
          f"SLACK_BOT_TOKEN={S['xoxb']}\n"
          f"SLACK_WEBHOOK_URL={S['webhook']}\n"
          "DB_PASSWORD=${DB_PASSWORD}\n"
          "password=${DB_PASSWORD}\n"
          "GITHUB_TOKEN_PLACEHOLDER=ghp_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\n"
          "SLACK_WEBHOOK_DOCS=https://hooks.slack.com/services/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX\n"
          "API_TOKEN=<your-token-here>\n")
l = lines_of(dotenv, S["ghp"], S["glpat"], S["xoxb"], S["webhook"])
EXPECT += [("github.pat.classic", "/opt/app/.env", 1, False, S["ghp"], l[0]),
           ("gitlab.pat", "/opt/app/.env", 1, False, S["glpat"], l[1]),
           ("slack.bot-token", "/opt/app/.env", 1, False, S["xoxb"], l[2]),
           ("slack.webhook", "/opt/app/.env", 1, False, S["webhook"], l[3])]

settings = ("import os\n\n"
            'token = os.environ["GITHUB_TOKEN"]\n'
            'password = os.environ.get("DB_PASSWORD")\n'
            'api_key = "<your-token-here>"\n'
            'AWS_KEY_FOR_DOCS = "AKIAIOSFODNN7EXAMPLE"\n'
            'aws_secret_access_key = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"\n'
            'stripe_key = "sk_live_xxxxxxxxxxxxxxxxxxxxxxxx"\n'
            f'ANTHROPIC_API_KEY = "{S["anthropic"]}"\n'
            f'DATABASE_URL = "postgresql://billing:{S["pg_pw"]}@db.corp.internal:5432/billing"\n'
            'REPLICA_URL = "postgresql://billing:${DB_PASSWORD}@replica.corp.internal:5432/billing"\n')
l = lines_of(settings, S["anthropic"], S["pg_pw"])
EXPECT += [("anthropic.api-key", "/opt/app/settings.py", 1, False, S["anthropic"], l[0]),
           ("db.postgres-url", "/opt/app/settings.py", 1, False, S["pg_pw"], l[1])]

config_old = "billing:\n  currency: eur\n" f"  stripe_secret_key: {S['stripe']}\n"
l_stripe_old = lines_of(config_old, S["stripe"])[0]
config_new = "billing:\n  currency: eur\n  retries: 3\n" f"  stripe_secret_key: {S['stripe']}\n"
l_stripe_new = lines_of(config_new, S["stripe"])[0]
EXPECT += [("stripe.secret-key.live", "/opt/app/config.yml", 1, True, S["stripe"], l_stripe_old),
           ("stripe.secret-key.live", "/opt/app/config.yml", 2, False, S["stripe"], l_stripe_new)]

rsa = pem("RSA PRIVATE KEY", S["rsa_line"], "rsa", 24)
EXPECT.append(("private-key.rsa", "/opt/app/deploy_key.pem", 1, True, S["rsa_line"], 2))

npmrc = f"//registry.npmjs.org/:_authToken={S['npm']}\nalways-auth=true\n"
EXPECT.append(("npm.access-token", "/root/.npmrc", 1, False, S["npm"], 1))

docker_cfg = json.dumps({"auths": {"registry.corp.internal:5000": {"auth": S["docker_auth"]}},
                         "credHelpers": {"123456789012.dkr.ecr.eu-west-1.amazonaws.com": "ecr-login"}}, indent=2) + "\n"
EXPECT.append(("docker.config-auth", "/root/.docker/config.json", 1, False, S["docker_auth"],
               lines_of(docker_cfg, S["docker_auth"])[0]))

k8s = ("apiVersion: v1\nkind: Secret\nmetadata:\n  name: billing-db\n  namespace: billing\ntype: Opaque\n"
       f"data:\n  password: {S['k8s_data']}\n")
k8s_tmpl = ("apiVersion: v1\nkind: Secret\nmetadata:\n  name: billing-db\ntype: Opaque\n"
            "stringData:\n  password: {{ .Values.db.password }}\n")
EXPECT.append(("kubernetes.secret-manifest", "/opt/app/k8s/db-secret.yaml", 1, False, S["k8s_data"],
               lines_of(k8s, S["k8s_data"])[0]))

http = ("### billing smoke test\nGET https://billing.corp.internal/v1/invoices\n"
        f"Authorization: Bearer {S['jwt']}\nAccept: application/json\n")
EXPECT.append(("jwt", "/opt/app/tests/smoke.http", 1, False, S["jwt"], 3))

mailconf = "[smtp]\nhost = smtp.sendgrid.net\n" f"password = {S['sendgrid']}\n"
EXPECT.append(("sendgrid.api-key", "/etc/app/mail.conf", 1, True, S["sendgrid"], 3))

# The secret starts 10 bytes before the first 64 KiB chunk ends.
js_line = "function f(a){return a&&a.length?a.map(function(x){return x*2}):[]}\n"
head = (js_line * (65536 // len(js_line) + 1))[: 65536 - 10 - len('var SLACK="')]
head = head[: head.rindex("\n") + 1]
head += "/" * (65536 - 10 - len('var SLACK="') - len(head))  # pad the last line to the exact offset
bundle = head + 'var SLACK="' + S["xoxp"] + '";\n' + js_line * 200
assert bundle.index(S["xoxp"]) == 65536 - 10
EXPECT.append(("slack.user-token", "/srv/static/app.bundle.js", 1, False, S["xoxp"], lines_of(bundle, S["xoxp"])[0]))

entry = ('#!/bin/sh\nset -eu\npsql "postgresql://billing:${DB_PASSWORD}@db:5432/billing" -c "select 1"\n'
         'exec /opt/app/bin/billing --token "$GITHUB_TOKEN"\n')

layer1 = {"created_by": "RUN pip install", "entries": [
    d("opt"), d("opt/app"),
    f("opt/app/.env", dotenv, "0600"), f("opt/app/settings.py", settings),
    f("opt/app/config.yml", config_old), f("opt/app/deploy_key.pem", rsa, "0600"),
    f("opt/app/entrypoint.sh", entry, "0755"),
    d("opt/app/k8s"), f("opt/app/k8s/db-secret.yaml", k8s), f("opt/app/k8s/template.yaml", k8s_tmpl),
    d("opt/app/tests"), f("opt/app/tests/smoke.http", http),
    d("root"), f("root/.npmrc", npmrc, "0600"), d("root/.docker"), f("root/.docker/config.json", docker_cfg, "0600"),
    d("etc"), d("etc/app"), f("etc/app/mail.conf", mailconf, "0640"),
    d("srv"), d("srv/static"), f("srv/static/app.bundle.js", bundle),
]}

# ---------------------------------------------------------------- layer 2
layer2 = {"created_by": "RUN cleanup", "entries": [
    d("opt"), d("opt/app"),
    {"path": "opt/app/.wh.deploy_key.pem", "content": ""},  # whiteout: the key is deleted
    f("opt/app/config.yml", config_new),                    # replaced: the old copy is deleted
    d("etc"), d("etc/app"),
    {"path": "etc/app/.wh..wh..opq", "content": ""},         # opaque dir: layer 1's mail.conf is gone
    f("etc/app/mail.conf", "[smtp]\nhost = smtp.corp.internal\npassword_file = /run/secrets/smtp\n"),
    d("opt/" + S["ghp_path"]), f("opt/" + S["ghp_path"] + "/tool", "\x7fELF tool\n", "4755"),
    f("etc/passwd", "root:x:0:0:root:/root:/bin/sh\n" + S["ghp_account"] + ":x:0:0::/:/bin/sh\n"),
]}
# The account's line is scanned as any file's is.
EXPECT.append(("github.pat.classic", "/etc/passwd", 2, False, S["ghp_account"], 2))

# ---------------------------------------------------------------- layer 3 (appended by "biglayer")
BIG_PATH = "var/log/app/trace.log"
BIG_SIZE = 200 * 1024 * 1024
BIG_LINE = "2024-05-20T10:00:00Z INFO worker heartbeat ok queue=billing depth=0\n"
BIG_TAIL = "\nDOCKERHUB_TOKEN=" + S["dckr"]  # the very last bytes, no newline after
big_fill = BIG_SIZE - len(BIG_TAIL)
big_line_no = big_fill // len(BIG_LINE) + (1 if big_fill % len(BIG_LINE) else 0) + 1
EXPECT.append(("docker.hub-pat", "/" + BIG_PATH, 3, False, S["dckr"], big_line_no))

# ---------------------------------------------------------------- config
history = [
    {"created": "2024-05-20T10:00:00Z", "created_by": "/bin/sh -c #(nop) ADD file:5d4a3e2b1c0f in / "},
    {"created": "2024-05-20T10:00:01Z", "created_by": "ARG HF_TOKEN=" + S["hf"], "empty_layer": True},
    {"created": "2024-05-20T10:00:02Z",
     "created_by": "RUN |1 HF_TOKEN=" + S["hf"] + " /bin/sh -c pip install --no-cache-dir -r requirements.txt"},
    {"created": "2024-05-20T10:00:03Z", "created_by": "ENV GITHUB_TOKEN_FILE=/run/secrets/github", "empty_layer": True},
    {"created": "2024-05-20T10:00:04Z", "created_by": "ARG GITHUB_TOKEN", "empty_layer": True},
    {"created": "2024-05-20T10:00:05Z",
     "created_by": "RUN |1 GITHUB_TOKEN /bin/sh -c rm -f /opt/app/deploy_key.pem && echo password=${DB_PASSWORD} >/dev/null"},
    {"created": "2024-05-20T10:00:06Z", "created_by": "RUN /bin/sh -c /opt/app/bin/trace >/var/log/app/trace.log"},
    {"created": "2024-05-20T10:00:07Z", "created_by": 'CMD ["/opt/app/entrypoint.sh"]', "empty_layer": True},
]
EXPECT += [("huggingface.token", "History", None, False, S["hf"], None),
           ("huggingface.token", "History", 1, False, S["hf"], None)]
env = ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
       "OPENAI_API_KEY=" + S["openai"],
       "GITHUB_TOKEN=<your-token-here>", "DB_PASSWORD=${DB_PASSWORD}", "AWS_ACCESS_KEY_ID=AKIAIOSFODNN7EXAMPLE"]
env.append(S["ghp_env_name"] + "=1")
EXPECT.append(("openai.api-key", "Env", None, False, S["openai"], None))
EXPECT.append(("github.pat.classic", "Env", None, False, S["ghp_env_name"], None))
labels = {"org.opencontainers.image.title": "billing",
          "org.opencontainers.image.source": f"https://ci-bot:{S['label_pw']}@git.corp.internal/platform/billing.git",
          "org.opencontainers.image.documentation": "https://user:password@git.corp.internal/docs"}
labels[S["ghp_label_key"]] = "1"
EXPECT.append(("url.credentials", "Labels", None, False, S["label_pw"], None))
EXPECT.append(("github.pat.classic", "Labels", None, False, S["ghp_label_key"], None))
# config-runs-as-root prints the User: "root:TOKEN" is root, and the token is reported and redacted.
user = "root:" + S["ghp_user"]
EXPECT.append(("github.pat.classic", "User", None, False, S["ghp_user"], None))

# One finding per secret: the second rule that matches a token (npm_, auths) is generic and yields.
ALSO = {}

def exp_json(rows):
    return [{"rule_id": r, "where": w, "layer": li, "deleted": de, "secret": s, "line": ln, "also": ALSO.get(r, [])}
            for r, w, li, de, s, ln in rows]

if MODE == "spec":
    spec1 = {"format": "oci", "tag": "latest", "layers": [layer0, layer1, layer2],
             "config": {"Env": env, "Labels": labels, "User": user}, "history": history}
    spec2 = {"format": "oci", "tag": "latest",
             "layers": [layer0, layer1, {"created_by": "RUN true", "entries": [d("opt"), d("opt/app"),
                                                                       f("opt/app/VERSION", "2.0.0\n")]}]}
    with open(os.path.join(OUT, "secrets.spec.json"), "w") as fh:
        json.dump(spec1, fh, indent=1)
    with open(os.path.join(OUT, "app2.spec.json"), "w") as fh:
        json.dump(spec2, fh, indent=1)
    with open(os.path.join(OUT, "expected1.json"), "w") as fh:
        json.dump(exp_json(EXPECT), fh, indent=1)
    # image 2: the same layers 0 and 1, nothing on top deletes anything, no config secrets
    e2 = [(r, w, li, False, s, ln) for r, w, li, de, s, ln in EXPECT if li in (0, 1) and w.startswith("/")]
    with open(os.path.join(OUT, "expected2.json"), "w") as fh:
        json.dump(exp_json(e2), fh, indent=1)
    # every full secret as planted (the capture and, where longer, the whole credential)
    full = set(S.values()) | {e[4] for e in EXPECT}
    full |= {f"postgresql://billing:{S['pg_pw']}@db.corp.internal", f"ci-bot:{S['label_pw']}@",
             base64.b64decode(S["docker_auth"]).decode(), base64.b64decode(S["k8s_data"]).decode()}
    with open(os.path.join(OUT, "secrets.txt"), "w") as fh:
        fh.write("\n".join(sorted(full)) + "\n")
elif MODE == "biglayer":
    # Appends layer 3 (one 200 MiB file ending in a token) to the OCI layout
    # OUT: gzip'd tar streamed from a generator, config and manifest rewritten.
    def blob_path(dg):
        return os.path.join(OUT, "blobs", *dg.split(":"))
    def put_blob(data):
        dg = "sha256:" + hashlib.sha256(data).hexdigest()
        os.makedirs(os.path.dirname(blob_path(dg)), exist_ok=True)
        with open(blob_path(dg), "wb") as fh:
            fh.write(data)
        return dg, len(data)

    class Hashing:
        def __init__(self, inner):
            self.inner, self.h, self.n = inner, hashlib.sha256(), 0
        def write(self, b):
            self.h.update(b); self.n += len(b); return self.inner.write(b)
        def flush(self):
            pass

    class Content:
        def __init__(self):
            self.pos = 0
            self.block = (BIG_LINE * (1024 * 1024 // len(BIG_LINE) + 1)).encode()
        def read(self, n=-1):
            if self.pos >= BIG_SIZE:
                return b""
            if n < 0:
                n = BIG_SIZE - self.pos
            n = min(n, BIG_SIZE - self.pos)
            out = bytearray()
            while len(out) < n:
                p = self.pos + len(out)
                if p >= big_fill:
                    t = BIG_TAIL.encode()[p - big_fill:]
                    out += t[: n - len(out)]
                else:
                    off = p % len(BIG_LINE)
                    chunk = self.block[off: off + min(n - len(out), big_fill - p)]
                    out += chunk
            self.pos += len(out)
            return bytes(out)

    tmp = os.path.join(OUT, "big.tmp")
    with open(tmp, "wb") as raw:
        comp_h = Hashing(raw)
        gz = gzip.GzipFile(fileobj=comp_h, mode="wb", compresslevel=1, mtime=0, filename="")
        tar_h = Hashing(gz)
        with tarfile.open(fileobj=tar_h, mode="w|", format=tarfile.PAX_FORMAT) as tf:
            for dname in ("var", "var/log", "var/log/app"):
                ti = tarfile.TarInfo(dname); ti.type = tarfile.DIRTYPE; ti.mode = 0o755; ti.mtime = 1700000000
                tf.addfile(ti)
            ti = tarfile.TarInfo(BIG_PATH); ti.size = BIG_SIZE; ti.mode = 0o644; ti.mtime = 1700000000
            tf.addfile(ti, Content())
        gz.close()
    diff_id = "sha256:" + tar_h.h.hexdigest()
    ldg = "sha256:" + comp_h.h.hexdigest()
    os.makedirs(os.path.dirname(blob_path(ldg)), exist_ok=True)
    os.replace(tmp, blob_path(ldg))

    with open(os.path.join(OUT, "index.json")) as fh:
        index = json.load(fh)
    mdesc = index["manifests"][0]
    with open(blob_path(mdesc["digest"])) as fh:
        manifest = json.load(fh)
    with open(blob_path(manifest["config"]["digest"])) as fh:
        config = json.load(fh)
    config["rootfs"]["diff_ids"].append(diff_id)
    cdg, csize = put_blob(json.dumps(config, sort_keys=True, separators=(",", ":")).encode())
    manifest["config"].update({"digest": cdg, "size": csize})
    manifest["layers"].append({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                               "digest": ldg, "size": comp_h.n})
    mdg, msize = put_blob(json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode())
    mdesc.update({"digest": mdg, "size": msize})
    with open(os.path.join(OUT, "index.json"), "w") as fh:
        json.dump(index, fh, sort_keys=True, separators=(",", ":"))
PY

# --------------------------------------------------------------- checker
# check.py findings EXPECTED REPORT RULES LABEL | same A B LABEL | leaks SECRETS FILE...
cat >"$G/check.py" <<'PY'
import collections, json, re, sys

def secrets_of(report):
    return [f for f in report["findings"] if f.get("category") == "secret"]

def where(f):
    return f["path"] if f.get("target") == "filesystem" else f.get("config_field")

def key(f):
    layer = f.get("layer")
    return (f.get("rule_id"), where(f), None if layer is None else layer.get("index"), bool(f.get("deleted")))

def show(k):
    r, w, li, de = k
    return f"{r:28} {str(w):32} layer={'null' if li is None else li} deleted={str(de).lower()}"

def load(p):
    with open(p) as fh:
        return json.load(fh)

def cmd_findings(expected_p, report_p, rules_p, label):
    exp, rep = load(expected_p), load(report_p)
    severity = {}
    for line in open(rules_p):
        parts = line.split()
        if len(parts) >= 2 and parts[1] in ("critical", "high", "medium", "low", "info"):
            severity[parts[0]] = parts[1]
    layers = {l["index"]: l for l in rep["image"]["layers"]}
    got = collections.Counter(key(f) for f in secrets_of(rep))
    want = collections.Counter((e["rule_id"], e["where"], e["layer"], e["deleted"]) for e in exp)
    also = {(a, e["where"], e["layer"], e["deleted"]) for e in exp for a in e["also"]}
    missing = want - got
    extra = got - want
    tolerated = collections.Counter({k: n for k, n in extra.items() if k in also and n == 1})
    extra -= tolerated
    errors = []
    if missing or extra:
        print(f"--- {label}: secret findings differ from what was planted (- planted, not reported; + reported, not planted)")
        for k in sorted(missing, key=str):
            print(f"- {show(k)}" + (f"  x{missing[k]}" if missing[k] > 1 else ""))
        for k in sorted(extra, key=str):
            fs = [f for f in secrets_of(rep) if key(f) == k]
            ctx = "; ".join(f"redacted={f.get('secret', {}) and f['secret'].get('redacted')} line={f.get('secret', {}) and f['secret'].get('line')}" for f in fs)
            print(f"+ {show(k)}" + (f"  x{extra[k]}" if extra[k] > 1 else "") + f"  ({ctx})")
        errors.append(f"{sum(missing.values())} planted secret(s) missed, {sum(extra.values())} unexpected finding(s)")
    for k in sorted(tolerated, key=str):
        print(f"NOTE {label}: also reported by a second specific rule on the same bytes: {show(k)}")
    by_key = {(e["rule_id"], e["where"], e["layer"], e["deleted"]): e for e in exp}
    by_key.update({(a, e["where"], e["layer"], e["deleted"]): e for e in exp for a in e["also"]})
    for f in secrets_of(rep):
        e = by_key.get(key(f))
        if e is None:
            continue
        k, s, sec = show(key(f)), e["secret"], f.get("secret") or {}
        red = sec.get("redacted", "")
        def bad(msg):
            errors.append(f"{k}: {msg}")
        if sec.get("kind") != f["rule_id"]:
            bad(f"secret.kind {sec.get('kind')!r} is not the rule id")
        if f.get("severity") != severity.get(f["rule_id"]):
            bad(f"severity {f.get('severity')} is not the rule's ({severity.get(f['rule_id'])})")
        if not red or red == s or s in red:
            bad("secret.redacted is empty or the whole secret")
        visible = re.sub(r"[*\u2026.]", "", red)
        if len(visible) > len(s) // 2:
            bad(f"secret.redacted shows {len(visible)} of {len(s)} characters")
        if e["line"] is not None and sec.get("line") != e["line"]:
            bad(f"secret.line {sec.get('line')}, planted on line {e['line']}")
        if not re.fullmatch(r"[0-9a-f]{64}", f.get("fingerprint") or ""):
            bad("fingerprint is not 64 hex digits")
        if e["where"].startswith("/"):
            if f.get("target") != "filesystem" or f.get("config_field") is not None:
                bad(f"target {f.get('target')!r}, config_field {f.get('config_field')!r}")
        elif f.get("target") != "config" or f.get("path") is not None:
            bad(f"target {f.get('target')!r}, path {f.get('path')!r}")
        layer = f.get("layer")
        if layer is not None:
            li = layers.get(layer.get("index"))
            if li is None or layer.get("diff_id") != li["diff_id"] or layer.get("created_by") != li["created_by"]:
                bad(f"layer {layer} does not match image.layers")
    for m in errors:
        print(f"{label}: {m}")
    return 1 if errors else 0

def projection(report):
    out = []
    for f in secrets_of(report):
        sec = f.get("secret") or {}
        out.append(json.dumps([*key(f), f.get("severity"), sec.get("kind"), sec.get("redacted"), sec.get("line"),
                               f.get("fingerprint")]))
    return sorted(out)

def cmd_same(a_p, b_p, label):
    a, b = projection(load(a_p)), projection(load(b_p))
    if a == b:
        return 0
    print(f"--- {label}: secret findings differ ({a_p} vs {b_p})")
    for line in sorted(set(a) - set(b)):
        print(f"- {line}")
    for line in sorted(set(b) - set(a)):
        print(f"+ {line}")
    return 1

def json_paths(node, needle, at="$"):
    if isinstance(node, dict):
        for k, v in node.items():
            yield from json_paths(v, needle, f"{at}.{k}")
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from json_paths(v, needle, f"{at}[{i}]")
    elif isinstance(node, str) and needle in node:
        yield at

def cmd_leaks(secrets_p, *files):
    secrets = [s for s in open(secrets_p).read().split("\n") if s]
    rc = 0
    for p in files:
        text = open(p, "rb").read().decode("utf-8", "replace")
        try:
            doc = json.loads(text)
        except ValueError:
            doc = None
        for s in secrets:
            if s in text:
                at = list(json_paths(doc, s)) if doc is not None else []
                more = f" at {', '.join(at[:4])}" + (" ..." if len(at) > 4 else "") if at else ""
                print(f"LEAK: {p} contains a whole planted secret ({s[:4]}..., {len(s)} chars){more}")
                rc = 1
    return rc

if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    sys.exit({"findings": cmd_findings, "same": cmd_same, "leaks": cmd_leaks}[cmd](*args))
PY

bad=0
check() { python3 "$G/check.py" "$@" || bad=$((bad + 1)); }
now_ms() { date +%s%3N; }

python3 "$G/gen.py" spec "$G"
"$W/moat" rules list >"$G/rules.txt"

note "building the images"
build_fixture secrets <"$G/secrets.spec.json"
python3 "$G/gen.py" biglayer "$W/pub/secrets" || fail "appending the 200 MiB layer"
chmod -R a+rX "$W/pub/secrets"
build_fixture app2 <"$G/app2.spec.json"
IMG1="oci:$W/pub/secrets:latest"
IMG2="oci:$W/pub/app2:latest"
if command -v skopeo >/dev/null 2>&1; then
  skopeo inspect "$IMG1" >/dev/null || fail "skopeo cannot read the fixture image"
fi
outputs=()
keep() {  # keep NAME: saves $W/out and $W/err as $G/NAME and $G/NAME.err
  cp "$W/out" "$G/$1"; cp "$W/err" "$G/$1.err"
  outputs+=("$G/$1" "$G/$1.err")
}

for u in moat-subuid moat-single; do
  note "$u: json, first scan (cold store)"
  t0=$(now_ms); scan_as "$u" 1 "$IMG1" --format json; t1=$(now_ms)
  keep "$u.1.json"
  validate_report "$G/$u.1.json"
  check findings "$G/expected1.json" "$G/$u.1.json" "$G/rules.txt" "$u scan 1"

  note "$u: json, second scan (same store)"
  t2=$(now_ms); scan_as "$u" 1 "$IMG1" --format json; t3=$(now_ms)
  keep "$u.2.json"
  validate_report "$G/$u.2.json"
  check same "$G/$u.1.json" "$G/$u.2.json" "$u: first and second scan"
  note "$u: first scan $((t1 - t0)) ms (report $(jq .scan.duration_ms "$G/$u.1.json") ms), second $((t3 - t2)) ms (report $(jq .scan.duration_ms "$G/$u.2.json") ms)"

  note "$u: table (verbose)"
  scan_as "$u" 1 "$IMG1" --format table --verbose
  keep "$u.table"

  if "$W/moat" scan --help 2>&1 | grep -q sarif; then
    note "$u: sarif"
    scan_as "$u" 1 "$IMG1" --format sarif
    keep "$u.sarif"
    jq -e '.runs | length > 0' "$G/$u.sarif" >/dev/null || { echo "$u: the sarif output has no runs"; bad=$((bad + 1)); }
  else
    note "this moat has no --format sarif: skipped"
  fi

  note "$u: a second image sharing the base layers"
  scan_as "$u" 1 "$IMG2" --format json
  keep "$u.app2.json"
  validate_report "$G/$u.app2.json"
  check findings "$G/expected2.json" "$G/$u.app2.json" "$G/rules.txt" "$u app2"
  base1=$(jq -c '[.image.layers[0:2][].diff_id]' "$G/$u.1.json")
  base2=$(jq -c '[.image.layers[0:2][].diff_id]' "$G/$u.app2.json")
  [[ $base1 == "$base2" ]] || fail "the two images do not share their base layers: $base1 vs $base2"
done
check same "$G/moat-subuid.1.json" "$G/moat-single.1.json" "moat-subuid vs moat-single"

note "a token in a path and in an account name: the findings are still there, redacted (the leak check below)"
for u in moat-subuid moat-single; do
  jq -e '[.findings[] | select(.rule_id == "setuid-unpackaged" and (.path | test("^/opt/ghp_[^/]*/tool$")))] | length == 1' \
    "$G/$u.1.json" >/dev/null || { echo "$u: no setuid finding for /opt/ghp_…/tool"; bad=$((bad + 1)); }
  jq -e '[.findings[] | select(.rule_id == "account-extra-uid0" and (.message | contains("ghp_")))] | length == 1' \
    "$G/$u.1.json" >/dev/null || { echo "$u: no uid-0 finding for the ghp_… account"; bad=$((bad + 1)); }
done

note "no whole secret in any output"
check leaks "$G/secrets.txt" "${outputs[@]}"

[[ $bad -eq 0 ]] || fail "$bad check(s) failed (see above)"
echo "PASS: $TEST_NAME"
