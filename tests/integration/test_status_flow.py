"""The CLC status fold: reports into the cache and, on change, into the database; silence marks servers offline.
Runs on SQLite and (by the test command) on MariaDB with memcached."""

from __future__ import annotations

import pytest
from django.core.cache import cache
from django.db import connection
from django.test.utils import CaptureQueriesContext

from clc.services.registry import register_server
from clc.services.status import StatusFolder, host_key, server_key, task_key
from luhyaapi.messages import HostStatus, NodeStatus, Resources, ServerRegistration, TaskStatus
from luhyadb.models import Host, Server, TaskTransaction

pytestmark = [pytest.mark.database, pytest.mark.django_db(transaction=True)]


class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def heartbeat(name="nc-1", seq=1, role="nc", memory_mb=16384, free_memory_mb=8000, state="online", interval=5.0):
    return NodeStatus(role=role, name=name, ip="10.0.0.2", mac="52:54:00:00:00:01", cluster="c1",
                      api_url="http://10.0.0.2:8000", interval=interval, seq=seq, state=state,
                      capacity=Resources(cpus=8, memory_mb=memory_mb, disk_mb=500000),
                      free=Resources(cpus=4, memory_mb=free_memory_mb, disk_mb=400000))


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def folder(clock):
    cache.clear()
    return StatusFolder(missed_heartbeats=3, db_touch_seconds=60, clock=clock)


def writes(queries) -> list[str]:
    return [q["sql"] for q in queries if q["sql"].split()[0].upper() in ("INSERT", "UPDATE", "DELETE")]


def test_an_unknown_server_is_added_on_its_first_heartbeat_and_cached(folder):
    folder.fold([heartbeat()])
    server = Server.objects.get(role="nc", name="nc-1")
    assert (server.state, server.ip, server.cluster, server.memory_mb, server.free_memory_mb) == (
        "online", "10.0.0.2", "c1", 16384, 8000)
    entry = cache.get(server_key("nc", "nc-1"))
    assert entry["state"] == "online"
    assert entry["seq"] == 1


def test_identical_heartbeats_update_the_cache_but_not_the_database(folder, clock):
    folder.fold([heartbeat(seq=1)])
    clock.now += 5
    with CaptureQueriesContext(connection) as queries:
        folder.fold([heartbeat(seq=2, free_memory_mb=7000)])
    assert writes(queries) == []
    assert cache.get(server_key("nc", "nc-1"))["seq"] == 2


def test_a_changed_capacity_is_written_at_once(folder, clock):
    folder.fold([heartbeat(memory_mb=16384)])
    clock.now += 5
    folder.fold([heartbeat(seq=2, memory_mb=32768)])
    assert Server.objects.get(name="nc-1").memory_mb == 32768


def test_liveness_reaches_the_database_at_most_every_db_touch_seconds(folder, clock):
    folder.fold([heartbeat(seq=1)])
    first = Server.objects.get(name="nc-1").last_seen
    clock.now += 61
    folder.fold([heartbeat(seq=2, free_memory_mb=1234)])
    server = Server.objects.get(name="nc-1")
    assert (server.last_seen - first).total_seconds() == pytest.approx(61, abs=0.01)
    assert server.free_memory_mb == 1234


def test_only_the_newest_report_of_a_batch_counts(folder):
    older, newer = heartbeat(seq=1), heartbeat(seq=2)
    folder.fold([newer, older])
    assert cache.get(server_key("nc", "nc-1"))["seq"] == 2


def test_a_server_is_marked_offline_after_three_missed_heartbeats_and_not_before(folder, clock):
    folder.fold([heartbeat(interval=5)])
    clock.now += 14.9
    assert folder.sweep() == []
    assert Server.objects.get(name="nc-1").state == "online"
    clock.now += 0.2
    assert folder.sweep() == [server_key("nc", "nc-1")]
    assert Server.objects.get(name="nc-1").state == "offline"
    assert cache.get(server_key("nc", "nc-1"))["state"] == "offline"


def test_a_heartbeat_brings_an_offline_server_back_online(folder, clock):
    folder.fold([heartbeat(interval=5)])
    clock.now += 20
    folder.sweep()
    folder.fold([heartbeat(seq=2, interval=5)])
    assert Server.objects.get(name="nc-1").state == "online"
    assert cache.get(server_key("nc", "nc-1"))["state"] == "online"


def test_a_server_that_says_it_stops_is_stopped_not_offline(folder, clock):
    folder.fold([heartbeat(seq=1)])
    folder.fold([heartbeat(seq=2, state="stopping")])
    clock.now += 3600
    assert folder.sweep() == []
    assert Server.objects.get(name="nc-1").state == "stopped"


def test_a_restarted_daemon_still_marks_offline_what_fell_silent_while_it_was_down(folder, clock):
    folder.fold([heartbeat(interval=5)])
    clock.now += 60
    restarted = StatusFolder(missed_heartbeats=3, db_touch_seconds=60, clock=clock)
    assert restarted.sweep() == [server_key("nc", "nc-1")]
    assert Server.objects.get(name="nc-1").state == "offline"


def test_a_server_that_registered_but_never_heartbeats_goes_offline_too(folder, clock):
    folder.fold([heartbeat(name="nc-1", interval=5)])
    register_server(ServerRegistration(role="walrus", name="store", ip="10.0.0.9", cluster="c1",
                                       heartbeat_seconds=5, capacity=Resources(cpus=1, memory_mb=1, disk_mb=1)))
    folder.refresh()
    clock.now = Server.objects.get(name="store").last_seen.timestamp() + 16
    assert server_key("walrus", "store") in folder.sweep()
    assert Server.objects.get(name="store").state == "offline"


def test_task_status_is_cached_and_every_state_change_written_to_the_task_record(folder):
    tid = "img-0000000a:img-0000000b:ins-0000000c"
    folder.fold([TaskStatus(tid=tid, phase="preparing", state="downloading", progress=30, ncip="10.0.0.2")])
    task = TaskTransaction.objects.get(tid=tid)
    assert (task.phase, task.state, task.progress, task.src_image_id, task.instance_id, task.ncip) == (
        "preparing", "downloading", 30, "img-0000000a", "ins-0000000c", "10.0.0.2")
    folder.fold([TaskStatus(tid=tid, phase="preparing", state="done", progress=100, done=True)])
    task.refresh_from_db()
    assert (task.state, task.progress, task.done) == ("done", 100, True)
    assert cache.get(task_key(tid))["progress"] == 100


def test_a_task_status_with_a_malformed_tid_is_cached_but_creates_no_record(folder):
    folder.fold([TaskStatus(tid="not-a-tid", phase="init", state="init")])
    assert not TaskTransaction.objects.exists()
    assert cache.get(task_key("not-a-tid"))["state"] == "init"


def test_a_classroom_pc_is_added_by_its_first_heartbeat_and_goes_offline_when_silent(folder, clock):
    report = HostStatus(name="pc-101", ip="192.168.1.101", mac="52:54:00:00:01:01", cluster="lvd", interval=5, seq=1,
                        memory_mb=8192, disk_mb=250000)
    folder.fold([report])
    assert Host.objects.get(mac="52:54:00:00:01:01").name == "pc-101"
    clock.now += 16
    assert folder.sweep() == [host_key("52:54:00:00:01:01")]
    assert Host.objects.get(mac="52:54:00:00:01:01").state == "offline"


def test_many_servers_in_one_batch_are_all_folded(folder):
    folder.fold([heartbeat(name=f"nc-{n}", seq=1) for n in range(300)])
    assert Server.objects.filter(role="nc").count() == 300
    assert len(cache.get_many([server_key("nc", f"nc-{n}") for n in range(300)])) == 300


def test_a_fold_running_behind_the_queue_does_not_mark_servers_offline_whose_heartbeats_wait_in_it(folder, clock):
    folder.fold([heartbeat(name="nc-1", interval=5), heartbeat(name="nc-2", interval=5)])
    clock.now += 16
    # nc-2's newest heartbeat is folded now but was sent 10 s ago: the queue is 10 s behind, so nc-1's is in it too.
    late = heartbeat(name="nc-2", seq=2, interval=5).model_copy(update={"sent_at": clock.now - 10})
    folder.fold([late])
    assert folder.sweep() == []
    # Once the queue is drained (no fold for a while), silence counts again.
    clock.now += 12
    assert folder.sweep() == [server_key("nc", "nc-1")]


def test_a_restarted_daemon_does_not_rewrite_servers_that_did_not_change(folder, clock):
    folder.fold([heartbeat(name=f"nc-{n}") for n in range(20)])
    restarted = StatusFolder(missed_heartbeats=3, db_touch_seconds=60, clock=clock)
    restarted.refresh()
    clock.now += 5
    with CaptureQueriesContext(connection) as queries:
        restarted.fold([heartbeat(name=f"nc-{n}", seq=2) for n in range(20)])
    assert writes(queries) == []
