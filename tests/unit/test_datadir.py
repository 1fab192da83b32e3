"""The host's data dir and SQLite database are private to the account eduCloud runs as: the dir 0700 (0711 where
the CC's dnsmasq must pass through it), the database and its -wal and -shm files 0600, whether eduCloud creates
them or finds them world-readable at start."""

from __future__ import annotations

import os
import sqlite3
import stat
from pathlib import Path

import pytest
from django.apps import apps

from luhyaapi.config import load_config
from luhyaapi.datadir import secure_data_dir


def _config(data_dir: Path, **environment: str):
    return load_config({"EDUCLOUD_HOST_NAME": "clc-1", "EDUCLOUD_ROLES": "clc,walrus",
                        "EDUCLOUD_HOST_DATA_DIR": str(data_dir),
                        "EDUCLOUD_HOST_PEER_CONFIG_DIR": "/nonexistent", **environment})


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture(autouse=True)
def _usual_umask():
    """The umask most accounts have (022), under which files are made world-readable unless said otherwise."""
    previous = os.umask(0o022)
    yield
    os.umask(previous)


def _open_like_django(database: Path) -> sqlite3.Connection:
    """Open the database as the host does (WAL journal), so that SQLite makes its -wal and -shm files."""
    connection = sqlite3.connect(database)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("CREATE TABLE IF NOT EXISTS t (x)")
    connection.execute("INSERT INTO t VALUES (1)")
    connection.commit()
    return connection


def test_a_new_data_dir_and_database_are_private_and_so_are_the_files_sqlite_adds(tmp_path):
    data_dir = tmp_path / "var" / "educloud"
    secure_data_dir(_config(data_dir))
    database = data_dir / "educloud.sqlite3"
    assert _mode(data_dir) == 0o700
    assert _mode(database) == 0o600
    connection = _open_like_django(database)
    try:
        for name in ("educloud.sqlite3", "educloud.sqlite3-wal", "educloud.sqlite3-shm"):
            assert _mode(data_dir / name) == 0o600, name
    finally:
        connection.close()


def test_world_readable_ones_found_at_start_are_tightened(tmp_path):
    data_dir = tmp_path / "educloud"
    data_dir.mkdir(mode=0o755)
    connection = _open_like_django(data_dir / "educloud.sqlite3")  # made by an older version: 0644 under umask 022
    files = [data_dir / name for name in ("educloud.sqlite3", "educloud.sqlite3-wal", "educloud.sqlite3-shm")]
    try:
        assert [_mode(path) for path in files] == [0o644] * 3
        secure_data_dir(_config(data_dir))
        assert _mode(data_dir) == 0o700
        assert [_mode(path) for path in files] == [0o600] * 3
        assert connection.execute("SELECT x FROM t").fetchall() == [(1,)]  # the open database is unharmed
    finally:
        connection.close()


def test_a_cc_that_runs_the_cluster_dhcp_leaves_its_data_dir_passable_but_not_listable(tmp_path):
    """dnsmasq drops root and must still reach its reservations under ``<data_dir>/cc/dhcp``."""
    data_dir = tmp_path / "educloud"
    secure_data_dir(_config(data_dir, EDUCLOUD_ROLES="cc", EDUCLOUD_CLOUD_CLC_URL="http://10.0.0.1:8000"))
    assert _mode(data_dir) == 0o711
    assert _mode(data_dir / "educloud.sqlite3") == 0o600
    secure_data_dir(_config(data_dir, EDUCLOUD_ROLES="cc", EDUCLOUD_CLOUD_CLC_URL="http://10.0.0.1:8000",
                            EDUCLOUD_CC_MANAGE_NETWORK="false"))
    assert _mode(data_dir) == 0o700


def test_with_mariadb_only_the_data_dir_is_made_and_no_sqlite_file(tmp_path):
    data_dir = tmp_path / "educloud"
    secure_data_dir(_config(data_dir, EDUCLOUD_DATABASE_URL="mysql://root@127.0.0.1:3306/educloud"))
    assert _mode(data_dir) == 0o700
    assert list(data_dir.iterdir()) == []


def test_every_start_of_the_host_does_it(tmp_path, settings):
    """``luhyadb``'s app start runs before any process of the host (web, daemons, commands) opens the database."""
    data_dir = tmp_path / "educloud"
    data_dir.mkdir(mode=0o755)
    settings.EDUCLOUD = _config(data_dir)
    apps.get_app_config("luhyadb").ready()
    assert _mode(data_dir) == 0o700
    assert _mode(data_dir / "educloud.sqlite3") == 0o600
