"""End to end: CLC, CC and two NCs as separate processes on loopback over RabbitMQ, MariaDB and memcached.

They register and heartbeat until all are online in ``/clc/api/1.0/status/``; a command goes CLC -> CC -> NC and
comes back as status; a killed NC goes offline after three missed heartbeats; after a RabbitMQ restart the daemons
reconnect and commands and heartbeats flow again."""

from __future__ import annotations

import hashlib
import os
import time

import pytest

from luhyaapi.client import RemoteError, RoleClient
from luhyaapi.transfer import upload_file
from tests.rabbitmq import private_broker
from tests.services import RoleProcess, memcached, scratch_mariadb_database

pytestmark = [pytest.mark.e2e, pytest.mark.rabbitmq, pytest.mark.broker_restart]

KEY = "e2e-cloud-key-0123456789"
HEARTBEAT = 1.0


@pytest.fixture(scope="module")
def broker():
    """A RabbitMQ server of this module's own (the last test restarts it)."""
    with private_broker() as running:
        yield running


@pytest.fixture(scope="module")
def cloud(tmp_path_factory, broker):
    workdir = tmp_path_factory.mktemp("cloud")
    with scratch_mariadb_database("educloud_e2e") as db_url, memcached(private=True) as cache_url:
        common = {"cloud": {"key": KEY, "heartbeat_seconds": str(HEARTBEAT), "missed_heartbeats": "3",
                            "db_touch_seconds": "5"},
                  "bus": {"url": broker.url}}
        clc = RoleProcess(workdir, "clc-1", "clc,walrus", common | {"database": {"url": db_url},
                                                            "cache": {"url": cache_url}})
        clc.start().wait_listening()
        cc = RoleProcess(workdir, "cc-1", "cc", common | {"cloud": common["cloud"] | {"clc_url": clc.url}})
        cc.start().wait_listening()
        ncs = [RoleProcess(workdir, f"nc-{n}", "nc", common | {"cloud": common["cloud"] | {"cc_url": cc.url}})
               for n in (1, 2)]
        for nc in ncs:
            nc.start()
        processes = {"clc-1": clc, "cc-1": cc, "nc-1": ncs[0], "nc-2": ncs[1]}
        try:
            for nc in ncs:
                nc.wait_listening()
            yield processes
        finally:
            for process in processes.values():
                process.stop()
            for process in processes.values():
                print(f"----- {process.name} log -----\n{process.tail(25)}")


def _client(cloud) -> RoleClient:
    return RoleClient(cloud["clc-1"].url, KEY, sender="e2e-test")


def _status(cloud) -> dict[str, dict]:
    return {f"{s['role']}:{s['name']}": s for s in _client(cloud).get("/clc/api/1.0/status/")["services"]}


def _wait(cloud, predicate, what: str, timeout: float = 60) -> dict[str, dict]:
    deadline = time.monotonic() + timeout
    status: dict = {}
    while time.monotonic() < deadline:
        try:
            status = _status(cloud)
        except RemoteError:
            status = {}
        if predicate(status):
            return status
        time.sleep(0.25)
    pytest.fail(f"timed out waiting for {what}; last status: "
                f"{ {key: (s['state'], s['age_seconds']) for key, s in status.items()} }")


def _states(status, *keys):
    return [status.get(key, {}).get("state") for key in keys]


ALL = ("clc:clc-1", "walrus:clc-1", "cc:cc-1", "nc:nc-1", "nc:nc-2")


def test_all_roles_register_and_show_online(cloud):
    # Online once registered; the free resources arrive with the first heartbeat after it.
    status = _wait(cloud, lambda s: _states(s, *ALL) == ["online"] * len(ALL)
                   and s["nc:nc-1"]["free_memory_mb"] > 0, "every role online and nc-1's first heartbeat")
    nc1 = status["nc:nc-1"]
    assert nc1["cluster"] == "cluster1"
    assert nc1["memory_mb"] > 0 and nc1["free_memory_mb"] > 0
    assert nc1["age_seconds"] < 3 * HEARTBEAT + 2
    assert nc1["api_url"] == cloud["nc-1"].url


def test_the_cloud_refuses_unsigned_and_wrongly_signed_calls(cloud):
    import requests

    assert requests.get(cloud["clc-1"].url + "/clc/api/1.0/status/", timeout=5).status_code == 401
    with pytest.raises(RemoteError) as error:
        RoleClient(cloud["clc-1"].url, "some-other-cloud-key-000", sender="intruder").get("/clc/api/1.0/status/")
    assert error.value.status == 403
    with pytest.raises(RemoteError) as error:
        RoleClient(cloud["cc-1"].url, "some-other-cloud-key-000", sender="intruder").post(
            "/cc/api/1.0/nodes/nc-1/commands/", {"op": "status/report"})
    assert error.value.status == 403


def _command_round_trip(cloud, node: str) -> None:
    answer = _client(cloud).post(f"/clc/api/1.0/nodes/{node}/commands/", {"op": "status/report"})
    _wait(cloud, lambda s: s.get(f"nc:{node}", {}).get("last_command") == answer["msg_id"],
          f"{node} to run command {answer['msg_id']}", timeout=30)


def test_a_command_goes_down_to_a_node_and_its_effect_comes_back_up(cloud):
    _wait(cloud, lambda s: _states(s, *ALL) == ["online"] * len(ALL), "every role online")
    _command_round_trip(cloud, "nc-1")
    _command_round_trip(cloud, "nc-2")


def test_an_image_uploaded_to_walrus_is_prepared_on_a_node_through_the_cluster_cache(cloud, tmp_path):
    _wait(cloud, lambda s: _states(s, "walrus:clc-1", "nc:nc-1") == ["online"] * 2, "walrus and nc-1 online")
    client = _client(cloud)
    disk = tmp_path / "disk.img"
    disk.write_bytes(os.urandom(9 * 1024 * 1024 + 7))
    image = client.post("/clc/api/1.0/images/", {"name": "E2E desktop", "os_type": "linux", "arch": 64,
                                                 "usage": "desktop", "owner_group": "edu"})
    upload = client.post(f"/clc/api/1.0/images/{image['image_id']}/uploads/", {"size": disk.stat().st_size})
    upload_file(cloud["clc-1"].url, KEY, "e2e-test", disk, image["image_id"], upload_id=upload["upload_id"])
    stored = client.post(f"/clc/api/1.0/images/{image['image_id']}/uploads/{upload['upload_id']}/complete/", {})
    assert stored["current_version"] == 1
    assert stored["versions"][0]["sha256"] == hashlib.sha256(disk.read_bytes()).hexdigest()

    task = client.post(f"/clc/api/1.0/images/{image['image_id']}/prepare/", {"node": "nc-1"})
    deadline = time.monotonic() + 60
    status = {}
    while time.monotonic() < deadline:
        status = client.get(f"/clc/api/1.0/tasks/{task['tid']}/")
        if status["done"] or status["failed"]:
            break
        time.sleep(0.2)
    assert (status["phase"], status["state"], status["progress"], status["done"]) == ("preparing", "done", 100, True)
    cached = cloud["nc-1"].dir / "nc" / "images" / image["image_id"] / "1.img"
    assert hashlib.sha256(cached.read_bytes()).hexdigest() == stored["versions"][0]["sha256"]
    assert (cloud["cc-1"].dir / "cc" / "images" / image["image_id"] / "1.img").exists()


def test_a_killed_node_goes_offline_and_the_others_stay_online(cloud):
    _wait(cloud, lambda s: _states(s, *ALL) == ["online"] * len(ALL), "every role online")
    cloud["nc-2"].kill()
    killed_at = time.monotonic()
    status = _wait(cloud, lambda s: _states(s, "nc:nc-2") == ["offline"], "nc-2 to go offline", timeout=30)
    assert time.monotonic() - killed_at >= 2 * HEARTBEAT
    assert _states(status, "clc:clc-1", "walrus:clc-1", "cc:cc-1", "nc:nc-1") == ["online"] * 4


def test_daemons_reconnect_after_a_rabbitmq_restart_and_nothing_after_it_is_lost(cloud, broker):
    before = _wait(cloud, lambda s: _states(s, "nc:nc-1") == ["online"], "nc-1 online")["nc:nc-1"]
    broker.stop()
    try:
        time.sleep(2)
    finally:
        broker.start()
    # Heartbeats published after the restart reach the CLC again...
    _wait(cloud, lambda s: s["nc:nc-1"]["state"] == "online" and s["nc:nc-1"]["age_seconds"] < 2 * HEARTBEAT
          and s["nc:nc-1"]["last_seen"] > before["last_seen"] + 2, "fresh heartbeats from nc-1", timeout=60)
    # A restart slower than three heartbeats marks the CC offline too, until its own next heartbeat is folded.
    _wait(cloud, lambda s: s["cc:cc-1"]["state"] == "online", "cc-1 online again", timeout=60)
    # ...and so do commands, down through the CC's bus and back up as status.
    _command_round_trip(cloud, "nc-1")
