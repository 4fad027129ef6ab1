#!/usr/bin/env bash
# docker:// with Bearer tokens from a token service (tests/registry/token-server.py)
# that docker-registry trusts through its rootcertbundle: anonymous tokens for
# a public repository, Basic credentials exchanged for a token, an OAuth2
# identity token, a token that has expired (renewed once), and a user whose
# token lacks the scope (insufficient_scope: one retry, then unauthorized).
source "$(dirname "$0")/lib.sh" "$@"

tiny_image tiny
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=moat token signer" \
  -keyout "$W/pki/sign.key" -out "$W/pki/sign.crt" 2>/dev/null
TPORT=$(free_port)
TLOG=$W/token.log
$PY "$REG_DIR/token-server.py" "$TPORT" "$W/pki/server.crt" "$W/pki/server.key" "$W/pki/sign.crt" "$W/pki/sign.key" \
  moat-registry moat-test-issuer "$TLOG" 2>"$W/token.err" &
PIDS+=($!)
wait_port "$TPORT" || { cat "$W/token.err" >&2; fail "token server did not start"; }
start_registry tok "auth:
  token:
    realm: https://127.0.0.1:$TPORT/token
    service: moat-registry
    issuer: moat-test-issuer
    rootcertbundle: $W/pki/sign.crt"
R=127.0.0.1:$REG_PORT_tok
push oci:$W/pub/tiny:latest docker://$R/moat/tiny:1 --dest-creds alice:Al1ce-T0ken-pw
push oci:$W/pub/tiny:latest docker://$R/public/tiny:1 --dest-creds alice:Al1ce-T0ken-pw
: >"$W/empty.conf"
chmod a+r "$W/empty.conf"
export MOAT_ENV="CONTAINERS_REGISTRIES_CONF=$W/empty.conf HOME=$W/nohome XDG_RUNTIME_DIR=$W/nohome"
tokens() { [[ -f $TLOG ]] && wc -l <"$TLOG" || echo 0; }
scan() { scan_as moat-subuid "$@" --cert-dir "$W/certs" -v; }

note "anonymous token for a public repository"
t0=$(tokens)
STORE=$W/users/a scan 0 docker://$R/public/tiny:1
expect_err "(anonymous)"
jq -e '.findings[] | select(.path == "/bin/su")' "$W/out" >/dev/null || fail "anonymous pull: /bin/su not reported"
[[ $(( $(tokens) - t0 )) -eq 1 ]] || fail "anonymous pull took $(( $(tokens) - t0 )) tokens, expected 1 (cached for the whole pull)"

note "a private repository without credentials: unauthorized"
STORE=$W/users/b scan 2 docker://$R/moat/tiny:1
expect_err "unauthorized: authentication required to pull $R/moat/tiny"

note "Basic credentials exchanged for a token"
STORE=$W/users/c scan 0 docker://$R/moat/tiny:1 --creds alice:Al1ce-T0ken-pw
expect_err "with credentials from --creds"
tail -1 "$TLOG" | jq -e '.user == "alice" and .auth == "Basic " and (.scope == ["repository:moat/tiny:pull"])' >/dev/null ||
  fail "token request was not alice's Basic for repository:moat/tiny:pull: $(tail -1 "$TLOG")"
if grep -qF Al1ce-T0ken-pw "$W/err" "$W/out"; then fail "the password was printed"; fi

note "an identity token (auth.json identitytoken) uses the OAuth2 refresh-token grant"
mkdir -p "$W/idhome/.config/containers"
echo "{\"auths\": {\"$R\": {\"identitytoken\": \"refresh-alice\"}}}" >"$W/idhome/.config/containers/auth.json"
chown -R moat-subuid "$W/idhome"
MOAT_ENV="$MOAT_ENV HOME=$W/idhome" STORE=$W/users/d scan 0 docker://$R/moat/tiny:1
tail -1 "$TLOG" | jq -e '.method == "POST" and .user == "alice"' >/dev/null || fail "no refresh-token POST: $(tail -1 "$TLOG")"
if grep -qF refresh-alice "$W/err" "$W/out"; then fail "the identity token was printed"; fi

note "an expired token is renewed once"
kill "${PIDS[0]}"; wait "${PIDS[0]}" 2>/dev/null || true
touch "$TLOG.expire-first"
$PY "$REG_DIR/token-server.py" "$TPORT" "$W/pki/server.crt" "$W/pki/server.key" "$W/pki/sign.crt" "$W/pki/sign.key" \
  moat-registry moat-test-issuer "$TLOG" 2>>"$W/token.err" &
PIDS+=($!)
wait_port "$TPORT" || fail "token server did not restart"
t0=$(tokens)
STORE=$W/users/e scan 0 docker://$R/moat/tiny:1 --creds alice:Al1ce-T0ken-pw
expect_err "fetching a new token"
[[ $(( $(tokens) - t0 )) -eq 2 ]] || fail "expired token: $(( $(tokens) - t0 )) token requests, expected 2"

note "insufficient scope: one retry with a new token, then unauthorized"
t0=$(tokens)
STORE=$W/users/f scan 2 docker://$R/moat/tiny:1 --creds bob:bobpw
expect_err "insufficient_scope"
expect_err "the credentials from --creds were refused"
[[ $(( $(tokens) - t0 )) -eq 2 ]] || fail "insufficient scope: $(( $(tokens) - t0 )) token requests, expected 2"
[[ -z $(ls -A "$W/users/f/layers" 2>/dev/null) ]] || fail "layers stored without authorization"
echo "PASS: $TEST_NAME"
