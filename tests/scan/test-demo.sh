#!/usr/bin/env bash
# The bundled example image (examples/demo-image, README's first command):
# as the unprivileged user moat-subuid, `moat scan` exits 1 and reports exactly
# the findings examples/README.md lists (rule, subject, layer, deleted), the
# table and SARIF say the same, and no output holds either planted token whole.
source "$(dirname "$0")/lib.sh"
cp -r "$SCAN_DIR/../../examples/demo-image" "$W/pub/demo"
chmod -R a+rX "$W/pub/demo"
IMG=oci:$W/pub/demo:latest

scan_as moat-subuid 1 "$IMG" --format json
cp "$W/out" "$W/report.json"
validate_report "$W/report.json"
got=$(jq -r '.findings[] | [.severity, .rule_id, (.path // ("config " + .config_field)),
             (if .layer then (.layer.index|tostring) else "-" end), (.deleted|tostring)] | @tsv' "$W/report.json")
want=$(cat <<'WANT'
critical	setuid-script	/usr/local/bin/rootsh	1	false
critical	aws.secret-access-key	/opt/app/config/aws-credentials	0	true
critical	db.postgres-url	/opt/app/.env	2	false
critical	github.pat.classic	config Env	-	false
critical	github.pat.classic	config History	-	false
high	shadow-readable	/etc/shadow	0	false
high	account-extra-uid0	/etc/passwd	0	false
high	aws.access-key-id	/opt/app/config/aws-credentials	0	true
high	shadow.password-hash	/etc/shadow	0	false
medium	world-writable	/var/tmp/uploads	1	false
medium	account-duplicate	/etc/passwd	0	false
medium	generic.env-assignment	/opt/app/.env	2	false
medium	sensitive-dotenv	/opt/app/.env	2	false
medium	config-runs-as-root	config User	-	false
low	unknown-owner	/opt/app/data/orphan.dat	1	false
info	config-no-healthcheck	config Healthcheck	-	false
WANT
)
diff <(echo "$want") <(echo "$got") || fail "findings differ from examples/README.md (- expected, + got)"
# Owner names come from the image's own passwd/group.
[[ $(jq -r '.findings[] | select(.rule_id=="shadow-readable") | "\(.owner.user):\(.owner.group) \(.mode)"' "$W/report.json") == "root:shadow 0644" ]] ||
  fail "shadow-readable: owner/mode"
[[ $(jq -r '.findings[] | select(.rule_id=="sensitive-dotenv") | "\(.owner.user):\(.owner.group)"' "$W/report.json") == "app:app" ]] ||
  fail "sensitive-dotenv: owner names"

scan_as moat-subuid 1 "$IMG"
cp "$W/out" "$W/table.txt"
grep -q "16 findings: 5 critical, 4 high, 5 medium, 1 low, 1 info" "$W/table.txt" || fail "table summary"
scan_as moat-subuid 1 "$IMG" --format sarif -o "$W/users/demo.sarif"
[[ $(jq '.runs[0].results | length' "$W/users/demo.sarif") -eq 16 ]] || fail "SARIF result count"
# The real image's SARIF through the SARIF multitool (as the unit test does
# for a synthetic report), when npm could install it.
MT=${MOAT_SARIF_MULTITOOL:-/opt/sarif/node_modules/.bin/sarif-multitool}
if [[ -x $MT ]]; then
  "$MT" validate --output "$W/validation.sarif" "$W/users/demo.sarif" >"$W/validate.log" 2>&1 ||
    { cat "$W/validate.log" >&2; fail "sarif-multitool validate rejects the demo image's SARIF"; }
  # Nothing but SARIF2005 (no informationUri: moat has no public home page yet).
  jq -e '[.runs[].results[]? | select(.ruleId != "SARIF2005")] | length == 0' "$W/validation.sarif" >/dev/null ||
    fail "sarif-multitool: $(jq -c '[.runs[].results[]? | .ruleId]' "$W/validation.sarif")"
else
  echo "NOTE: sarif-multitool not installed: the demo SARIF was not validated by it (tests/checks validates a synthetic one)" >&2
fi
scan_as moat-subuid 0 "$IMG" --fail-on none
# -o to a device writes into it: the atomic rename that protects regular
# files must never replace a device node (as root that destroyed /dev/null).
scan_as moat-subuid 1 "$IMG" -o /dev/null
[[ -c /dev/null ]] || { rm -f /dev/null; mknod -m 666 /dev/null c 1 3; fail "-o /dev/null replaced /dev/null"; }
for secret in ghp_MoatDemoFakeToken000aBcDeFgHiJkLmNoP AKIAMOATDEMO4Q7X2K5J; do
  ! grep -q "$secret" "$W/report.json" "$W/table.txt" "$W/users/demo.sarif" "$W/err" || fail "a whole secret in the output"
done

# Users' own rules and disabled rules, on the scan itself.
mkdir -m 0755 "$W/pub/rules"
cat >"$W/pub/rules/acme.json" <<'RULES'
{"family": "acme", "rules": [{
  "id": "acme.internal-id", "title": "ACME internal app id", "category": "secret", "severity": "low",
  "pattern": "(app\\.py)", "examples": [{"text": "COPY app.py /", "secret": "app.py"}],
  "negative_examples": ["COPY main.py /"], "references": ["https://example.invalid/acme"]}]}
RULES
chmod 0644 "$W/pub/rules/acme.json"
scan_as moat-subuid 1 "$IMG" --format json --rules "$W/pub/rules" --disable aws.access-key-id --disable shadow.password-hash
jq -e '[.findings[] | select(.rule_id == "aws.access-key-id" or .rule_id == "shadow.password-hash")] | length == 0' "$W/out" >/dev/null ||
  fail "--disable left the rule on"
# The custom rule matches the history step "COPY .env app.py /opt/app/", which made layer 2.
jq -e '[.findings[] | select(.rule_id == "acme.internal-id" and .config_field == "History" and .layer.index == 2)] | length == 1' "$W/out" >/dev/null ||
  fail "--rules: the custom rule did not report the history step"
scan_as moat-subuid 2 "$IMG" --disable no.such-rule
grep -q "no.such-rule" "$W/err" || fail "an unknown --disable id is not named"
echo "PASS: $TEST_NAME"
