"""What the benchmarks that run against MariaDB share: running statements on the server of a database URL outside
Django (making and dropping a benchmark's own database), and a benchmark's child process on a fresh database."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
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


def run_child(script: str, kind: str, mysql_url: str, options: dict) -> dict:
    """Run ``script``'s child (``serve_child``) with ``options`` on a fresh database of ``kind`` (sqlite: a file in
    a temporary data dir; mysql: a scratch database on ``mysql_url``'s server) in a process of its own, as Django
    binds its database at start; the JSON object the child printed last."""
    with tempfile.TemporaryDirectory(prefix="educloud-bench-") as data_dir:
        name = f"bench_{os.path.basename(script).removesuffix('.py')}_{os.getpid()}"
        database = (scratch_mysql_database(mysql_url, name) if kind == "mysql"
                    else nullcontext(f"sqlite:///{data_dir}/educloud.sqlite3"))
        with database as url:
            output = subprocess.run([sys.executable, script, "--child", url, data_dir, json.dumps(options)],
                                    check=True, stdout=subprocess.PIPE, text=True).stdout
    return json.loads(output.strip().splitlines()[-1])


def django_child(database_url: str, data_dir: str) -> None:
    """This child of ``run_child`` as a watch host on ``database_url``, its data in ``data_dir``: Django set up and
    the database migrated."""
    os.environ.update({"EDUCLOUD_HOST_NAME": "bench-watch", "EDUCLOUD_ROLES": "watch",
                       "EDUCLOUD_HOST_DATA_DIR": data_dir, "EDUCLOUD_DATABASE_URL": database_url,
                       "EDUCLOUD_HOST_PEER_CONFIG_DIR": "/nonexistent", "DJANGO_SETTINGS_MODULE": "educloud.settings"})
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def serve_child(child: Callable[..., dict]) -> bool:
    """Whether this process is a child ``run_child`` started; if so, run ``child(url, data_dir, **options)`` and
    print its result as JSON."""
    if len(sys.argv) != 5 or sys.argv[1] != "--child":
        return False
    print(json.dumps(child(sys.argv[2], sys.argv[3], **json.loads(sys.argv[4]))))
    return True


def per_database_parser(doc: str) -> argparse.ArgumentParser:
    """The options of a benchmark that runs a child per database (``run_each``): ``--database``, ``--mysql-url``,
    ``--instances`` (default 10,000) and ``--json``."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("--database", choices=("sqlite", "mysql", "both"), default="both")
    parser.add_argument("--mysql-url", default="mysql://root@127.0.0.1:3306")
    parser.add_argument("--instances", type=int, default=10_000)
    parser.add_argument("--json", help="also write the results to this file")
    return parser


def run_each(script: str, args: argparse.Namespace, options: dict, report: Callable[[dict], None]) -> None:
    """``run_child`` of ``script`` with ``options`` on each database ``args.database`` names, then ``report`` of
    each result, and the results as JSON to ``args.json`` if given."""
    kinds = ("sqlite", "mysql") if args.database == "both" else (args.database,)
    results = [run_child(script, kind, args.mysql_url, options) for kind in kinds]
    for result in results:
        report(result)
    if args.json:
        with open(args.json, "w") as out:
            json.dump(results, out, indent=2)
