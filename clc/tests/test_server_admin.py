"""The administrator's actions on servers from the notes: drain a node controller (its cluster places nothing new on
it), forget a server (record gone, key revoked) once nothing needs it, refresh a node's or PC's status, a cluster's
port and address usage, and the health of database, broker, cache and dnsmasq. The CC is this test server's own
CC API, called by the CLC over signed HTTP as between two hosts."""

from __future__ import annotations

import threading
from dataclasses import replace
from datetime import timedelta

import pytest
from django.conf import settings as django_settings
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.utils import timezone

from cc.models import AddressLease, ClusterInstance, ClusterNode, NetworkSettings
from cc.services.instances import InstanceRefused, run_instance
from cc.tests.nodes import run_request
from clc.services.networks import as_cc_config, save_network
from clc.services.status import StatusFolder, server_key
from clc.tests.machines import MAC, NODE
from clc.tests.test_networks import GOOD
from daemons.heartbeat import HeartbeatPublisher
from luhyaapi.bus import InProcessBus
from luhyaapi.client import RemoteError, RoleClient
from luhyaapi.messages import NodeStatus, Resources
from luhyaapi.queues import CLC_STATUS
from luhyadb.choices import KeyStateChoices
from luhyadb.models import Account, HostCredential, Image, Instance, OwnerGroup, Server, VMType
from tests.commands import broker, purge, queued
from tests.keys import enrolled_key

pytestmark = [pytest.mark.database, pytest.mark.django_db(transaction=True)]

NC1 = NODE | {"name": "nc-1", "ip": "10.0.9.21", "mac": "52:54:00:00:00:21"}


def post(client, path: str, body: dict | None = None):
    return client.post(path, body or {}, content_type="application/json")


@pytest.fixture
def nc1(controller):
    """A server node controller of cluster1, registered with its CC (which announced it to the CLC)."""
    key = enrolled_key("nc-1")
    RoleClient(controller.api_url, key).post("/cc/api/1.0/register/server/", NC1)
    purge("nc-1")
    server = Server.objects.get(role="nc", name="nc-1")
    server.key = key
    return server


def clc_instance(insid: str, node: str, state: str, persistent: bool = False) -> Instance:
    group = OwnerGroup.objects.get_or_create(name="root", path="edu")[0]
    image = Image.objects.get_or_create(image_id="img-0000aaaa", defaults={"name": "Debian", "owner_group": group})[0]
    vm_type = VMType.objects.get_or_create(name="tiny", defaults={"cpus": 1, "memory_mb": 256, "disk_gb": 1})[0]
    return Instance.objects.create(instance_id=insid, name=f"desk {insid[-2:]}", kind="rvd", image=image,
                                   vm_type=vm_type, owner_group=group, cluster="cluster1", node=node, state=state,
                                   persistent=persistent)


# Drain


def test_a_drained_node_keeps_running_but_its_cluster_places_nothing_new_there_and_says_why(staff, nc1):
    response = post(staff, "/clc/api/1.0/servers/nc/nc-1/drain/")
    assert response.status_code == 200, response.content
    assert response.json()["draining"] is True
    assert ClusterNode.objects.get(name="nc-1").draining is True
    with pytest.raises(InstanceRefused) as refused:
        run_instance(broker(), run_request(pinned_node="nc-1"))
    assert "nc-1: draining" in str(refused.value)

    response = post(staff, "/clc/api/1.0/servers/nc/nc-1/drain/", {"draining": False})
    assert response.json()["draining"] is False
    assert run_instance(broker(), run_request(pinned_node="nc-1")).node == "nc-1"


def test_only_node_controllers_are_drained(staff, controller):
    response = post(staff, "/clc/api/1.0/servers/cc/cc-1/drain/")
    assert response.status_code == 409
    assert "only node controllers" in response.json()["detail"]


def test_a_bad_draining_value_is_a_400_naming_it(staff, nc1):
    response = post(staff, "/clc/api/1.0/servers/nc/nc-1/drain/", {"draining": "perhaps"})
    assert response.status_code == 400
    assert "draining" in response.json()
    assert ClusterNode.objects.get(name="nc-1").draining is False


# Forget


def test_a_node_is_not_forgotten_before_it_is_drained(staff, nc1):
    response = staff.delete("/clc/api/1.0/servers/nc/nc-1/")
    assert response.status_code == 409
    assert "drain it first" in response.json()["detail"]
    assert Server.objects.filter(name="nc-1").exists()


def test_forgetting_a_node_that_still_holds_instances_is_refused_naming_them(staff, nc1):
    post(staff, "/clc/api/1.0/servers/nc/nc-1/drain/")
    clc_instance("ins-000000a1", "nc-1", "running")
    clc_instance("ins-000000a2", "nc-1", "stopped", persistent=True)  # its disk lives there
    clc_instance("ins-000000a3", "nc-1", "stopped")  # a temporary one holds nothing once stopped
    response = staff.delete("/clc/api/1.0/servers/nc/nc-1/")
    assert response.status_code == 409
    detail = response.json()["detail"]
    assert "ins-000000a1, ins-000000a2" in detail and "ins-000000a3" not in detail
    assert Server.objects.filter(name="nc-1").exists()


def test_the_cluster_controller_refuses_to_forget_a_node_its_own_records_place_instances_on(staff, nc1):
    post(staff, "/clc/api/1.0/servers/nc/nc-1/drain/")
    ClusterInstance.objects.create(instance_id="ins-000000b1", node="nc-1", tid="t", kind="rvd", cpus=1,
                                   memory_mb=256, state="running")
    response = staff.delete("/clc/api/1.0/servers/nc/nc-1/")
    assert response.status_code == 409
    assert "ins-000000b1" in response.json()["detail"]
    assert Server.objects.filter(name="nc-1").exists() and ClusterNode.objects.filter(name="nc-1").exists()


def test_forgetting_a_drained_empty_node_removes_it_everywhere_and_revokes_its_key(staff, nc1, controller):
    post(staff, "/clc/api/1.0/servers/nc/nc-1/drain/")
    response = staff.delete("/clc/api/1.0/servers/nc/nc-1/")
    assert response.status_code == 200, response.content
    assert response.json() == {"role": "nc", "name": "nc-1", "key_revoked": True, "cc_forgot": True}
    assert not Server.objects.filter(name="nc-1").exists()
    assert not ClusterNode.objects.filter(name="nc-1").exists()
    assert HostCredential.objects.get(name="nc-1").state == KeyStateChoices.REVOKED
    with pytest.raises(RemoteError) as refused:  # it cannot come back by registering again
        RoleClient(controller.api_url, nc1.key).post("/cc/api/1.0/register/server/", NC1)
    assert refused.value.status in (401, 403)


def test_a_node_of_a_cluster_without_an_online_controller_is_still_forgotten_and_its_key_revoked(staff, nc1,
                                                                                                 controller):
    post(staff, "/clc/api/1.0/servers/nc/nc-1/drain/")
    Server.objects.filter(pk=controller.pk).update(state="offline")
    response = staff.delete("/clc/api/1.0/servers/nc/nc-1/")
    assert response.status_code == 200, response.content
    assert response.json() == {"role": "nc", "name": "nc-1", "key_revoked": True, "cc_forgot": False}
    assert HostCredential.objects.get(name="nc-1").state == KeyStateChoices.REVOKED


def test_a_key_the_host_still_uses_for_another_role_is_kept(staff, nc1):
    Server.objects.create(role="sc", name="nc-1", ip="10.0.9.21", cluster="cluster1")
    post(staff, "/clc/api/1.0/servers/nc/nc-1/drain/")
    response = staff.delete("/clc/api/1.0/servers/nc/nc-1/")
    assert response.status_code == 200
    assert response.json()["key_revoked"] is False
    assert HostCredential.objects.get(name="nc-1").state == KeyStateChoices.ACTIVE


def test_the_cloud_controller_does_not_forget_itself_nor_an_online_server(staff, controller):
    Server.objects.create(role="clc", name=django_settings.EDUCLOUD.name, ip="10.0.9.1", cluster="cluster1")
    response = staff.delete(f"/clc/api/1.0/servers/clc/{django_settings.EDUCLOUD.name}/")
    assert response.status_code == 409
    assert "this cloud controller" in response.json()["detail"]
    response = staff.delete("/clc/api/1.0/servers/cc/cc-1/")
    assert response.status_code == 409
    assert "it is online" in response.json()["detail"]


def test_a_school_administrator_may_neither_drain_nor_forget_the_clouds_servers(client, nc1):
    school = OwnerGroup.objects.create(name="school", path="edu.school")
    head = get_user_model().objects.create_user("head")
    Account.objects.create(user=head, owner_group=school, role="superadm")
    client.force_login(head)
    assert post(client, "/clc/api/1.0/servers/nc/nc-1/drain/").status_code in (403, 404)
    assert client.delete("/clc/api/1.0/servers/nc/nc-1/").status_code in (403, 404)
    assert ClusterNode.objects.get(name="nc-1").draining is False


def test_the_servers_page_drains_and_forgets_with_the_reason_shown(staff, nc1):
    page = staff.get("/clc/hosts/servers/").content.decode()
    assert 'data-action="drain"' in page and 'data-action="refresh"' in page
    staff.post("/clc/hosts/servers/nc/nc-1/drain/")
    page = staff.get("/clc/hosts/servers/").content.decode()
    assert "draining" in page and 'data-action="undrain"' in page
    clc_instance("ins-000000c1", "nc-1", "running")
    page = staff.post("/clc/hosts/servers/nc/nc-1/forget/", follow=True).content.decode()
    assert "ins-000000c1" in page and "stop and delete them first" in page
    Instance.objects.filter(instance_id="ins-000000c1").delete()
    page = staff.post("/clc/hosts/servers/nc/nc-1/forget/", follow=True).content.decode()
    assert "nc:nc-1 forgotten; its key is revoked." in page
    assert not Server.objects.filter(name="nc-1").exists()


# Refresh


def test_refresh_asks_the_node_for_its_status_now(staff, nc1):
    response = post(staff, "/clc/api/1.0/servers/nc/nc-1/refresh/")
    assert response.status_code == 202, response.content
    assert response.json()["op"] == "status/report"
    assert [command.op for command in queued("nc-1")] == ["status/report"]


def test_the_nodes_answer_to_a_refresh_shows_as_its_new_last_seen_on_the_servers_page(staff, nc1):
    folder = StatusFolder(missed_heartbeats=3, db_touch_seconds=3600)
    folder.fold([heartbeat(seq=1)])
    # Its last report two days ago, in the record and the cache alike.
    Server.objects.filter(pk=nc1.pk).update(last_seen=timezone.now() - timedelta(days=2))
    cache.delete(server_key("nc", "nc-1"))
    assert "2\xa0days ago" in staff.get("/clc/hosts/servers/?q=nc-1").content.decode()

    asked = post(staff, "/clc/api/1.0/servers/nc/nc-1/refresh/").json()
    [command] = queued("nc-1")
    folder.fold([heartbeat(seq=2, last_command=command.msg_id)])  # what the node publishes on status/report
    assert cache.get(server_key("nc", "nc-1"))["last_command"] == asked["msg_id"]
    page = staff.get("/clc/hosts/servers/?q=nc-1").content.decode()
    assert "0\xa0minutes ago" in page and "days ago" not in page
    # The record is written at most every db_touch_seconds: the page shows the report the cache holds.
    assert Server.objects.get(pk=nc1.pk).last_seen < timezone.now() - timedelta(days=1)


def heartbeat(**fields) -> NodeStatus:
    return NodeStatus(role="nc", name="nc-1", ip="10.0.9.21", mac="52:54:00:00:00:21", cluster="cluster1",
                      interval=5, capacity=Resources(cpus=4, memory_mb=8192, disk_mb=100000),
                      free=Resources(cpus=4, memory_mb=8192, disk_mb=100000), **fields)


def test_refresh_of_a_pc_asks_the_node_controller_it_runs(staff, pc, node):
    response = post(staff, f"/clc/api/1.0/hosts/{MAC}/refresh/")
    assert response.status_code == 202, response.content
    assert [command.op for command in queued("pc-12")] == ["status/report"]


def test_refresh_of_a_walrus_makes_its_next_heartbeat_go_out_at_once(staff, live_server, cloud_at):
    config = replace(cloud_at(live_server.url), heartbeat_seconds=3600)
    status_bus = InProcessBus()
    publisher = HeartbeatPublisher("walrus", config, status_bus)
    stop = threading.Event()
    thread = threading.Thread(target=publisher.run, args=(stop,), daemon=True)
    thread.start()
    try:
        (first,) = take(status_bus, 1)
        Server.objects.filter(role="walrus", name=first.name).update(api_url=live_server.url)
        response = post(staff, f"/clc/api/1.0/servers/walrus/{first.name}/refresh/")
        assert response.status_code == 202, response.content
        (second,) = take(status_bus, 1, timeout=5)  # the next one was due in an hour
        assert (second.role, second.seq) == ("walrus", 2)
    finally:
        stop.set()
        thread.join(timeout=10)


def take(status_bus, count: int, timeout: float = 10.0) -> list:
    got: list = []
    stop = threading.Event()

    def handle(messages):
        got.extend(message for message in messages if message.state == "online")
        if len(got) >= count:
            stop.set()

    watchdog = threading.Timer(timeout, stop.set)
    watchdog.start()
    status_bus.consume(CLC_STATUS, handle, stop, max_wait=0.05)
    watchdog.cancel()
    return got


def test_refresh_says_why_a_server_or_pc_cannot_be_asked(staff, controller, pc):
    response = post(staff, "/clc/api/1.0/servers/cc/cc-1/refresh/")  # no heartbeat runs in this test process
    assert response.status_code == 409
    assert "runs no heartbeat in this process" in response.json()["detail"]
    Server.objects.create(role="sc", name="sc-1", ip="10.0.9.30", cluster="cluster1")
    response = post(staff, "/clc/api/1.0/servers/sc/sc-1/refresh/")
    assert response.status_code == 409
    assert "registered no address to ask" in response.json()["detail"]
    Server.objects.create(role="watch", name="watch-1", ip="10.0.9.31", cluster="cluster1",
                          api_url="http://127.0.0.1:9")
    response = post(staff, "/clc/api/1.0/servers/watch/watch-1/refresh/")
    assert response.status_code == 502
    response = post(staff, f"/clc/api/1.0/hosts/{MAC}/refresh/")  # pc-12 runs no node controller here
    assert response.status_code == 409
    assert "runs no node controller" in response.json()["detail"]


# Usage


def test_cluster_usage_shows_each_leased_port_and_address_with_its_instance_and_the_free_counts(staff, nc1):
    network = save_network(GOOD | {"cluster": "cluster1", "kind": "rvd", "port_low": 30000, "port_high": 30009})
    NetworkSettings.objects.create(cluster="cluster1", settings=as_cc_config(network))
    placed = run_instance(broker(), run_request(pinned_node="nc-1"))
    clc_instance(placed.instance_id, "nc-1", "scheduled")
    AddressLease.objects.create(ip="10.20.0.100", instance_id=placed.instance_id, pool="lan", mac="52:54:00:00:00:0a")
    AddressLease.objects.create(ip="203.0.113.20", instance_id="ins-000000d1", pool="eip")

    usage = staff.get("/clc/api/1.0/clusters/cluster1/usage/").json()
    assert usage["controller"] == "cc-1"
    ports = usage["ports"]
    assert (ports["size"], ports["leased"], ports["free"]) == (10, 2, 8)
    assert {(lease["purpose"], lease["instance_id"], lease["instance_name"], lease["node"])
            for lease in ports["leases"]} == {("console", "ins-0000000a", "desk 0a", "nc-1"),
                                              ("tcp/80", "ins-0000000a", "desk 0a", "nc-1")}
    lan, eip = usage["addresses"]
    assert (lan["name"], lan["size"], lan["leased"], lan["free"]) == ("lan", 100, 1, 99)
    assert lan["leases"] == [{"ip": "10.20.0.100", "instance_id": "ins-0000000a", "mac": "52:54:00:00:00:0a",
                              "node": "nc-1", "instance_name": "desk 0a"}]
    assert (eip["leased"], eip["leases"][0]["instance_name"]) == (1, "")  # the CLC has no record of that one

    page = staff.get("/clc/networks/cluster1/usage/").content.decode()
    assert "desk 0a" in page and "10.20.0.100" in page and "52:54:00:00:00:0a" in page


def test_usage_of_a_cluster_without_an_online_controller_says_so(staff):
    response = staff.get("/clc/api/1.0/clusters/cluster9/usage/")
    assert response.status_code == 409
    assert "cluster 'cluster9' has no online cluster controller" in response.json()["detail"]
    page = staff.get("/clc/networks/cluster9/usage/").content.decode()
    assert "has no online cluster controller" in page


# Health


def checks(client) -> dict[str, dict]:
    response = client.get("/clc/api/1.0/health/")
    assert response.status_code == 200, response.content
    return {check["name"]: check for check in response.json()}


def test_health_checks_database_broker_cache_and_each_clusters_dnsmasq_for_real(staff, controller):
    found = checks(staff)
    assert [found[name]["ok"] for name in ("database", "broker", "cache", "dnsmasq (cluster1)")] == [True] * 4
    assert "not needed" in found["dnsmasq (cluster1)"]["detail"]
    page = staff.get("/clc/").content.decode()
    assert 'data-check="database"' in page and 'data-check="dnsmasq (cluster1)"' in page


def test_a_broker_that_cannot_be_reached_is_a_problem_with_its_error(staff, settings):
    settings.EDUCLOUD = replace(settings.EDUCLOUD, bus_url="amqp://guest:guest@127.0.0.1:9/")
    broker = checks(staff)["broker"]
    assert broker["ok"] is False
    assert "127.0.0.1:9" in broker["detail"]


def test_a_cache_that_is_down_is_a_problem(staff, settings):
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.memcached.PyMemcacheCache",
                                   "LOCATION": "127.0.0.1:9"}}
    cache = checks(staff)["cache"]
    assert cache["ok"] is False
    assert cache["detail"]


def test_a_cluster_whose_controller_fails_shows_its_dnsmasq_as_a_problem(staff):
    Server.objects.create(role="cc", name="cc-9", ip="10.0.9.9", cluster="cluster9", state="online",
                          api_url="http://127.0.0.1:9")
    dnsmasq = checks(staff)["dnsmasq (cluster9)"]
    assert dnsmasq["ok"] is False
    assert "cc-9 did not report its pools" in dnsmasq["detail"]


def test_only_who_may_read_servers_sees_the_health(client):
    school = OwnerGroup.objects.create(name="school", path="edu.school")
    head = get_user_model().objects.create_user("head")
    Account.objects.create(user=head, owner_group=school, role="superadm")
    client.force_login(head)
    assert client.get("/clc/api/1.0/health/").status_code == 403


# The VM type's disk size


def test_the_run_request_carries_the_vm_types_disk_size_to_the_cluster():
    from clc.services.instances import _run_request
    from luhyadb.models import ImageVersion

    instance = clc_instance("ins-000000e1", "", "defined")
    VMType.objects.filter(pk=instance.vm_type_id).update(disk_gb=20)
    Instance.objects.filter(pk=instance.pk).update(mac="52:54:00:00:00:e1")
    ImageVersion.objects.create(image=instance.image, number=1, label="1.0.0", size_bytes=1024, sha256="a" * 64,
                                format="qcow2")
    Image.objects.filter(pk=instance.image_id).update(current_version=1)
    instance.refresh_from_db()
    assert _run_request(instance, seq=1, boot=True).disk_mb == 20 * 1024
