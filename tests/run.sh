#!/usr/bin/env bash
# Installs what the tests need and runs eduCloud's whole suite:
#   1. unit and integration tests on the embedded defaults (SQLite, in-process bus, local-memory cache), with the
#      bus contract also against RabbitMQ;
#   2. the database-backed tests again on MariaDB with memcached (beside the first layer), but those that boot QEMU
#      guests (marker guest: what they prove is the guest's and the hypervisor's, and the node's records on MariaDB
#      are proven by the end-to-end tests);
#   3. then, still beside the first layer, the broker restart and crash tests (RabbitMQ servers of their own, halted
#      and killed with SIGKILL) and the end-to-end tests (CLC, CC and two NCs as processes on RabbitMQ + MariaDB +
#      memcached);
#   4. after the first layer, in its line, the browser tests (an all-in-one host and Chromium).
# Extra arguments go to every pytest run (e.g. -x, -k name).
set -uo pipefail
source "$(dirname "$0")/../deploy/lib.sh"
cd "$EDUCLOUD_ROOT"
set -e

ensure_packages python3 python3-venv python3-dev default-libmysqlclient-dev pkg-config build-essential memcached qemu-utils \
  qemu-system-x86 iptables dnsmasq-base busybox iproute2 procps novnc chromium xrdp freerdp2-x11 xvfb litmus tgt qemu-block-extra
ensure_venv requirements-test.txt

# The broker tests boot, crash and restart RabbitMQ servers of their own (tests/rabbitmq.py), so the package is needed
# even where a broker already answers on 5672 (a container's, say).
ensure_packages rabbitmq-server
# RabbitMQ and MariaDB: use the running ones; on a machine without them, install and start them.
if ! port_open 5672; then
  say "starting RabbitMQ"
  as_root rabbitmq-server -detached
  wait_port 5672 90 RabbitMQ
fi
if ! port_open 3306; then
  ensure_packages mariadb-server
  say "starting MariaDB"
  as_root start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd
  wait_port 3306 60 MariaDB
fi

ARTIFACTS="$EDUCLOUD_ROOT/tests/artifacts"
rm -rf "$ARTIFACTS" && mkdir -p "$ARTIFACTS"
MEMCACHED_PORT=$("$VENV/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
say "starting memcached on 127.0.0.1:$MEMCACHED_PORT"
memcached -u "$(id -un)" -l 127.0.0.1 -p "$MEMCACHED_PORT" -m 64 &
MEMCACHED_PID=$!
trap 'kill $MEMCACHED_PID 2>/dev/null || true' EXIT
wait_port "$MEMCACHED_PORT" 10 memcached
export EDUCLOUD_TEST_MEMCACHED="127.0.0.1:$MEMCACHED_PORT"
set +e

status=0
run() {
  local label="$1"; shift
  say "$label"
  "$VENV/bin/python" -m pytest --junitxml="$ARTIFACTS/$label.xml" "$@"
  local code=$?
  # 5 means pytest collected no test: that is a failure of the suite, not a pass.
  if [ $code -ne 0 ]; then echo "$label: pytest exited with $code" >&2; return 1; fi
}

say "lint (ruff)"
"$VENV/bin/ruff" check . || { echo "lint: ruff found problems" >&2; status=1; }

# Two lines of layers run side by side: the SQLite layer followed by the browser one, and the MariaDB layer followed
# by the broker and other end-to-end tests (the end-to-end layers are mostly waiting for processes, brokers and
# guests); each line takes about as long as the other. The tests already share the machine's
# services with any other run (scratch vhosts, databases, namespaces and ports of their own; the MariaDB layer's
# test database is named after this run, as pytest-django drops a test database of the same name that it finds).
# The second line's output goes to a log of each layer, shown when the line ends, in one piece.
# The API fuzz runs generated requests again on MariaDB, fewer of them: the first layer went deeper.
second_line() {
  local code=0
  EDUCLOUD_DATABASE_URL="mysql://root@127.0.0.1:3306/educloud_run$$" EDUCLOUD_CACHE_URL="memcached://$EDUCLOUD_TEST_MEMCACHED" \
    EDUCLOUD_FUZZ_EXAMPLES="${EDUCLOUD_FUZZ_EXAMPLES:-6}" run mariadb -m "database and not guest" "$@" \
    >"$ARTIFACTS/mariadb.log" 2>&1 || code=1
  run e2e -m "e2e or broker_restart" --ignore=tests/e2e/browser "$@" >"$ARTIFACTS/e2e.log" 2>&1 || code=1
  return $code
}
second_line "$@" &
SECOND_LINE=$!
# The browser tests follow the SQLite layer, so that the two lines take about as long as each other.
run sqlite -m "not e2e and not broker_restart" "$@" || status=1
run browser -m e2e tests/e2e/browser "$@" || status=1
wait $SECOND_LINE || status=1
cat "$ARTIFACTS/mariadb.log" "$ARTIFACTS/e2e.log"

"$VENV/bin/python" tests/summary.py "$ARTIFACTS"/*.xml || status=1
exit $status
