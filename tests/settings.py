"""Settings of the test suite: its own configuration file (never the machine's /etc/educloud) and a scratch data
dir; the test command overrides the database and cache through the environment for the MariaDB run."""

import atexit
import os
import shutil
import tempfile
from pathlib import Path

_TESTS = Path(__file__).resolve().parent
os.environ["EDUCLOUD_CONF"] = str(_TESTS / "conf" / "test.conf")
os.environ.setdefault("EDUCLOUD_HOST_DATA_DIR", tempfile.mkdtemp(prefix="educloud-test-"))
os.environ.setdefault("EDUCLOUD_HOST_PEER_CONFIG_DIR", str(_TESTS / "conf" / "no-peers"))

from educloud.settings import *  # noqa: E402,F403

STATIC_ROOT.mkdir(parents=True, exist_ok=True)  # noqa: F405

if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":  # noqa: F405
    # A file in WAL mode, as every host's SQLite is (luhyaapi.config.django_database), not Django's default shared
    # in-memory database: that one refuses a thread's write at once ("table is locked") while another thread reads,
    # which no host ever sees, so tests of threads (the kiosk, the node's commands) failed on what is not a bug.
    _DB_DIR = tempfile.mkdtemp(prefix="educloud-test-db-")
    atexit.register(shutil.rmtree, _DB_DIR, ignore_errors=True)
    DATABASES["default"]["TEST"] = {"NAME": str(Path(_DB_DIR) / "test.sqlite3")}  # noqa: F405
