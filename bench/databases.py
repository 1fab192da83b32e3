"""What the benchmarks that run against MariaDB share: running statements on the server of a database URL outside
Django (making and dropping a benchmark's own database)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
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
