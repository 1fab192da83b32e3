# Shared steps of eduCloud's set-up scripts (sourced, not run): Debian packages and the Python virtualenv.

EDUCLOUD_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${EDUCLOUD_VENV:-$EDUCLOUD_ROOT/.venv}"
APT_UPDATED=""

say() { printf '\033[1m==> %s\033[0m\n' "$*"; }

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

# ensure_packages PKG...: install the Debian packages that are missing (apt-get update once, only if needed).
ensure_packages() {
  local missing=()
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  say "installing Debian packages: ${missing[*]}"
  if [ -z "$APT_UPDATED" ]; then as_root apt-get update -qq; APT_UPDATED=1; fi
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
}

# ensure_venv REQUIREMENTS: a virtualenv at $VENV with exactly the pinned requirements (re-run only on change).
ensure_venv() {
  local requirements="$EDUCLOUD_ROOT/$1" stamp="$VENV/.requirements.sha256"
  local wanted
  wanted="$(cat "$EDUCLOUD_ROOT"/requirements*.txt | sha256sum | cut -d' ' -f1)-$1"
  if [ ! -x "$VENV/bin/python" ]; then
    say "creating the virtualenv $VENV"
    python3 -m venv "$VENV"
  fi
  if [ "$(cat "$stamp" 2>/dev/null)" != "$wanted" ]; then
    say "installing Python packages from $1"
    "$VENV/bin/pip" install -q --disable-pip-version-check -r "$requirements" 2>&1 | grep -v "is ignored" || true
    "$VENV/bin/python" -c "import django, rest_framework, pika, MySQLdb, pymemcache" \
      || { echo "the Python packages did not install; see the messages above" >&2; exit 1; }
    echo "$wanted" > "$stamp"
  fi
}

# write_allinone_conf CONF DATA LISTEN: the all-in-one's first configuration, serving on LISTEN (HOST:PORT), with
# its console port and port pool moved off this machine's defaults when another program (another all-in-one, most
# often) holds them; nothing is written, and the start stops, when LISTEN's port is taken.
write_allinone_conf() {
  local conf="$1" data="$2" listen="$3" ports umask_before
  ports="$(cd "$EDUCLOUD_ROOT" && "$VENV/bin/python" -m deploy.first_ports "$listen")" || return 1
  # Private from the start: the data dir (eduCloud keeps it so at every start, see luhyaapi/datadir.py; -m is for it
  # alone, as its parents must stay passable) and the configuration (umask 077: not readable by others even before
  # the chmod). The host's own key is made in the data dir at its first start.
  mkdir -p -m 700 "$data"
  umask_before="$(umask)"
  umask 077
  say "writing a new configuration to $conf"
  cat > "$conf" <<CONF
# eduCloud all-in-one host: every role, embedded defaults. See docs/configuration.md for every setting.
[host]
name = $(hostname -s | tr 'A-Z_.' 'a-z--' | cut -c1-63)
roles = clc,walrus,cc,nc,sc,watch
data_dir = $data
listen = $listen
[cloud]
heartbeat_seconds = 60
CONF
  if [ -n "$ports" ]; then
    say "this machine's default console port or port pool is taken; the new configuration names free ones:"
    printf '%s\n' "$ports"
    printf '# Chosen at the first start: the defaults were taken on this machine (another all-in-one?).\n%s\n' \
      "$ports" >> "$conf"
  fi
  chmod 600 "$conf"
  umask "$umask_before"
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# wait_port PORT SECONDS NAME: wait until something listens on 127.0.0.1:PORT.
wait_port() {
  local port="$1" seconds="$2" name="$3" i
  for ((i = 0; i < seconds * 5; i++)); do port_open "$port" && return 0; sleep 0.2; done
  echo "$name is not listening on 127.0.0.1:$port after ${seconds}s" >&2
  return 1
}
