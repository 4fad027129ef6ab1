#!/usr/bin/env bash
# docker:// through a misbehaving proxy (tests/registry/proxy.py) in front of
# an htpasswd registry: a blob redirect to another loopback port (no
# Authorization sent there), 429 with Retry-After (retried; then a rate-limit
# error with the reset time), a connection cut mid-blob (resumed with Range),
# chunked bodies, and one flipped byte (exit 2, nothing in the store).
source "$(dirname "$0")/lib.sh" "$@"

tiny_image tiny
htpasswd -Bbc "$W/htpasswd" alice 'Pr0xy-pw' >/dev/null 2>&1
start_registry up "auth:
  htpasswd:
    realm: moat-test
    path: $W/htpasswd"
push oci:$W/pub/tiny:latest docker://127.0.0.1:$REG_PORT_up/moat/tiny:1 --dest-creds 'alice:Pr0xy-pw'
PPORT=$(free_port); APORT=$(free_port)
PLOG=$W/proxy.log; MODE=$W/proxy.mode
echo pass >"$MODE"; : >"$PLOG"
$PY "$REG_DIR/proxy.py" "$PPORT" "$APORT" "$W/pki/server.crt" "$W/pki/server.key" "$W/pki/ca.crt" \
  "https://127.0.0.1:$REG_PORT_up" "$MODE" "$PLOG" 'alice:Pr0xy-pw' 2>"$W/proxy.err" &
PIDS+=($!)
wait_port "$PPORT" && wait_port "$APORT" || { cat "$W/proxy.err" >&2; fail "proxy did not start"; }
P=127.0.0.1:$PPORT
: >"$W/empty.conf"
chmod a+r "$W/empty.conf"
export MOAT_ENV="CONTAINERS_REGISTRIES_CONF=$W/empty.conf HOME=$W/nohome XDG_RUNTIME_DIR=$W/nohome"
n=0
scan() { n=$((n + 1)); STORE=$W/users/p$n scan_as moat-subuid "$@" --cert-dir "$W/certs" --creds 'alice:Pr0xy-pw' -v; }
found_su() { jq -e '.findings[] | select(.path == "/bin/su")' "$W/out" >/dev/null || fail "$1: /bin/su not reported"; }
mark() { wc -l <"$PLOG"; }
since() { tail -n +"$(( $1 + 1 ))" "$PLOG"; }

note "a blob redirect to another port: followed, without Authorization"
echo redirect >"$MODE"; m=$(mark)
scan 0 docker://$P/moat/tiny:1
found_su redirect
alt=$(since "$m" | jq -s "[.[] | select(.port == $APORT)] | length")
[[ $alt -ge 4 ]] || fail "only $alt requests reached the redirect target"
since "$m" | jq -s -e "[.[] | select(.port == $APORT and .auth)] | length == 0" >/dev/null ||
  fail "Authorization was sent to another origin"
since "$m" | jq -s -e "[.[] | select(.port == $PPORT and .auth)] | length > 0" >/dev/null ||
  fail "Authorization was not sent to the registry itself"
expect_err "(no credentials sent there)"

note "a redirect loop stops after 5; a redirect from HTTPS to HTTP is refused"
echo redirect-loop >"$MODE"
scan 2 docker://$P/moat/tiny:1
expect_err "redirected more than 5 times"
echo redirect-http >"$MODE"; m=$(mark)
scan 2 docker://$P/moat/tiny:1
expect_err "redirected from HTTPS to plain HTTP"
since "$m" | jq -s -e "[.[] | select(.port == $APORT)] | length == 0" >/dev/null || fail "a plain-HTTP redirect was followed"

note "429 with Retry-After: waited and retried"
echo 429:2 >"$MODE"
scan 0 docker://$P/moat/tiny:1
found_su 429
expect_err "HTTP 429, retrying in 1 s"

note "429 that does not stop: rate limited, with the reset time"
echo 429:1000 >"$MODE"
scan 2 docker://$P/moat/tiny:1
expect_err "rate limited by $P (HTTP 429 TOOMANYREQUESTS); the limit resets at"

note "a connection cut in the middle of each layer: resumed with Range"
echo drop >"$MODE"; m=$(mark)
scan 0 docker://$P/moat/tiny:1
found_su drop
expect_err "resuming"
since "$m" | jq -s -e '[.[] | select((.range | startswith("bytes=")) and .status == 206)] | length >= 1' >/dev/null || fail "no Range request was made"

note "chunked bodies (no Content-Length)"
echo chunked >"$MODE"
scan 0 docker://$P/moat/tiny:1
found_su chunked

note "one flipped byte in a layer: exit 2 naming the layer, nothing in the store"
echo flip >"$MODE"
scan 2 docker://$P/moat/tiny:1
expect_err "layer"
grep -qiE "digest|does not match|differs|corrupt" "$W/err" || { cat "$W/err" >&2; fail "the error does not say the digest is wrong"; }
[[ -z $(ls -A "$W/users/p$n/layers" 2>/dev/null) ]] || fail "a layer entered the store from a tampered blob"
[[ -z $(ls -A "$W/users/p$n/tmp" 2>/dev/null) ]] || fail "leftovers in tmp/ after the failed pull"
[[ -z $(ls -A "$W/users/p$n/images" 2>/dev/null) ]] || fail "an image record was written for a tampered image"
note "a manifest altered on the way, Docker-Content-Digest untouched: refused by digest"
echo pass >"$MODE"
digest=$(manifest_digest docker://$P/moat/tiny:1 --creds 'alice:Pr0xy-pw')
echo flip-manifest >"$MODE"
scan 2 "docker://$P/moat/tiny@$digest"
expect_err "content does not match its digest"
[[ -z $(ls -A "$W/users/p$n/layers" 2>/dev/null) ]] || fail "a layer entered the store from an altered manifest"

note "a manifest larger than the 8 MiB cap"
echo big-manifest >"$MODE"
scan 2 docker://$P/moat/tiny:1
expect_err "is larger than 8.4 MB"
echo "PASS: $TEST_NAME"
