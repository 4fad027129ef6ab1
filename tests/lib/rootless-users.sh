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
# A range for moat-subuid only, away from ranges other tools may hand out.
grep -q '^moat-subuid:' /etc/subuid 2>/dev/null || echo 'moat-subuid:400000:65536' >> /etc/subuid
grep -q '^moat-subuid:' /etc/subgid 2>/dev/null || echo 'moat-subuid:400000:65536' >> /etc/subgid
sed -i '/^moat-single:/d' /etc/subuid /etc/subgid 2>/dev/null || true
