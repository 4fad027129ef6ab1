#!/usr/bin/env python3
"""Writes tests/secrets/corpus/ and tests/secrets/corpus.expected.

The corpus is committed; this script is how it was made, so a new leak shape
is added here and the script re-run (its values are deterministic: sha256 in
counter mode, so unchanged files stay byte for byte the same). Every value is
synthetic. Formats follow each vendor's published description (prefix,
alphabet, length), not any scanner's test files.
    python3 tests/secrets/make-corpus.py
"""
import hashlib, os, json, shutil
HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.join(HERE, "corpus")
MAN = os.path.join(HERE, "corpus.expected")
def rnd(tag, n, alphabet):
    out, ctr = [], 0
    while len(out) < n:
        for b in hashlib.sha256(f"moat-corpus/{tag}/{ctr}".encode()).digest():
            if b < 256 - 256 % len(alphabet): out.append(alphabet[b % len(alphabet)])
        ctr += 1
    return "".join(out[:n])
UP="ABCDEFGHIJKLMNOPQRSTUVWXYZ"; LO=UP.lower(); DIG="0123456789"; AN=UP+LO+DIG; B64=AN+"+/"; HEX="0123456789abcdef"; URLB64=AN+"_-"
def pem_body(tag, first, n=12):
    return [first] + [rnd(f"{tag}{i}", 64, B64) for i in range(n)] + [rnd(tag + "L", 40, B64) + "=="]
files = {}
expect = []  # (path, rule, line, secret)
def add(path, text, *exp):
    files[path] = text
    for rule, secret in exp:
        idx = text.index(secret)
        line = text[:idx].count("\n") + 1
        expect.append((path, rule, line, secret))

# 1. private keys in JSON / tfstate / k8s / .env
rsa1 = "MIIEowIBAAKCAQEA" + rnd("rsa1", 48, B64)
body = pem_body("rsa1", rsa1)
add("config/service.json", json.dumps({
    "service": "billing", "listen": "0.0.0.0:8443",
    "publicKey": rnd("pubhex", 96, HEX),
    "tls": {"cert_file": "/etc/billing/tls.crt",
            "private_key": "-----BEGIN RSA PRIVATE KEY-----\n" + "\n".join(body) + "\n-----END RSA PRIVATE KEY-----\n"},
}, indent=2) + "\n", ("private-key.rsa", rsa1))
ec1 = "MHcCAQEEI" + rnd("ec1", 40, B64)
ec_body = pem_body("ec1", ec1, 2)
tf = {"version": 4, "terraform_version": "1.7.5", "resources": [{"mode": "managed", "type": "tls_private_key", "name": "deploy",
      "instances": [{"attributes": {"algorithm": "ECDSA", "ecdsa_curve": "P256",
                     "private_key_pem": "-----BEGIN EC PRIVATE KEY-----\n" + "\n".join(ec_body) + "\n-----END EC PRIVATE KEY-----\n",
                     "public_key_openssh": "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBB" + rnd("ecpub", 60, B64) + "\n"}}]}]}
add("terraform/terraform.tfstate", json.dumps(tf, indent=2) + "\n", ("private-key.ec", ec1))
p8 = "MIIEvQIBADANBgkqhkiG9w0BAQEFAASC" + rnd("p8", 32, B64)
p8_body = pem_body("p8", p8, 10)
k8s = ("apiVersion: v1\nkind: Secret\nmetadata:\n  name: ingress-tls\n  namespace: web\ntype: kubernetes.io/tls\nstringData:\n"
       "  tls.crt: |\n    -----BEGIN CERTIFICATE-----\n" + "".join("    " + rnd(f"crt{i}", 64, B64) + "\n" for i in range(6)) + "    -----END CERTIFICATE-----\n"
       "  tls.key: |\n    -----BEGIN PRIVATE KEY-----\n" + "".join("    " + l + "\n" for l in p8_body) + "    -----END PRIVATE KEY-----\n")
add("k8s/ingress-tls.yaml", k8s, ("private-key.pkcs8", p8))
ec2 = "MHcCAQEEI" + rnd("ec2", 40, B64)
ec2_body = pem_body("ec2", ec2, 2)
gh_glued = "ghp_" + rnd("ghglued", 36, AN)
dotenv = ("NODE_ENV=production\nPORT=8080\n"
          "JWT_SIGNING_KEY=\"-----BEGIN EC PRIVATE KEY-----\\\\n" + "\\\\n".join(ec2_body) + "\\\\n-----END EC PRIVATE KEY-----\"\n")
add("app/.env.production", dotenv, ("private-key.ec", ec2))

p8b = "MIIEvgIBADANBgkqhkiG9w0BAQEFAASC" + rnd("p8b", 32, B64)
add("docker/compose.env", "TLS_KEY=-----BEGIN PRIVATE KEY----- " + " ".join(pem_body("p8b", p8b, 4)) + " -----END PRIVATE KEY-----\nLOG_LEVEL=info\n",
    ("private-key.pkcs8", p8b))

# 2. Azure
ai84 = rnd("ai84", 52, AN) + "JQQJ99BCACYeBjFXJ3w3AAAEACOG" + rnd("ai84t", 4, AN)
# Microsoft's 84-character identifiable keys: 52 random, "JQQJ9" + [9DH], one
# character, a date character [A-L], 16 characters, the 4-character provider
# signature (ACOG: AI services, AZCR: Container Registry), 4 random.
acr84 = rnd("acr84", 52, AN) + "JQQJ99BBACYeBjFXJ3w3AAAEAZCR" + rnd("acr84t", 4, AN)
appcfg = rnd("appcfg", 43, B64) + "="
sas_sig = rnd("sassig", 43, AN) + "%3D"
speech = rnd("speech", 32, HEX)
azure = {"Logging": {"LogLevel": {"Default": "Information"}},
         "AzureAI": {"Endpoint": "https://billing-ai.cognitiveservices.azure.com/", "ApiKey": ai84},
         "Speech": {"Region": "westeurope", "SpeechKey": speech},
         "AppConfig": {"ConnectionString": f"Endpoint=https://billing-cfg.azconfig.io;Id=Q1x7-l0-s0:{rnd('appcfgid', 20, AN)};Secret={appcfg}"},
         "Storage": {"BlobSas": f"sv=2022-11-02&ss=b&srt=co&sp=rl&se=2031-01-01T00:00:00Z&st=2024-01-01T00:00:00Z&spr=https&sig={sas_sig}"},
         "Registry": {"Server": "billingacr.azurecr.io", "Username": "billingacr", "Password": acr84}}
add("azure/appsettings.Production.json", json.dumps(azure, indent=2) + "\n",
    ("azure.ai-services.key", ai84), ("azure.cognitive-services.key", speech), ("azure.app-configuration.connection-string", appcfg),
    ("azure.sas-token", sas_sig), ("azure.container-registry.key", acr84))
acr52 = rnd("acr52", 42, B64) + "+ACRB" + rnd("acr52t", 5, AN)
acrpw = rnd("acrpw", 32, AN)
add("azure/push.sh", "#!/bin/sh\nset -eu\n"
    f"docker login billingacr.azurecr.io -u billingacr -p {acr52}\n"
    "docker push billingacr.azurecr.io/billing:1.4.2\n"
    f"az acr login -n legacyacr --username legacyacr && docker login legacyacr.azurecr.io -u legacyacr --password {acrpw}\n",
    ("azure.container-registry.key", acr52), ("azure.container-registry.password", acrpw))

# Maven
master = "{" + rnd("mvnmaster", 44, B64) + "=}"
add("maven/settings-security.xml", f"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<settingsSecurity>\n  <master>\n    {master}\n  </master>\n</settingsSecurity>\n",
    ("maven.settings-security-master", master))
mvnpw = "{" + rnd("mvnpw", 24, B64) + "=}"
mvnpass = rnd("mvnpass", 20, AN + "!#%")
add("maven/settings.xml", "<settings>\n  <servers>\n    <server>\n      <id>releases</id>\n      <username>deployer</username>\n"
    f"      <password> {mvnpw} </password>\n    </server>\n    <server>\n      <id>signing</id>\n"
    "      <privateKey>${user.home}/.ssh/release_key</privateKey>\n"
    f"      <passphrase>\n        {mvnpass}\n      </passphrase>\n    </server>\n    <server>\n      <id>snapshots</id>\n"
    "      <username>deployer</username>\n      <password>${env.SNAPSHOT_PASSWORD}</password>\n    </server>\n  </servers>\n</settings>\n",
    ("maven.settings-password", mvnpw), ("maven.settings-password", mvnpass))

# AI / payments / AWS
ek = "ek_" + rnd("ek", 32, HEX)
ant = "sk-ant-api03-" + rnd("ant1", 40, URLB64) + "T3BlbkFJ" + rnd("ant2", 45, URLB64) + "AA"
orr = "sk-or-v1-" + rnd("or", 64, HEX)
add("ai/clients.py", "import os\n\n"
    f"ANTHROPIC_API_KEY = \"{ant}\"\n"
    f"OPENROUTER_KEY = \"{orr}\"\n"
    "OPENAI_API_KEY = os.environ[\"OPENAI_API_KEY\"]\n",
    ("anthropic.api-key", ant), ("openrouter.api-key", orr))
add("ai/realtime-session.json", json.dumps({"id": "sess_" + rnd("sess", 16, AN), "object": "realtime.session", "model": "gpt-realtime",
    "client_secret": {"value": ek, "expires_at": 1756310470}}, indent=2) + "\n", ("openai.realtime-ephemeral-key", ek))
pk_live = "pk_live_51" + rnd("pklive", 40, AN)
add("payments/checkout.js", "// checkout page\nconst stripe = Stripe('" + pk_live + "');\nconst elements = stripe.elements();\n",
    ("stripe.publishable-key.live", pk_live))
awssec = rnd("awssec", 40, B64)
awssec2 = rnd("awssec2", 40, B64)
add("aws/legacy.cfg", "[aws]\naws_key_id = AKIAIOSFODNN7EXAMPLE\n" f"aws_sec_key = {awssec}\nregion = us-east-1\n", ("aws.secret-access-key", awssec))
add("aws/S3Client.java", "package billing;\n\nclass S3Client {\n  private static final String awsSecretKey = \"" + awssec2 + "\";\n}\n",
    ("aws.secret-access-key", awssec2))

# 3. glued prefixes
ghf = "github_pat_11" + rnd("ghf1", 20, UP + DIG) + "_" + rnd("ghf2", 59, AN)
glp = "glpat-" + rnd("glp", 20, AN)
xoxb = "xoxb-" + rnd("x1", 12, DIG) + "-" + rnd("x2", 13, DIG) + "-" + rnd("x3", 24, AN)
skl = "sk_live_" + rnd("skl", 24, AN)
hf = "hf_" + rnd("hf", 34, UP + LO)
add("scripts/ci-tokens.txt", f"mygithub_pat={ghf}\nmy{ghf}\ntoken{gh_glued}\nx{glp}\nslackxoxb{xoxb[4:]}\n".replace("slackxoxb-", "slack" + "xoxb-")
    + f"stripekey{skl}\nmy{hf}\n",
    ("github.pat.fine-grained", ghf), ("github.pat.classic", gh_glued), ("gitlab.pat", glp), ("slack.bot-token", xoxb),
    ("stripe.secret-key.live", skl), ("huggingface.token", hf))

# 5. generic credentials
V = {k: rnd("gen" + k, 18, AN) for k in "abcdefghijklmnop"}
add("app/application.yml", "spring:\n  datasource:\n    url: jdbc:postgresql://db:5432/billing\n    username: billing\n"
    f"    password: {V['a']}\n  mail:\n    password: ${{MAIL_PASSWORD}}\n", ("generic.config-line", V['a']))
add("app/db.properties", f"db.url=jdbc:mysql://db:3306/app\ndb.user=app\ndb.password={V['b']}\ndb.password.file=/run/secrets/db\n",
    ("generic.config-line", V['b']))
add("web/Web.config", "<?xml version=\"1.0\"?>\n<configuration>\n  <appSettings>\n    <add key=\"Environment\" value=\"Production\" />\n"
    f"    <add key=\"DbPassword\" value=\"{V['c']}\" />\n    <add key=\"StripePublishableKey\" value=\"{rnd('pkx', 24, AN)}\" />\n  </appSettings>\n</configuration>\n",
    ("generic.xml-key-value", V['c']))
add("app/config.toml", f"[database]\nhost = \"db\"\nuser = \"app\"\npassword = \"{V['d']}\"\n", ("generic.password-assignment", V['d']))
add("app/settings.ini", f"[smtp]\nhost = smtp.corp.internal\nuser = billing\npassword = {V['e']}\n", ("generic.config-line", V['e']))
add("app/.env", f"db_password={V['f']}\nAPI_TOKEN={V['g']}\nCACHE_TTL=300\n", ("generic.config-line", V['f']), ("generic.env-assignment", V['g']))
add("scripts/deploy.sh", "#!/bin/sh\nset -eu\n"
    f"export DB_PASSWORD=\"{V['h']}\"\n"
    f"mysql -u root -p{V['i']} -e 'create database billing'\n"
    f"curl -fsS -u admin:{V['j']} https://nexus.corp.internal/service/rest/v1/status\n"
    f"sshpass -p '{V['k']}' scp build.tgz deploy@10.0.0.5:/srv/releases/\n"
    f"billing-cli sync --token {V['l']} --verbose\n"
    f"git clone https://deploy:{V['m']}@git.corp.internal/billing/app.git\n",
    ("generic.env-assignment", V['h']), ("generic.mysql-cli-password", V['i']), ("generic.cli-user-password", V['j']),
    ("generic.sshpass-password", V['k']), ("generic.cli-password-flag", V['l']), ("url.credentials", V['m']))
add("build/Dockerfile", "FROM debian:12\n"
    f"RUN echo \"db_password={V['n']}\" > /etc/billing.conf\n"
    f"ENV REPORTS_API_KEY {V['o']}\n"
    "ARG NPM_TOKEN\nRUN --mount=type=secret,id=npm npm ci\n",
    ("generic.config-line", V['n']), ("generic.env-assignment", V['o']))

# look-alikes: nothing may be reported in these files
look = {}
look["lookalikes/placeholders.env"] = ("DB_PASSWORD=${DB_PASSWORD}\nAPI_TOKEN=<your-token-here>\nGITHUB_TOKEN=ghp_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\n"
    "AWS_ACCESS_KEY_ID=AKIAIOSFODNN7EXAMPLE\nAWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\nSECRET=changeme\n"
    "password=\nSTRIPE_KEY=sk_live_xxxxxxxxxxxxxxxxxxxxxxxx\nSLACK_TOKEN=xoxb-0000000000-0000000000000-xxxxxxxxxxxxxxxxxxxxxxxx\n"
    "PASSWORD_FILE=/run/secrets/db\nTOKEN_URL=https://auth.corp.internal/oauth/token\n")
look["lookalikes/public.json"] = json.dumps({"publicKey": rnd("lookpub", 96, HEX), "stripePublishableKey": "pk_test_" + rnd("pkt", 24, AN),
    "verifyKey": rnd("lookver", 64, HEX), "public_key_pem": "-----BEGIN PUBLIC KEY-----\nMIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA" + rnd("lp", 20, B64) + "\n-----END PUBLIC KEY-----\n",
    "certificate": "-----BEGIN CERTIFICATE-----\nMIIDazCCAlOgAwIBAgIU" + rnd("lc", 44, B64) + "\n-----END CERTIFICATE-----\n"}, indent=2) + "\n"
look["lookalikes/commands.sh"] = ("#!/bin/sh\necho \"$CI_REGISTRY_PASSWORD\" | docker login -u ci --password-stdin registry.corp.internal\n"
    "mysql -u root -p -e 'select 1'\nmysql -u root -p\"$MYSQL_ROOT_PASSWORD\" billing\ncurl -u \"$NEXUS_USER:$NEXUS_PASSWORD\" https://nexus.corp.internal/\n"
    "sshpass -e scp a b\nbilling-cli --token \"$(cat /run/secrets/token)\"\ndocker run -u 1000:1000 -p 8080:8080 billing\n"
    "perldoc -u Some::Module\nvault login --token-file /run/secrets/vault\n")
look["lookalikes/application-template.yml"] = ("spring:\n  datasource:\n    password: ${DB_PASSWORD}\n    password-file: /run/secrets/db\n"
    "security:\n  oauth2:\n    token-uri: https://auth.corp.internal/oauth/token\n    token-type: bearer\n    secret-name: billing-oauth\n")
look["lookalikes/docs.md"] = ("# Configuration\n\nSet `password: <your password>` in `config.yml`, or run\n`app --password $APP_PASSWORD`.\n"
    "Example key: `AKIAIOSFODNN7EXAMPLE`. The token looks like `ghp_` followed by 36 characters.\n")
look["lookalikes/Web.Debug.config"] = ("<configuration>\n  <appSettings>\n    <add key=\"DbPassword\" value=\"\" />\n"
    "    <add key=\"PasswordResetUrl\" value=\"https://billing.corp.internal/reset\" />\n    <add key=\"ApiKeyHeader\" value=\"X-Api-Key\" />\n  </appSettings>\n</configuration>\n")
files.update(look)
shutil.rmtree(ROOT, ignore_errors=True)
for p, t in files.items():
    full = os.path.join(ROOT, p); os.makedirs(os.path.dirname(full), exist_ok=True)
    open(full, "w").write(t)
with open(MAN, "w") as fh:
    fh.write("# The secrets corpus (tests/secrets/corpus/): every finding `moat scan` must report, one a line:\n"
             "#   PATH (relative to the corpus) TAB RULE_ID TAB LINE TAB THE SECRET (the exact capture)\n"
             "# A corpus file with no line here (lookalikes/ and the rest) must give no secret finding at all.\n"
             "# Every value is synthetic, made for this corpus; none is a credential.\n")
    for p, r, l, s in sorted(expect):
        fh.write(f"{p}\t{r}\t{l}\t{s}\n")
print(len(expect), "expected in", len(files), "files")
