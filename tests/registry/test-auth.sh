#!/usr/bin/env bash
# docker:// with htpasswd Basic authentication: where credentials are found
# (--creds, --authfile and $REGISTRY_AUTH_FILE alone, then podman's search
# order $XDG_RUNTIME_DIR/containers/auth.json, ~/.config/containers/auth.json,
# ~/.docker/config.json or $DOCKER_CONFIG; the most specific key first; a
# credential helper; registries.conf's credential-helpers),
# what an unauthorized or refused pull says, and that no password is ever printed.
source "$(dirname "$0")/lib.sh" "$@"

tiny_image tiny
htpasswd -Bbc "$W/htpasswd" alice 'S3cret-pw' >/dev/null 2>&1
htpasswd -Bb "$W/htpasswd" carol 'Carol-pw' >/dev/null 2>&1
start_registry basic "auth:
  htpasswd:
    realm: moat-test
    path: $W/htpasswd"
R=127.0.0.1:$REG_PORT_basic
push oci:$W/pub/tiny:latest docker://$R/moat/tiny:1 --dest-creds 'alice:S3cret-pw'
: >"$W/empty.conf"
chmod a+r "$W/empty.conf"
BASE_ENV="CONTAINERS_REGISTRIES_CONF=$W/empty.conf"

# home NAME: an empty home and runtime dir for moat-subuid; sets H and MOAT_ENV.
home() {
  H=$W/home-$1
  mkdir -p "$H/.config/containers" "$H/.docker" "$H/run/containers"
  chown -R moat-subuid "$H"
  MOAT_ENV="$BASE_ENV HOME=$H XDG_RUNTIME_DIR=$H/run"
}
auth_entry() { printf '{"auth": "%s"}' "$(printf '%s' "$1" | base64 -w0)"; }
put() { cat >"$1"; chown moat-subuid "$1"; chmod 0600 "$1"; }
no_secret_printed() {
  local s
  for s in 'S3cret-pw' 'wrong-pw' 'Carol-pw'; do
    if grep -qF "$s" "$W/out" "$W/err"; then fail "a password was printed"; fi
  done
}
scan() { scan_as moat-subuid "$@" --cert-dir "$W/certs" -v; no_secret_printed; }

note "no credentials anywhere: unauthorized, naming every place looked in"
home none
STORE=$W/users/s1 scan 2 docker://$R/moat/tiny:1
expect_err "unauthorized: authentication required to pull $R/moat/tiny"
expect_err "$H/run/containers/auth.json, $H/.config/containers/auth.json, $H/.docker/config.json, $H/.dockercfg"
expect_err "moat: hint: log in with \`podman login $R\`"
[[ -z $(ls -A "$W/users/s1/layers" 2>/dev/null) ]] || fail "layers stored without authorization"

note "--creds: a wrong password is refused, the right one works"
STORE=$W/users/s2 scan 2 docker://$R/moat/tiny:1 --creds 'alice:wrong-pw'
expect_err "the credentials from --creds were refused"
STORE=$W/users/s2 scan 0 docker://$R/moat/tiny:1 --creds 'alice:S3cret-pw'
expect_err "credentials for $R/moat/tiny from --creds"

note "the search order: ~/.docker/config.json, then ~/.config/containers/auth.json before it, then \$XDG_RUNTIME_DIR before both"
home order
put "$H/.docker/config.json" <<<"{\"auths\": {\"https://$R/v1/\": $(auth_entry 'alice:S3cret-pw')}}"
STORE=$W/users/s3 scan 0 docker://$R/moat/tiny:1
expect_err "from $H/.docker/config.json"
put "$H/.config/containers/auth.json" <<<"{\"auths\": {\"$R\": $(auth_entry 'alice:wrong-pw')}}"
STORE=$W/users/s4 scan 2 docker://$R/moat/tiny:1
expect_err "the credentials from $H/.config/containers/auth.json (key $R) were refused"
put "$H/run/containers/auth.json" <<<"{\"auths\": {\"$R\": $(auth_entry 'carol:Carol-pw')}}"
STORE=$W/users/s4 scan 0 docker://$R/moat/tiny:1
expect_err "from $H/run/containers/auth.json (key $R)"

note "the most specific key wins: HOST/moat over HOST"
put "$H/run/containers/auth.json" <<<"{\"auths\": {\"$R\": $(auth_entry 'alice:wrong-pw'), \"$R/moat\": $(auth_entry 'alice:S3cret-pw')}}"
STORE=$W/users/s5 scan 0 docker://$R/moat/tiny:1
expect_err "(key $R/moat)"

note "--authfile and \$REGISTRY_AUTH_FILE are read alone"
put "$W/only.json" <<<"{\"auths\": {\"$R/moat/tiny\": $(auth_entry 'alice:S3cret-pw')}}"
put "$H/run/containers/auth.json" <<<"{\"auths\": {\"$R\": $(auth_entry 'alice:wrong-pw')}}"
STORE=$W/users/s6 scan 0 docker://$R/moat/tiny:1 --authfile "$W/only.json"
expect_err "from $W/only.json (key $R/moat/tiny)"
MOAT_ENV="$MOAT_ENV REGISTRY_AUTH_FILE=$W/only.json" STORE=$W/users/s7 scan 0 docker://$R/moat/tiny:1
expect_err "from $W/only.json"
put "$W/none.json" <<<'{"auths": {}}'
STORE=$W/users/s8 scan 2 docker://$R/moat/tiny:1 --authfile "$W/none.json"
expect_err "looked in: $W/none.json)"

note "a credential helper named by credHelpers"
home helper
mkdir -p "$W/bin"
cat >"$W/bin/docker-credential-moattest" <<SH
#!/bin/sh
[ "\$1" = get ] || exit 1
read -r server
echo "\$server" >>"$W/helper.calls"
printf '{"ServerURL":"%s","Username":"alice","Secret":"S3cret-pw"}\n' "\$server"
SH
chmod 0755 "$W/bin/docker-credential-moattest"
touch "$W/helper.calls" && chmod 0666 "$W/helper.calls"
put "$H/.docker/config.json" <<<"{\"credHelpers\": {\"$R\": \"moattest\"}}"
MOAT_ENV="$MOAT_ENV PATH=$W/bin:/usr/bin:/bin" STORE=$W/users/s9 scan 0 docker://$R/moat/tiny:1
expect_err "from docker-credential-moattest"
grep -qx "$R" "$W/helper.calls" || fail "the helper was not asked for $R"

note "credsStore: the helper for every registry the file has no entry for"
home store
put "$H/.docker/config.json" <<<'{"auths": {"other.example": {}}, "credsStore": "moattest"}'
: >"$W/helper.calls"
MOAT_ENV="$MOAT_ENV PATH=$W/bin:/usr/bin:/bin" STORE=$W/users/s10 scan 0 docker://$R/moat/tiny:1
expect_err "from docker-credential-moattest"
grep -qx "$R" "$W/helper.calls" || fail "credsStore's helper was not asked for $R"

note "a helper that is not installed: an error naming it"
put "$H/.docker/config.json" <<<"{\"credHelpers\": {\"$R\": \"notinstalled\"}}"
STORE=$W/users/s11 scan 2 docker://$R/moat/tiny:1
expect_err "docker-credential-notinstalled (named in the credentials file) is not installed"
note "registries.conf credential-helpers: asked in order, containers-auth.json meaning the auth files"
home conf
put "$H/.config/containers/auth.json" <<<"{\"auths\": {\"$R\": $(auth_entry alice:S3cret-pw)}}"
cat >"$W/bin/docker-credential-moatnone" <<'SH'
#!/bin/sh
echo "credentials not found in native keychain"
exit 1
SH
chmod 0755 "$W/bin/docker-credential-moatnone"
helpers_conf() { printf 'credential-helpers = [%s]\n' "$1" >"$W/helpers.conf"; chmod a+r "$W/helpers.conf"; }
HENV="$MOAT_ENV CONTAINERS_REGISTRIES_CONF=$W/helpers.conf PATH=$W/bin:/usr/bin:/bin"
helpers_conf '"moattest"'
: >"$W/helper.calls"
MOAT_ENV="$HENV" STORE=$W/users/s12 scan 0 docker://$R/moat/tiny:1
expect_err "from docker-credential-moattest"
grep -qx "$R" "$W/helper.calls" || fail "the registries.conf helper was not asked for $R"
# A helper without the credential (or not installed) does not stop the search.
helpers_conf '"moatnone", "notinstalled", "containers-auth.json"'
MOAT_ENV="$HENV" STORE=$W/users/s13 scan 0 docker://$R/moat/tiny:1
expect_err "from $H/.config/containers/auth.json"
# Without containers-auth.json in the list, the auth files are not read.
helpers_conf '"moatnone"'
MOAT_ENV="$HENV" STORE=$W/users/s14 scan 2 docker://$R/moat/tiny:1
expect_err "docker-credential-moatnone (credential-helpers in registries.conf)"
expect_no_err "$H/.config/containers/auth.json"
helpers_conf '"notinstalled"'
MOAT_ENV="$HENV" STORE=$W/users/s15 scan 2 docker://$R/moat/tiny:1
expect_err "docker-credential-notinstalled (named in credential-helpers in registries.conf) is not installed"

note "\$DOCKER_CONFIG moves docker's config.json"
home dockerconfig
mkdir -p "$W/dockercfg" && chown moat-subuid "$W/dockercfg"
put "$W/dockercfg/config.json" <<<"{\"auths\": {\"https://$R/v1/\": $(auth_entry alice:S3cret-pw)}}"
MOAT_ENV="$MOAT_ENV DOCKER_CONFIG=$W/dockercfg" STORE=$W/users/s16 scan 0 docker://$R/moat/tiny:1
expect_err "from $W/dockercfg/config.json"
echo "PASS: $TEST_NAME"
