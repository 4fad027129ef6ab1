#!/usr/bin/env bash
# docker:// and registries.conf: a [[registry]] prefix rewritten to another
# location, a mirror served first (and skipped when it fails or when
# pull-from-mirror excludes the reference), a blocked registry, insecure = true
# (no CA needed), and the user's registries.conf plus its registries.conf.d drop-ins.
source "$(dirname "$0")/lib.sh" "$@"

tiny_image tiny
start_registry primary
start_registry mirror
A=127.0.0.1:$REG_PORT_primary
M=127.0.0.1:$REG_PORT_mirror
push oci:$W/pub/tiny:latest docker://$A/moat/tiny:1
push oci:$W/pub/tiny:latest docker://$M/mirrored/tiny:1
conf() { cat >"$W/$1.conf"; chmod a+r "$W/$1.conf"; }
: >"$W/empty.conf"; chmod a+r "$W/empty.conf"
scan() { scan_as moat-subuid "$@" --cert-dir "$W/certs" -v; }
export MOAT_ENV="HOME=$W/nohome"
found_su() { jq -e '.findings[] | select(.path == "/bin/su")' "$W/out" >/dev/null || fail "$1: /bin/su not reported"; }
n=0; next_store() { n=$((n + 1)); S=$W/users/c$n; }

note "a mirror is asked first"
conf mirror <<EOF2
[[registry]]
prefix = "$A/moat"
location = "$A/moat"
[[registry.mirror]]
location = "$M/mirrored"
EOF2
a0=$(count_requests "$W/primary.log" GET /manifests/); m0=$(count_requests "$W/mirror.log" GET /manifests/)
next_store; STORE=$S scan 0 docker://$A/moat/tiny:1 --registries-conf "$W/mirror.conf"
found_su mirror
expect_err "from $M/mirrored/tiny:1 (mirror)"
[[ $(count_requests "$W/mirror.log" GET /manifests/) -gt $m0 ]] || fail "the mirror was not asked"
[[ $(count_requests "$W/primary.log" GET /manifests/) -eq $a0 ]] || fail "the primary was asked although the mirror had the image"
[[ $(count_requests "$W/mirror.log" GET /blobs/) -ge 4 ]] || fail "the layers did not come from the mirror"

note "a mirror without the image is skipped: the location serves it"
conf mirror-miss <<EOF2
[[registry]]
prefix = "$A/moat"
location = "$A/moat"
[[registry.mirror]]
location = "$M/nothing-here"
EOF2
next_store; STORE=$S scan 0 docker://$A/moat/tiny:1 --registries-conf "$W/mirror-miss.conf"
found_su mirror-miss
expect_err "mirror $M failed"

note "pull-from-mirror = digest-only: a tag goes to the location"
conf digest-only <<EOF2
[[registry]]
prefix = "$A/moat"
location = "$A/moat"
[[registry.mirror]]
location = "$M/mirrored"
pull-from-mirror = "digest-only"
EOF2
next_store; STORE=$S scan 0 docker://$A/moat/tiny:1 --registries-conf "$W/digest-only.conf"
expect_no_err "(mirror)"

note "prefix rewriting: moat.example/team -> the test registry; the environment variable names the file"
conf rewrite <<EOF2
[[registry]]
prefix = "moat.example/team"
location = "$A/moat"
EOF2
next_store; MOAT_ENV="$MOAT_ENV CONTAINERS_REGISTRIES_CONF=$W/rewrite.conf" STORE=$S scan 0 docker://moat.example/team/tiny:1
found_su rewrite
expect_err "registries.conf: read $W/rewrite.conf"
expect_err "from $A/moat/tiny:1"
[[ $(jq -r .image.reference "$W/out") == "docker://moat.example/team/tiny:1" ]] || fail "report reference $(jq -r .image.reference "$W/out")"

note "blocked = true refuses the pull, exit 2 with a hint"
conf blocked <<EOF2
[[registry]]
location = "$A"
blocked = true
EOF2
next_store
STORE=$S scan 2 docker://$A/moat/tiny:1 --registries-conf "$W/blocked.conf"
expect_err "is blocked by registries.conf"
expect_err "moat: hint:"
[[ -z $(ls -A "$S/layers" 2>/dev/null) ]] || fail "a blocked image was stored"

note "insecure = true: no CA needed; without it the TLS check stands"
conf insecure <<EOF2
[[registry]]
location = "$A"
insecure = true
EOF2
next_store; STORE=$S scan_as moat-subuid 0 docker://$A/moat/tiny:1 --registries-conf "$W/insecure.conf" -v
expect_err "not verified (insecure = true in registries.conf)"

note "insecure = true for a plain-HTTP registry: HTTPS fails, HTTP is used"
NO_TLS=1 start_registry http
H0=127.0.0.1:$REG_PORT_http
push oci:$W/pub/tiny:latest docker://$H0/moat/tiny:1 --dest-tls-verify=false
conf http <<EOF2
[[registry]]
location = "$H0"
insecure = true
EOF2
next_store; STORE=$S scan_as moat-subuid 0 docker://$H0/moat/tiny:1 --registries-conf "$W/http.conf" -v
expect_err "trying HTTP (insecure registry)"
found_su http
next_store; STORE=$S scan_as moat-subuid 2 docker://$H0/moat/tiny:1 --registries-conf "$W/empty.conf"
expect_err "TLS failure talking to $H0"

note "the user's registries.conf and registries.conf.d drop-ins (a later drop-in replaces an entry of the same prefix)"
H=$W/home-conf
mkdir -p "$H/.config/containers/registries.conf.d"
cat >"$H/.config/containers/registries.conf" <<EOF2
[[registry]]
location = "$A"
blocked = true
EOF2
cat >"$H/.config/containers/registries.conf.d/50-unblock.conf" <<EOF2
[[registry]]
location = "$A"
blocked = false
EOF2
chown -R moat-subuid "$H"
next_store; MOAT_ENV="HOME=$H" STORE=$S scan 0 docker://$A/moat/tiny:1
expect_err "registries.conf: read $H/.config/containers/registries.conf.d/50-unblock.conf"
rm "$H/.config/containers/registries.conf.d/50-unblock.conf"
next_store; MOAT_ENV="HOME=$H" STORE=$S scan 2 docker://$A/moat/tiny:1
expect_err "is blocked by registries.conf"

note "a FILE given (--registries-conf, \$CONTAINERS_REGISTRIES_CONF) still takes the registries.conf.d drop-ins, as containers/image does"
rm "$H/.config/containers/registries.conf"
cat >"$H/.config/containers/registries.conf.d/60-block.conf" <<EOF2
[[registry]]
location = "$A"
blocked = true
EOF2
chown -R moat-subuid "$H"
next_store; MOAT_ENV="HOME=$H" STORE=$S scan 2 docker://$A/moat/tiny:1 --registries-conf "$W/empty.conf"
expect_err "registries.conf: read $H/.config/containers/registries.conf.d/60-block.conf"
expect_err "is blocked by registries.conf"
next_store; MOAT_ENV="HOME=$H CONTAINERS_REGISTRIES_CONF=$W/empty.conf" STORE=$S scan 2 docker://$A/moat/tiny:1
expect_err "is blocked by registries.conf"
# Without a user registries.conf, the system's drop-ins come first, then the user's.
[[ -d /etc/containers/registries.conf.d ]] && ls /etc/containers/registries.conf.d/*.conf >/dev/null 2>&1 &&
  { grep -q "registries.conf: read /etc/containers/registries.conf.d/" "$W/err" || fail "the system drop-ins were not read"; }
echo "PASS: $TEST_NAME"
