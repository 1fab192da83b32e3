"""End to end: CLC, CC and two NCs as separate processes on loopback over RabbitMQ, MariaDB and memcached.

The CC and the NCs enrol with join tokens issued on the CLC host, then register and heartbeat until all are online in
``/clc/api/1.0/status/`` (read by the administrator, logged in); calls signed by a key nobody enrolled, or by an
enrolled host whose role the call is not for, are refused; an image uploaded through walrus's pre-signed URL is
prepared on a node through the cluster cache; a command goes CLC -> CC -> NC and comes back as status; a killed NC
goes offline after three missed heartbeats; after a RabbitMQ restart the daemons reconnect and commands and
heartbeats flow again."""

from __future__ import annotations

import hashlib
import os
import re
import time

import pytest

from luhyaapi.client import RemoteError, RoleClient
from tests.keys import new_key
from tests.rabbitmq import private_broker
from tests.services import ConsoleClient, RoleProcess, memcached, scratch_mariadb_database

pytestmark = [pytest.mark.e2e, pytest.mark.rabbitmq, pytest.mark.broker_restart]

HEARTBEAT = 1.0
# Big enough that the node is caught half way through its download on loopback.
BIG_IMAGE_MB = 256


@pytest.fixture(scope="module")
def broker():
    """A RabbitMQ server of this module's own (the last test restarts it)."""
    with private_broker() as running:
        yield running


@pytest.fixture(scope="module")
def cloud(tmp_path_factory, broker):
    workdir = tmp_path_factory.mktemp("cloud")
    with scratch_mariadb_database("educloud_e2e") as db_url, memcached(private=True) as cache_url:
        common = {"cloud": {"heartbeat_seconds": str(HEARTBEAT), "missed_heartbeats": "3", "db_touch_seconds": "5"},
                  "bus": {"url": broker.url}}
        clc = RoleProcess(workdir, "clc-1", "clc,walrus", common | {"database": {"url": db_url},
                                                            "cache": {"url": cache_url}})
        processes = {"clc-1": clc}
        try:
            clc.start().wait_listening()
            cc = RoleProcess(workdir, "cc-1", "cc", common | {"cloud": common["cloud"] | {"clc_url": clc.url}},
                             join_token=clc.issue_join_token(roles="cc"))
            processes["cc-1"] = cc
            cc.start().wait_listening()
            node_token = clc.issue_join_token(roles="nc", uses=2)
            ncs = [RoleProcess(workdir, f"nc-{n}", "nc", common | {"cloud": common["cloud"] | {"cc_url": cc.url}},
                               join_token=node_token) for n in (1, 2)]
            for nc in ncs:
                processes[nc.name] = nc.start()
            for nc in ncs:
                nc.wait_listening()
            yield processes
        finally:
            for process in processes.values():
                process.stop()
            for process in processes.values():
                print(f"----- {process.name} log -----\n{process.tail(25)}")


@pytest.fixture(scope="module")
def admin(cloud) -> ConsoleClient:
    """The first administrator, logged in to the CLC's console."""
    return ConsoleClient(cloud["clc-1"].url)


def _status(admin) -> dict[str, dict]:
    return {f"{s['role']}:{s['name']}": s for s in admin.get("/clc/api/1.0/status/")["services"]}


def _wait(admin, predicate, what: str, timeout: float = 60) -> dict[str, dict]:
    deadline = time.monotonic() + timeout
    status: dict = {}
    while time.monotonic() < deadline:
        try:
            status = _status(admin)
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


def test_all_roles_register_and_show_online(cloud, admin):
    # Online once registered; the free resources arrive with the first heartbeat after it.
    status = _wait(admin, lambda s: _states(s, *ALL) == ["online"] * len(ALL)
                   and s["nc:nc-1"]["free_memory_mb"] > 0, "every role online and nc-1's first heartbeat")
    nc1 = status["nc:nc-1"]
    assert nc1["cluster"] == "cluster1"
    assert nc1["memory_mb"] > 0 and nc1["free_memory_mb"] > 0
    assert nc1["age_seconds"] < 3 * HEARTBEAT + 2
    assert nc1["api_url"] == cloud["nc-1"].url
    keys = {key["name"]: key for key in admin.get("/clc/api/1.0/hostkeys/?state=active")["results"]}
    assert {name: keys[name]["fingerprint"] for name in ("cc-1", "nc-1", "nc-2")} == {
        name: cloud[name].key().fingerprint for name in ("cc-1", "nc-1", "nc-2")}, "each enrolled with its own key"


def test_the_cloud_refuses_unsigned_unknown_and_wrong_role_calls(cloud, admin):
    import requests

    clc, cc = cloud["clc-1"].url, cloud["cc-1"].url
    assert requests.get(clc + "/clc/api/1.0/status/", timeout=5).status_code == 401
    # A key nobody enrolled: its host is unknown to every role. The same under an enrolled host's name: the
    # signature is not that host's.
    for intruder, refusal in ((new_key("intruder"), 401), (new_key("nc-1"), 403)):
        with pytest.raises(RemoteError) as error:
            RoleClient(clc, intruder).get("/clc/api/1.0/status/")
        assert error.value.status == refusal, intruder.name
        with pytest.raises(RemoteError) as error:
            RoleClient(cc, intruder).post("/cc/api/1.0/nodes/nc-1/commands/", {"op": "status/report"})
        assert error.value.status == refusal, intruder.name
    # An enrolled node, signing with its own key, calling what is for people (the CLC's status) or for the CLC
    # (commands to nodes).
    node = cloud["nc-1"].key()
    with pytest.raises(RemoteError) as error:
        RoleClient(clc, node).get("/clc/api/1.0/status/")
    assert (error.value.status, error.value.detail) == (403, "this call is not for signed hosts")
    with pytest.raises(RemoteError) as error:
        RoleClient(cc, node).post("/cc/api/1.0/nodes/nc-1/commands/", {"op": "status/report"})
    assert (error.value.status, error.value.detail) == (403, "this call is for clc hosts only")
    # A person's session does not stand in for the CSRF token on a change.
    session = admin._logged_in()
    refused = session.post(clc + "/clc/api/1.0/nodes/nc-1/commands/", json={"op": "status/report"}, timeout=10)
    assert refused.status_code == 403 and "CSRF" in refused.text


def _command_round_trip(admin, node: str) -> None:
    answer = admin.post(f"/clc/api/1.0/nodes/{node}/commands/", {"op": "status/report"})
    _wait(admin, lambda s: s.get(f"nc:{node}", {}).get("last_command") == answer["msg_id"],
          f"{node} to run command {answer['msg_id']}", timeout=30)


def test_a_command_goes_down_to_a_node_and_its_effect_comes_back_up(cloud, admin):
    _wait(admin, lambda s: _states(s, *ALL) == ["online"] * len(ALL), "every role online")
    _command_round_trip(admin, "nc-1")
    _command_round_trip(admin, "nc-2")


def test_the_workers_page_finds_each_nodes_celery_worker_by_inspection_on_the_clusters_rabbitmq(cloud, admin):
    _wait(admin, lambda s: _states(s, *ALL) == ["online"] * len(ALL), "every role online")
    page = admin.page("/clc/workers/")
    for node in ("nc-1", "nc-2"):
        row = re.search(rf'<tr data-worker="nc@{node}">(.*?)</tr>', page, re.S)
        assert row is not None, page[-3000:]
        assert 'class="state online"' in row[1] and "<td>32</td>" in row[1], row[1]


def _task_ended(admin, tid: str, timeout: float) -> dict:
    """The CLC's record of task ``tid`` once it is done or failed (or as it stands after ``timeout`` s)."""
    deadline = time.monotonic() + timeout
    status = {}
    while time.monotonic() < deadline:
        status = admin.get(f"/clc/api/1.0/tasks/{tid}/")
        if status["done"] or status["failed"]:
            break
        time.sleep(0.2)
    return status


def test_an_image_uploaded_to_walrus_is_prepared_on_a_node_through_the_cluster_cache(cloud, admin, tmp_path):
    _wait(admin, lambda s: _states(s, "walrus:clc-1", "nc:nc-1") == ["online"] * 2, "walrus and nc-1 online")
    disk = tmp_path / "disk.img"
    disk.write_bytes(os.urandom(9 * 1024 * 1024 + 7))
    image = stored = admin.upload_image(disk, "E2E desktop")
    assert stored["current_version"] == 1
    assert stored["versions"][0]["sha256"] == hashlib.sha256(disk.read_bytes()).hexdigest()

    task = admin.post(f"/clc/api/1.0/images/{image['image_id']}/prepare/", {"node": "nc-1"})
    status = _task_ended(admin, task["tid"], 60)
    assert (status["phase"], status["state"], status["progress"], status["done"]) == ("preparing", "done", 100, True)
    cached = cloud["nc-1"].dir / "nc" / "images" / image["image_id"] / "1.img"
    assert hashlib.sha256(cached.read_bytes()).hexdigest() == stored["versions"][0]["sha256"]
    assert (cloud["cc-1"].dir / "cc" / "images" / image["image_id"] / "1.img").exists()


def test_a_node_killed_in_the_middle_of_an_image_prepare_takes_the_task_again_and_finishes_it(cloud, admin,
                                                                                               tmp_path):
    """kill -9 of the node while its worker runs ``image/prepare`` (its partial file half written): the task was not
    acknowledged, so RabbitMQ gives it back; the restarted node's worker takes it, resumes the download from the
    partial file and finishes; the CLC's task ends done, never stuck, and the CC saw it done on nc-1's worker."""
    _wait(admin, lambda s: _states(s, "walrus:clc-1", "nc:nc-1") == ["online"] * 2, "walrus and nc-1 online")
    disk = tmp_path / "big.img"
    with disk.open("wb") as out:
        for _ in range(BIG_IMAGE_MB // 16):
            out.write(os.urandom(16 * 1024 * 1024))
    image = admin.upload_image(disk, "E2E big desktop")
    node = cloud["nc-1"]
    partial = node.dir / "nc" / "images" / image["image_id"] / "1.img.part"

    task = admin.post(f"/clc/api/1.0/images/{image['image_id']}/prepare/", {"node": "nc-1"})
    size_at_kill = 0
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not size_at_kill:
        size = partial.stat().st_size if partial.exists() else 0
        if 8 * 1024 * 1024 <= size < disk.stat().st_size - 32 * 1024 * 1024:
            node.kill()
            size_at_kill = partial.stat().st_size
        time.sleep(0.002)
    assert size_at_kill, "the node's download was never caught half way"
    assert not (partial.parent / "1.img").exists()

    node.start().wait_listening()
    status = _task_ended(admin, task["tid"], 180)
    assert (status["phase"], status["state"], status["done"]) == ("preparing", "done", True), status
    cached = partial.parent / "1.img"
    assert hashlib.sha256(cached.read_bytes()).hexdigest() == image["versions"][0]["sha256"]
    commands = RoleClient(cloud["cc-1"].url, cloud["clc-1"].key()).get(
        f"/cc/api/1.0/tasks/?tid={task['tid']}")["results"]
    assert [(c["op"], c["state"], c["worker"]) for c in commands] == [("image/prepare", "done", "nc@nc-1")]
    print(f"killed nc-1 with {size_at_kill / 2**20:.1f} of {disk.stat().st_size >> 20} MiB downloaded; the task came "
          f"again after the restart and finished")


def test_a_killed_node_goes_offline_and_the_others_stay_online(cloud, admin):
    _wait(admin, lambda s: _states(s, *ALL) == ["online"] * len(ALL), "every role online")
    cloud["nc-2"].kill()
    killed_at = time.monotonic()
    status = _wait(admin, lambda s: _states(s, "nc:nc-2") == ["offline"], "nc-2 to go offline", timeout=30)
    assert time.monotonic() - killed_at >= 2 * HEARTBEAT
    assert _states(status, "clc:clc-1", "walrus:clc-1", "cc:cc-1", "nc:nc-1") == ["online"] * 4


def test_daemons_reconnect_after_a_rabbitmq_restart_and_nothing_after_it_is_lost(cloud, admin, broker):
    before = _wait(admin, lambda s: _states(s, "nc:nc-1") == ["online"], "nc-1 online")["nc:nc-1"]
    broker.stop()
    try:
        time.sleep(2)
    finally:
        broker.start()
    # Heartbeats published after the restart reach the CLC again...
    _wait(admin, lambda s: s["nc:nc-1"]["state"] == "online" and s["nc:nc-1"]["age_seconds"] < 2 * HEARTBEAT
          and s["nc:nc-1"]["last_seen"] > before["last_seen"] + 2, "fresh heartbeats from nc-1", timeout=60)
    # A restart slower than three heartbeats marks the CC offline too, until its own next heartbeat is folded.
    _wait(admin, lambda s: s["cc:cc-1"]["state"] == "online", "cc-1 online again", timeout=60)
    # ...and so do commands, down through the CC's bus and back up as status.
    _command_round_trip(admin, "nc-1")
