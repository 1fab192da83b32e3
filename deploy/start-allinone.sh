#!/usr/bin/env bash
# Installs what eduCloud needs on a fresh Debian machine and starts the all-in-one cloud: all six roles, web and
# daemons in one process, with the embedded defaults (SQLite, in-process bus, local-memory cache).
# Settings: var/allinone/educloud.conf (written on the first start); EDUCLOUD_LISTEN=0.0.0.0:8000 to serve the LAN.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$EDUCLOUD_ROOT"

ensure_packages python3 python3-venv python3-dev default-libmysqlclient-dev pkg-config build-essential \
  qemu-system-x86 qemu-utils novnc
ensure_venv requirements.txt

DATA="${EDUCLOUD_DATA:-$EDUCLOUD_ROOT/var/allinone}"
CONF="${EDUCLOUD_CONF:-$DATA/educloud.conf}"
LISTEN="${EDUCLOUD_LISTEN:-127.0.0.1:8000}"
if [ ! -f "$CONF" ]; then
  # Private from the start: the data dir (eduCloud keeps it so at every start, see luhyaapi/datadir.py; -m is for it
  # alone, as its parents must stay passable) and the configuration (umask 077: not readable by others even before
  # the chmod). The host's own key is made in the data dir at its first start.
  mkdir -p -m 700 "$DATA"
  umask_before="$(umask)"
  umask 077
  say "writing a new configuration to $CONF"
  cat > "$CONF" <<CONF
# eduCloud all-in-one host: every role, embedded defaults. See docs/configuration.md for every setting.
[host]
name = $(hostname -s | tr 'A-Z_.' 'a-z--' | cut -c1-63)
roles = clc,walrus,cc,nc,sc,watch
data_dir = $DATA
listen = $LISTEN
[cloud]
heartbeat_seconds = 60
CONF
  chmod 600 "$CONF"
  umask "$umask_before"
fi
export EDUCLOUD_CONF="$CONF"
say "starting eduCloud (Ctrl-C stops it; its VMs keep running unless started with --stop-vms)"
# Arguments go to `manage.py run_cloud` (e.g. --stop-vms: stop the node's VMs when it ends).
exec "$VENV/bin/python" manage.py run_cloud "$@"
