"""The host's data dir and SQLite database, kept private to the account eduCloud runs as (like its config file)."""

from __future__ import annotations

import os
from pathlib import Path

from luhyaapi.config import Config, ConfigError, django_database, env_name

DATA_DIR_MODE = 0o700
# A CC that runs its cluster's DHCP: dnsmasq drops root and must still pass through the data dir to its reservations
# (cc/network/dnsmasq.py), so others may enter it but still not list it; the files that matter are 0600 anyway.
DATA_DIR_MODE_FOR_DHCP = 0o711
DATABASE_MODE = 0o600
# SQLite's companions of a database in WAL mode; it makes them with the database file's own mode.
SQLITE_COMPANIONS = ("-wal", "-shm", "-journal")


def data_dir_mode(config: Config) -> int:
    """The mode of this host's data dir: 0700, or 0711 on a CC that manages its cluster's network (dnsmasq)."""
    return DATA_DIR_MODE_FOR_DHCP if config.has_role("cc") and config.manage_network else DATA_DIR_MODE


def sqlite_file(config: Config) -> Path | None:
    """The SQLite database file of this host, or None when its database is not SQLite."""
    database = django_database(config.database_url)
    return Path(database["NAME"]) if database["ENGINE"].endswith("sqlite3") else None


def secure_data_dir(config: Config) -> None:
    """Make the data dir (with its parents) if missing and give it ``data_dir_mode``; make the SQLite database file
    empty and 0600 before SQLite would make it world-readable, so that its -wal and -shm files, which SQLite makes
    with the database's mode, are 0600 too; and set 0600 on a database and companions found with another mode.

    Raises ``ConfigError`` naming ``host.data_dir`` when a mode cannot be set (a dir or file of another account)."""
    mode = data_dir_mode(config)
    try:
        config.data_dir.mkdir(mode=mode, parents=True, exist_ok=True)
        _set_mode(config.data_dir, mode)
        database = sqlite_file(config)
        if database is None or not database.parent.is_dir():
            return  # a database elsewhere whose directory is missing: SQLite's own error will name it
        # O_EXCL: never touch a database another process made meanwhile; 0600 whatever the umask takes away.
        try:
            os.close(os.open(database, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, DATABASE_MODE))
        except FileExistsError:
            pass
        for path in (database, *(database.with_name(database.name + suffix) for suffix in SQLITE_COMPANIONS)):
            if path.exists():
                _set_mode(path, DATABASE_MODE)
    except OSError as exc:
        raise ConfigError(f"setting host.data_dir ({env_name('host', 'data_dir')}): cannot keep {exc.filename} "
                          f"private to this account: {exc.strerror}; it must belong to the account eduCloud runs "
                          f"as") from None


def _set_mode(path: Path, mode: int) -> None:
    if path.stat().st_mode & 0o777 != mode:
        path.chmod(mode)
