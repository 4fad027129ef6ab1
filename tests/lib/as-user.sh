#!/usr/bin/env bash
# as-user.sh USER CMD [ARG...]: runs CMD as USER with a clean environment
# (HOME, XDG_* and PATH of that user). The caller makes sure CMD and its inputs
# are readable by USER (copy them under a 0755 temp dir: the build tree may sit
# under a 0700 home).
set -euo pipefail
u=$1; shift
home=$(getent passwd "$u" | cut -d: -f6)
exec setpriv --reuid="$u" --regid="$u" --init-groups --reset-env -- \
  env HOME="$home" USER="$u" LOGNAME="$u" PATH=/usr/local/bin:/usr/bin:/bin \
  XDG_RUNTIME_DIR="/tmp/moat-xdg-$u" "$@"
