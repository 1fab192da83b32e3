"""What the benchmarks that run against MariaDB share: running statements on the server of a database URL outside
Django (making and dropping a benchmark's own database)."""

from __future__ import annotations

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
