#!/usr/bin/env bash
# Installs what eduCloud needs on a fresh Debian machine and starts the all-in-one cloud: all six roles, web and
# daemons in one process, with the embedded defaults (SQLite, in-process bus, local-memory cache).
# Settings: var/allinone/educloud.conf (written on the first start); EDUCLOUD_LISTEN=0.0.0.0:8000 to serve the LAN.
# A second all-in-one on the same machine: another checkout (or EDUCLOUD_DATA) and another EDUCLOUD_LISTEN port; its
# first start picks a free console port and port pool by itself (README, "Two all-in-ones on one machine").
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$EDUCLOUD_ROOT"

ensure_packages python3 python3-venv python3-dev default-libmysqlclient-dev pkg-config build-essential \
  qemu-system-x86 qemu-utils qemu-block-extra tgt novnc
ensure_venv requirements.txt

DATA="${EDUCLOUD_DATA:-$EDUCLOUD_ROOT/var/allinone}"
CONF="${EDUCLOUD_CONF:-$DATA/educloud.conf}"
LISTEN="${EDUCLOUD_LISTEN:-127.0.0.1:8000}"
if [ ! -f "$CONF" ]; then
  write_allinone_conf "$CONF" "$DATA" "$LISTEN"
fi
export EDUCLOUD_CONF="$CONF"
say "starting eduCloud (Ctrl-C stops it; its VMs keep running unless started with --stop-vms)"
# Arguments go to `manage.py run_cloud` (e.g. --stop-vms: stop the node's VMs when it ends).
exec "$VENV/bin/python" manage.py run_cloud "$@"
