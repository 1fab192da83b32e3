"""A node whose commands run in a Celery worker of their own, as ``deploy/systemd/educloud-worker.service`` starts it
beside ``run_cloud --without celery-worker``: the unit's own ``ExecStart`` line, read from the file, runs each command
the node is sent once; the host process runs none; ``celery inspect`` finds the worker on the host's broker."""

from __future__ import annotations

import os
import re
import shlex
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from luhyaapi.commands import send_command
from luhyaapi.messages import Command
from tests.services import ROOT, RoleProcess, wait_for

pytestmark = [pytest.mark.e2e]

UNIT = ROOT / "deploy" / "systemd" / "educloud-worker.service"
COMMANDS = 20


def exec_start(unit: Path, env: dict[str, str]) -> list[str]:
    """The unit's ExecStart as systemd runs it: continuation lines joined, ``${VAR}`` from ``env``, and the
    installed venv's ``celery`` as this test's interpreter running Celery."""
    text = unit.read_text().replace("\\\n", " ")
    line = next(line for line in text.splitlines() if line.startswith("ExecStart="))
    argv = shlex.split(re.sub(r"\$\{(\w+)\}", lambda match: env[match[1]], line.removeprefix("ExecStart=")))
    assert argv[0] == "/opt/educloud/.venv/bin/celery"
    return [sys.executable, "-m", "celery", *argv[1:]]


def _done(host: RoleProcess) -> int:
    with sqlite3.connect(f"file:{host.dir / 'educloud.sqlite3'}?mode=ro", uri=True, timeout=30) as db:
        try:
            return db.execute("SELECT count(*) FROM nc_commandrecord WHERE done_at IS NOT NULL").fetchone()[0]
        except sqlite3.OperationalError:
            return 0


def test_the_worker_units_command_line_runs_the_nodes_commands_beside_a_host_without_its_own(tmp_path: Path):
    host = RoleProcess(tmp_path, "aio", "clc,walrus,cc,nc", {"cloud": {"heartbeat_seconds": "1"}})
    host.start("--without", "celery-worker").wait_listening()
    env = {"EDUCLOUD_NODE": host.name, "EDUCLOUD_COMMAND_SLOTS": "4"}
    worker: subprocess.Popen | None = None
    try:
        wait_for("the host to list its daemons", lambda: "daemons running:" in host.tail(200), 60)
        daemons = next(line for line in host.tail(200).splitlines() if "daemons running:" in line)
        assert "nc-vm-watch" in daemons and "celery-worker" not in daemons

        url = f"sqlite-broker://{host.dir / 'broker.sqlite3'}"
        key = host.key()
        sent = [send_command(url, host.name, Command(op="status/report", paras={"n": n}), key=key)
                for n in range(COMMANDS)]
        assert _done(host) == 0, "a command ran with no worker"

        worker = host.spawn(exec_start(UNIT, env), "worker.log", env)
        wait_for("the unit's worker to run every command", lambda: _done(host) == COMMANDS, 120)

        inspect = [sys.executable, "-m", "celery", "-A", "educloud", "inspect", "ping", "-d", f"nc@{host.name}",
                   "--timeout", "5"]
        pong = subprocess.run(inspect, cwd=ROOT, env=host.environment(), capture_output=True, text=True, timeout=60,
                              check=False)
        assert f"nc@{host.name}: OK" in pong.stdout and "pong" in pong.stdout, pong.stdout + pong.stderr

        with sqlite3.connect(f"file:{host.dir / 'educloud.sqlite3'}?mode=ro", uri=True) as db:
            recorded = [row[0] for row in db.execute("SELECT msg_id FROM nc_commandrecord")]
        assert sorted(recorded) == sorted(sent)
    finally:
        if worker is not None:
            os.killpg(worker.pid, signal.SIGTERM)
            worker.wait(timeout=60)
        host.stop()
        print(f"----- aio log -----\n{host.tail(30)}\n----- worker log -----\n"
              f"{(host.dir / 'worker.log').read_text()[-3000:] if (host.dir / 'worker.log').exists() else ''}")
