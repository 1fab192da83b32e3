"""A kill -9 of the all-in-one host loses no command: what its node's worker had fetched but not finished, what waited
in its queue, and what was queued while it was down all run once after the restart. The host runs on the embedded
defaults (SQLite, the ``sqlite-broker://`` transport in its data directory), as ``deploy/start-allinone.sh`` starts
it; the commands are sealed by the host's own key, as its CC seals them."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from luhyaapi.commands import send_command
from luhyaapi.config import celery_broker_url
from luhyaapi.messages import Command
from tests.services import RoleProcess, wait_for

pytestmark = [pytest.mark.e2e]

BEFORE_KILL = 300
WHILE_DOWN = 50


def _done(host: RoleProcess) -> int:
    """How many commands the host's node has recorded done, read from its database file as it runs."""
    with sqlite3.connect(f"file:{host.dir / 'educloud.sqlite3'}?mode=ro", uri=True, timeout=30) as db:
        try:
            return db.execute("SELECT count(*) FROM nc_commandrecord WHERE done_at IS NOT NULL").fetchone()[0]
        except sqlite3.OperationalError:  # the host has not made its tables yet
            return 0


def _queue(host: RoleProcess, count: int) -> list[str]:
    url = f"sqlite-broker://{host.dir / 'broker.sqlite3'}"
    assert url == celery_broker_url(_config_of(host)), "the test queues where the host's worker consumes"
    key = host.key()
    return [send_command(url, host.name, Command(op="status/report", paras={"n": n}), key=key)
            for n in range(count)]


def _config_of(host: RoleProcess):
    from luhyaapi.config import load_config

    return load_config({"EDUCLOUD_CONF": str(host.conf)})


def test_a_kill_9_of_the_all_in_one_loses_no_queued_command(tmp_path: Path):
    host = RoleProcess(tmp_path, "aio", "clc,walrus,cc,nc", {"cloud": {"heartbeat_seconds": "1"}})
    host.start().wait_listening()
    try:
        sent = _queue(host, 1)
        wait_for("the node's worker to run a first command", lambda: _done(host) == 1, 60)
        sent += _queue(host, BEFORE_KILL)
        wait_for("the worker to start on them", lambda: _done(host) > 1, 60, every=0.01)
        host.kill()
        done_at_kill = _done(host)
        assert done_at_kill < len(sent), "the host finished every command before the kill: nothing was tested"

        sent += _queue(host, WHILE_DOWN)  # the host is down: they wait in its broker file
        time.sleep(1)
        assert _done(host) == done_at_kill

        host.start().wait_listening()
        wait_for("every command to be run after the restart", lambda: _done(host) == len(sent), 180)
        time.sleep(2)
        assert _done(host) == len(sent), "no command ran twice"
        with sqlite3.connect(f"file:{host.dir / 'educloud.sqlite3'}?mode=ro", uri=True) as db:
            recorded = {row[0] for row in db.execute("SELECT msg_id FROM nc_commandrecord")}
        assert set(sent) <= recorded
        print(f"{done_at_kill - 1} of {BEFORE_KILL} done at the kill, {WHILE_DOWN} queued while down; all ran once")
    finally:
        host.stop()
        print(f"----- aio log -----\n{host.tail(40)}")
