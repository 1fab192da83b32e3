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

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# wait_port PORT SECONDS NAME: wait until something listens on 127.0.0.1:PORT.
wait_port() {
  local port="$1" seconds="$2" name="$3" i
  for ((i = 0; i < seconds * 5; i++)); do port_open "$port" && return 0; sleep 0.2; done
  echo "$name is not listening on 127.0.0.1:$port after ${seconds}s" >&2
  return 1
}
