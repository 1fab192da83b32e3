"""The SC's daemons: its heartbeat reports the volume store's capacity and free space as its disk, and its
``sc-targets`` loop brings tgtd and every export back by itself after tgtd was killed."""

from __future__ import annotations

import os
import signal
import threading
import time
from dataclasses import replace

import pytest
from django.conf import settings

from daemons.heartbeat import HeartbeatPublisher
from daemons.roles import _disk_of
from luhyaapi.bus import InProcessBus
from sc.constants import MiB
from sc.services.store import create_volume
from sc.services.targets import export_volume, watch_targets
from sc.tests.conftest import through_iscsi

pytestmark = [pytest.mark.usefixtures("store")]


@pytest.mark.database
@pytest.mark.django_db
def test_the_sc_heartbeat_reports_the_volume_stores_capacity_and_free_space_as_its_disk():
    settings.EDUCLOUD = replace(settings.EDUCLOUD, sc_capacity_bytes=100 * MiB)
    create_volume(size=40 * MiB, volume_id="vol-0000000a")
    publisher = HeartbeatPublisher("sc", settings.EDUCLOUD, InProcessBus(), disk=_disk_of("sc"))
    status = publisher.status()
    assert (status.capacity.disk_mb, status.free.disk_mb) == (100, 60)
    assert publisher.registration().capacity.disk_mb == 100
    assert status.capacity.memory_mb > 0
    assert _disk_of("nc") is None


@pytest.mark.django_db(transaction=True)
def test_the_sc_targets_daemon_exports_again_after_tgtd_is_killed(tgtd, tmp_path):
    create_volume(size=4 * MiB, volume_id="vol-0000000a")
    target = export_volume("vol-0000000a", "nc-1")
    through_iscsi(target, tmp_path, "write -P 0x3c 0 1M")
    stop = threading.Event()
    thread = threading.Thread(target=watch_targets, args=(stop, 0.2), daemon=True)
    thread.start()
    try:
        first = tgtd.pid()
        os.kill(first, signal.SIGKILL)
        deadline = time.monotonic() + 15
        # Until the new tgtd serves the whole target again: the ACL is the last thing made.
        while tgtd.pid() in (None, first) or [state.acl for state in tgtd.targets().values()] != [[target.initiator]]:
            assert time.monotonic() < deadline, "tgtd was not started again with its target"
            time.sleep(0.1)
        through_iscsi(target, tmp_path, "read -P 0x3c 0 1M")
    finally:
        stop.set()
        thread.join(timeout=10)
