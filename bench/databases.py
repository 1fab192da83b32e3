"""What the benchmarks that run against MariaDB share: running statements on the server of a database URL outside
Django (making and dropping a benchmark's own database), and a benchmark's child process on a fresh database."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from urllib.parse import urlsplit


def run_mysql(url: str, *statements: str) -> None:
    """Run ``statements`` on the MariaDB/MySQL server of ``url`` (``mysql://user:password@host:port/...``)."""
    import MySQLdb

    parts = urlsplit(url)
    connection = MySQLdb.connect(host=parts.hostname or "127.0.0.1", port=parts.port or 3306,
                                 user=parts.username or "root", password=parts.password or "")
    try:
        cursor = connection.cursor()
        for statement in statements:
            cursor.execute(statement)
    finally:
        connection.close()


@contextmanager
def scratch_mysql_database(url: str, name: str) -> Iterator[str]:
    """A fresh database ``name`` on the MariaDB/MySQL server of ``url`` (dropped first if a killed run left it),
    dropped again afterwards; yields its URL."""
    run_mysql(url, f"DROP DATABASE IF EXISTS `{name}`", f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
    try:
        yield f"{url.rstrip('/')}/{name}"
    finally:
        run_mysql(url, f"DROP DATABASE IF EXISTS `{name}`")


def database_server_process():
    """The local MariaDB/MySQL server's process (``psutil.Process``, to read its CPU), or None: on MariaDB much of a
    benchmark's database work is that process's CPU, not the client's."""
    import psutil

    for proc in psutil.process_iter(["name"]):
        if proc.info["name"] in ("mariadbd", "mysqld"):
            return proc
    return None


def run_child(script: str, kind: str, mysql_url: str, options: list[str]) -> dict:
    """Run ``script --child URL DATA_DIR *options`` on a fresh database of ``kind`` (sqlite: a file in a temporary
    data dir; mysql: a scratch database on ``mysql_url``'s server) in a process of its own, as Django binds its
    database at start; the JSON object the child printed last."""
    with tempfile.TemporaryDirectory(prefix="educloud-bench-") as data_dir:
        name = f"bench_{os.path.basename(script).removesuffix('.py')}_{os.getpid()}"
        database = (scratch_mysql_database(mysql_url, name) if kind == "mysql"
                    else nullcontext(f"sqlite:///{data_dir}/educloud.sqlite3"))
        with database as url:
            output = subprocess.run([sys.executable, script, "--child", url, data_dir, *options], check=True,
                                    stdout=subprocess.PIPE, text=True).stdout
    return json.loads(output.strip().splitlines()[-1])
