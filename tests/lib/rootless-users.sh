#!/usr/bin/env bash
# Creates the unprivileged users the rootless tests run as (CI runs as root,
# and "works as root" proves nothing about rootless):
#   moat-subuid  has a range in /etc/subuid and /etc/subgid (podman's full mapping)
#   moat-single  has no range: only its own id maps
# Idempotent. Must run as root. Prints nothing on success.
set -euo pipefail
[[ $(id -u) -eq 0 ]] || { echo "rootless-users.sh: must run as root" >&2; exit 1; }
for u in moat-subuid moat-single; do
  id "$u" >/dev/null 2>&1 || useradd --create-home --shell /bin/bash "$u"
done
# A fixed range for moat-subuid only (useradd may have handed out another one),
# and none for moat-single.
# Files are rewritten only when wrong: tests call this script concurrently, and
# newuidmap reading a half-rewritten /etc/subuid fails.
for f in /etc/subuid /etc/subgid; do
  touch "$f"
  if [[ $(grep -E '^moat-(subuid|single):' "$f") != "moat-subuid:400000:65536" ]]; then
    (
      flock 9
      sed -i '/^moat-subuid:/d; /^moat-single:/d' "$f"
      echo 'moat-subuid:400000:65536' >> "$f"
    ) 9>/tmp/moat-subid.lock
  fi
done
