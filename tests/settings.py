"""Settings of the test suite: its own configuration file (never the machine's /etc/educloud) and a scratch data
dir; the test command overrides the database and cache through the environment for the MariaDB run."""

import os
import tempfile
from pathlib import Path

_TESTS = Path(__file__).resolve().parent
os.environ["EDUCLOUD_CONF"] = str(_TESTS / "conf" / "test.conf")
os.environ.setdefault("EDUCLOUD_HOST_DATA_DIR", tempfile.mkdtemp(prefix="educloud-test-"))
os.environ.setdefault("EDUCLOUD_HOST_PEER_CONFIG_DIR", str(_TESTS / "conf" / "no-peers"))

from educloud.settings import *  # noqa: E402,F403

STATIC_ROOT.mkdir(parents=True, exist_ok=True)  # noqa: F405
