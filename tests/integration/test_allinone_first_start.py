"""The all-in-one's first start writing its configuration (``write_allinone_conf`` of ``deploy/lib.sh``, the step of
``deploy/start-allinone.sh`` before any service starts), run for real in a scratch directory beside ports another
program holds: it names a free console port and pool when the defaults are taken, and stops, writing nothing, when
its web port is taken."""

from __future__ import annotations

import errno
import os
import socket
import stat
import subprocess
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from cc.network.addresses import port_in_use
from luhyaapi.config import load_config

LIB = Path(__file__).resolve().parents[2] / "deploy" / "lib.sh"


@contextmanager
def held(port: int) -> Iterator[None]:
    """``port`` held by a listener, ours, or another program's already."""
    with socket.socket() as server:
        try:
            server.bind(("127.0.0.1", port))
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise
        else:
            server.listen()
        yield


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def first_start(data: Path, listen: str) -> subprocess.CompletedProcess:
    environ = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp"),
               "EDUCLOUD_VENV": str(Path(sys.executable).parent.parent)}
    script = 'set -euo pipefail; source "$1"; write_allinone_conf "$2/educloud.conf" "$2" "$3"'
    return subprocess.run(["bash", "-c", script, "first-start", str(LIB), str(data), listen], env=environ,
                          capture_output=True, text=True, timeout=60)


def test_beside_another_all_in_one_the_new_file_names_a_free_console_port_and_pool(tmp_path):
    data = tmp_path / "second"
    web = free_port()
    with ExitStack() as stack:
        stack.enter_context(held(6080))  # the first all-in-one's console proxy
        stack.enter_context(held(6400))  # and its first VM's console
        started = first_start(data, f"127.0.0.1:{web}")
        assert started.returncode == 0, started.stderr
        assert "the new configuration names free ones" in started.stdout
        config = load_config({"EDUCLOUD_CONF": str(data / "educloud.conf")})
        pool = range(config.port_range[0], config.port_range[1] + 1)
        assert config.console_port != 6080 and not port_in_use(config.console_port)
        assert not set(pool) & set(range(6400, 7000))
        assert web not in pool and config.console_port not in pool
        assert not any(port_in_use(port) for port in pool)
    assert (config.listen_host, config.listen_port) == ("127.0.0.1", web)
    assert stat.S_IMODE((data / "educloud.conf").stat().st_mode) == 0o600


def test_a_taken_web_port_stops_the_first_start_and_nothing_is_written(tmp_path):
    data = tmp_path / "second"
    web = free_port()
    with held(web):
        started = first_start(data, f"127.0.0.1:{web}")
    assert started.returncode != 0
    assert f"port {web} is taken on this machine" in started.stderr
    assert "EDUCLOUD_LISTEN=" in started.stderr
    assert not data.exists()


def test_a_listen_value_without_a_port_stops_the_first_start(tmp_path):
    started = first_start(tmp_path / "second", "127.0.0.1")
    assert started.returncode != 0 and "is not HOST:PORT" in started.stderr
    assert not (tmp_path / "second").exists()
