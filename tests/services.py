"""Real services for tests: a scratch MariaDB database, memcached, and eduCloud roles as separate processes."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MARIADB = {"host": "127.0.0.1", "port": 3306, "user": "root", "password": ""}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def scratch_mariadb_database(prefix: str = "educloud_test"):
    """A database of its own on the machine's MariaDB; dropped afterwards. Yields its mysql:// URL."""
    import MySQLdb

    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    connection = MySQLdb.connect(host=MARIADB["host"], port=MARIADB["port"], user=MARIADB["user"],
                                 password=MARIADB["password"])
    try:
        connection.cursor().execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
        yield f"mysql://{MARIADB['user']}@{MARIADB['host']}:{MARIADB['port']}/{name}"
    finally:
        connection.cursor().execute(f"DROP DATABASE IF EXISTS `{name}`")
        connection.close()


@contextmanager
def memcached(private: bool = False):
    """The memcached the test command started (EDUCLOUD_TEST_MEMCACHED=host:port), or, when there is none or a
    ``private`` one is asked for (so no other test's keys can be seen), one started here."""
    address = os.environ.get("EDUCLOUD_TEST_MEMCACHED")
    if address and not private:
        yield f"memcached://{address}"
        return
    binary = shutil.which("memcached")
    if binary is None:
        raise RuntimeError("memcached is not installed; run the test command (tests/run.sh), which installs it")
    port = free_port()
    process = subprocess.Popen([binary, "-u", "root" if os.geteuid() == 0 else os.environ.get("USER", "nobody"),
                                "-l", "127.0.0.1", "-p", str(port), "-m", "64"])
    try:
        _wait_port(port, 10)
        yield f"memcached://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=10)


def _wait_port(port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


class RoleProcess:
    """One eduCloud host (``manage.py run_cloud``) as a separate process with its own configuration file."""

    def __init__(self, workdir: Path, name: str, roles: str, settings: dict[str, dict[str, str]]) -> None:
        self.name = name
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.dir = workdir / name
        self.dir.mkdir(parents=True)
        sections = {"host": {"name": name, "roles": roles, "data_dir": str(self.dir), "ip": "127.0.0.1",
                             "listen": f"127.0.0.1:{self.port}", "peer_config_dir": str(self.dir)}}
        for section, values in settings.items():
            sections.setdefault(section, {}).update(values)
        self.conf = self.dir / "educloud.conf"
        self.conf.write_text("".join(f"[{section}]\n" + "".join(f"{k} = {v}\n" for k, v in values.items()) + "\n"
                                     for section, values in sections.items()))
        self.log = self.dir / "run.log"
        self.process: subprocess.Popen | None = None

    def start(self) -> RoleProcess:
        env = {key: value for key, value in os.environ.items() if not key.startswith("EDUCLOUD_")}
        env["EDUCLOUD_CONF"] = str(self.conf)
        env["DJANGO_SETTINGS_MODULE"] = "educloud.settings"
        env["EDUCLOUD_ADMIN_PASSWORD"] = "e2e-admin-password"
        with self.log.open("ab") as log:
            self.process = subprocess.Popen([sys.executable, str(ROOT / "manage.py"), "run_cloud"], cwd=ROOT, env=env,
                                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        return self

    def wait_listening(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.process.returncode}:\n{self.tail()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"{self.name} did not listen on {self.port} within {timeout}s:\n{self.tail()}")

    def kill(self) -> None:
        """Die at once, as a crashed or unplugged machine would (no goodbye message)."""
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:]) if self.log.exists() else ""
