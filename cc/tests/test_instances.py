"""The cluster controller's side of instances: placement, port leases, the node's command, and following state."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from cc.models import ClusterInstance, ClusterNode, PortLease
from cc.services.instances import InstanceRefused, delete_instance, note_instance_status, run_instance, stop_instance
from luhyaapi import commands
from luhyaapi.bus import BusUnavailable
from luhyaapi.messages import ImageRef, InsStatus, InstanceRunRequest
from luhyaapi.vmspec import guest_devices
from luhyadb.choices import KeyStateChoices
from luhyadb.models import HostCredential
from tests.commands import broker, queued
from tests.keys import enrolled_key
from tests.services import free_port_block

pytestmark = [pytest.mark.database, pytest.mark.django_db(transaction=True)]

IMAGE = ImageRef(image_id="img-0000aaaa", version=1, sha256="a" * 64, size=1024)


def request(insid="ins-0000000a", seq=1, **changes):
    fields = dict(insid=insid, tid=f"img-0000aaaa:img-0000aaaa:{insid}", seq=seq, kind="rvd", image=IMAGE, cpus=1,
                  memory_mb=256, mac="52:54:00:00:00:0a", services=(80,))
    return InstanceRunRequest(**(fields | changes))


@pytest.fixture
def nodes(settings):
    now = datetime.now(tz=UTC)
    for name in ("nc-1", "nc-2", "nc-old"):
        enrolled_key(name)
    ClusterNode.objects.create(name="nc-1", role="nc", ip="10.0.0.11", cpus=2, memory_mb=4096, disk_mb=10**6,
                               free_disk_mb=10**6, last_seen=now)
    ClusterNode.objects.create(name="nc-2", role="nc", ip="10.0.0.12", cpus=2, memory_mb=2048, disk_mb=10**6,
                               free_disk_mb=10**6, last_seen=now)
    ClusterNode.objects.create(name="nc-old", role="nc", ip="10.0.0.13", cpus=64, memory_mb=10**6, disk_mb=10**6,
                               free_disk_mb=10**6, last_seen=now - timedelta(days=1))


def test_an_instance_is_placed_on_the_roomiest_online_node_with_leased_ports_and_the_node_gets_its_command(nodes):
    url = broker()
    record = run_instance(url, request(console_password="Pw4run99"))
    assert record.node == "nc-1"  # nc-old has more room but has not been heard of for a day
    leases = dict(PortLease.objects.values_list("purpose", "port"))
    assert set(leases) == {"console", "tcp/80"} and leases["console"] != leases["tcp/80"]
    assert record.access == {"console": f"vnc://10.0.0.11:{leases['console']}",
                             "http": f"http://10.0.0.11:{leases['tcp/80']}/"}
    [command] = queued("nc-1")
    assert (command.op, command.seq, command.paras["insid"]) == ("instance/run", 1, "ins-0000000a")
    options = command.paras["options"]
    assert options["console"] == {"protocol": "vnc", "listen": "10.0.0.11", "port": leases["console"],
                                  "password": "Pw4run99"}
    assert options["nics"][0]["forwards"] == [{"protocol": "tcp", "host_ip": "10.0.0.11",
                                               "host_port": leases["tcp/80"], "guest_port": 80}]


def test_asking_twice_for_the_same_run_answers_the_same_placement_and_sends_one_command(nodes):
    url = broker()
    first = run_instance(url, request())
    again = run_instance(url, request())
    assert (again.node, again.access) == (first.node, first.access)
    assert PortLease.objects.count() == 2
    assert len(queued("nc-1")) == 1


def test_a_second_run_while_running_is_refused(nodes):
    url = broker()
    run_instance(url, request(seq=1))
    with pytest.raises(InstanceRefused, match="already scheduled on nc-1") as raised:
        run_instance(url, request(seq=2))
    assert raised.value.status == 409


def test_no_port_is_handed_out_twice_and_an_empty_pool_is_refused(nodes, settings):
    from dataclasses import replace

    # A block nothing else on the machine holds: the lease passes over ports other programs hold (a VM's VNC 5900).
    low, high = free_port_block(5)
    settings.EDUCLOUD = replace(settings.EDUCLOUD, port_range=(low, high))
    url = broker()
    run_instance(url, request("ins-00000001"))
    run_instance(url, request("ins-00000002"))
    assert sorted(PortLease.objects.values_list("port", flat=True)) == [low, low + 1, low + 2, low + 3]
    with pytest.raises(InstanceRefused, match=f"port pool {low}-{high} is used up"):
        run_instance(url, request("ins-00000003"))
    assert not PortLease.objects.filter(instance_id="ins-00000003").exists()


def test_when_nothing_fits_the_refusal_names_every_nodes_reason(nodes):
    with pytest.raises(InstanceRefused) as raised:
        run_instance(broker(), request(memory_mb=8192))
    text = str(raised.value)
    assert "nc-1: 3584 MB memory free, 8192 MB needed" in text
    assert "nc-2: 1536 MB memory free, 8192 MB needed" in text
    assert "nc-old: offline" in text
    assert not PortLease.objects.exists() and not ClusterInstance.objects.exists()


def test_a_node_whose_key_was_revoked_runs_nothing_more_though_it_still_looks_online(nodes):
    """nc-1 has the most room, and its last heartbeat is recent; its key is revoked: nc-2 gets the instance."""
    HostCredential.objects.filter(name="nc-1").update(state=KeyStateChoices.REVOKED)
    assert run_instance(broker(), request()).node == "nc-2"
    with pytest.raises(InstanceRefused, match="nc-1: its key is not trusted \\(revoked, or never approved\\)"):
        run_instance(broker(), request("ins-0000000b", pinned_node="nc-1"))


def test_a_kind_the_cluster_does_not_run_is_refused(nodes, settings):
    from dataclasses import replace

    settings.EDUCLOUD = replace(settings.EDUCLOUD, cluster_kinds=("vs",))
    with pytest.raises(InstanceRefused, match="runs vs instances, not rvd"):
        run_instance(broker(), request())


def test_ports_return_to_the_pool_when_the_node_reports_the_instance_stopped(nodes):
    url = broker()
    run_instance(url, request())
    stop_instance(url, "ins-0000000a", 1)
    assert ClusterInstance.objects.get().state == "stopping"
    note_instance_status(InsStatus(insid="ins-0000000a", node="nc-1", seq=1, state="stopped"))
    assert not PortLease.objects.exists()
    assert ClusterInstance.objects.get().state == "stopped"


def test_a_late_report_of_an_earlier_run_changes_nothing(nodes):
    url = broker()
    run_instance(url, request(seq=1))
    note_instance_status(InsStatus(insid="ins-0000000a", node="nc-1", seq=1, state="stopped"))
    run_instance(url, request(seq=2))
    note_instance_status(InsStatus(insid="ins-0000000a", node="nc-1", seq=1, state="stopped"))
    assert ClusterInstance.objects.get().state == "scheduled"
    assert PortLease.objects.count() == 2


def test_a_persistent_instance_runs_again_where_its_disk_is(nodes):
    url = broker()
    ClusterNode.objects.filter(name="nc-2").update(memory_mb=3000)
    first = run_instance(url, request(persistent=True, memory_mb=3000))  # only nc-1 has room for it
    assert first.node == "nc-1"
    note_instance_status(InsStatus(insid="ins-0000000a", node="nc-1", seq=1, state="stopped"))
    ClusterNode.objects.filter(name="nc-2").update(memory_mb=65536)
    again = run_instance(url, request(seq=2, persistent=True, memory_mb=256))
    assert again.node == "nc-1"


def test_a_deleted_instance_leaves_no_record_or_lease(nodes):
    url = broker()
    run_instance(url, request())
    delete_instance(url, "ins-0000000a", 1)
    note_instance_status(InsStatus(insid="ins-0000000a", node="nc-1", seq=1, state="deleted"))
    assert not ClusterInstance.objects.exists() and not PortLease.objects.exists()


def test_stopping_an_instance_this_cluster_never_placed_is_a_404(nodes):
    with pytest.raises(InstanceRefused) as raised:
        stop_instance(broker(), "ins-0000ffff", 1)
    assert raised.value.status == 404


@pytest.mark.parametrize("os_type, disk_type, nic_model", [("linux", "virtio", "virtio"), ("windows", "ide", "e1000"),
                                                           ("other", "ide", "e1000")])
def test_a_guest_gets_virtio_only_if_it_runs_linux_by_the_one_rule_kiosks_use_too(nodes, os_type, disk_type,
                                                                                   nic_model):
    assert guest_devices(os_type) == (disk_type, nic_model)
    url = broker()
    run_instance(url, request(os_type=os_type))
    [command] = queued("nc-1")
    options = command.paras["options"]
    assert (options["disk_type"], options["nics"][0]["model"]) == (disk_type, nic_model)


class ListeningClc:
    """A socket where the CLC would be, counting who connects (and answering nothing): the CC must not call it while
    it places a run."""

    def __init__(self) -> None:
        import socket

        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.2)
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"

    def connections(self) -> int:
        count = 0
        while True:
            try:
                connection, _ = self.listener.accept()
            except TimeoutError:
                return count
            connection.close()
            count += 1


NETWORK = {"cluster": "cluster1", "kind": "rvd", "mode": "private", "cc_eip": "192.0.2.10",
           "cc_internal_ip": "10.0.0.1", "interfaces": {"public": "pub0", "private": "lan0"},
           "lan": {"subnet": "10.0.0.0/24", "netmask": "255.255.255.0", "prefix": 24, "gateway": "10.0.0.1"},
           "dhcp": None, "eip_pool": None, "ports": {"low": 6400, "high": 6499}, "node_bridge": "",
           "forward_ports": True, "console_host": "192.0.2.10"}


@pytest.fixture
def clc_elsewhere(settings):
    from dataclasses import replace

    clc = ListeningClc()
    settings.EDUCLOUD = replace(settings.EDUCLOUD, clc_url=clc.url)
    yield clc
    clc.listener.close()


def test_a_run_carries_the_clusters_network_which_the_cc_keeps_and_uses_without_calling_the_clc(nodes, clc_elsewhere):
    from cc.models import NetworkSettings

    record = run_instance(broker(), request(network=NETWORK))
    ports = dict(PortLease.objects.values_list("purpose", "port"))
    assert 6400 <= ports["console"] <= 6499  # the settings' port pool, not the host's default
    assert record.access["console"] == f"vnc://192.0.2.10:{ports['console']}"  # reached through the CC (private)
    assert NetworkSettings.objects.get(cluster="cluster1").settings == NETWORK
    assert clc_elsewhere.connections() == 0


def test_without_settings_in_the_run_the_cc_uses_its_own_copy_and_calls_nobody_back(nodes, clc_elsewhere):
    run_instance(broker(), request())
    assert clc_elsewhere.connections() == 0


def test_an_empty_network_in_the_run_means_the_cluster_has_none_and_drops_an_old_copy(nodes, clc_elsewhere):
    from cc.models import NetworkSettings

    NetworkSettings.objects.create(cluster="cluster1", settings=NETWORK)
    record = run_instance(broker(), request(network={}))
    assert record.access["console"].startswith("vnc://10.0.0.11:")  # NAT-only: the node's own address
    assert not NetworkSettings.objects.exists()


def test_network_settings_the_cc_cannot_read_are_a_400_and_place_nothing(nodes, clc_elsewhere):
    with pytest.raises(InstanceRefused, match="network settings the CC cannot read") as raised:
        run_instance(broker(), request(network={"kind": "rvd"}))
    assert raised.value.status == 400
    assert not ClusterInstance.objects.exists() and not PortLease.objects.exists()


def test_asking_again_for_a_run_that_ended_answers_it_as_it_ended_and_places_nothing_new(nodes):
    """The CLC asks again, with the same seq, when the answer to a run was lost: by then the run may have ended."""
    url = broker()
    run_instance(url, request())
    queued("nc-1")
    note_instance_status(InsStatus(insid="ins-0000000a", node="nc-1", seq=1, state="failed", errormsg="no disk"))
    again = run_instance(url, request())
    assert (again.state, again.seq, again.access) == ("failed", 1, {})
    assert not PortLease.objects.exists()
    assert queued("nc-1") == []


def test_releasing_the_ports_of_an_ended_run_forgets_its_access(nodes):
    url = broker()
    run_instance(url, request())
    note_instance_status(InsStatus(insid="ins-0000000a", node="nc-1", seq=1, state="stopped"))
    assert ClusterInstance.objects.get().access == {}


def test_a_report_of_the_current_run_goes_up_with_its_access_and_an_ended_ones_without(nodes):
    url = broker()
    record = run_instance(url, request())
    relayed = note_instance_status(InsStatus(insid="ins-0000000a", node="nc-1", seq=1, state="preparing"))
    assert relayed.access == record.access and relayed.access["console"].startswith("vnc://10.0.0.11:")
    stopped = note_instance_status(InsStatus(insid="ins-0000000a", node="nc-1", seq=1, state="stopped"))
    assert stopped.access == {}


def test_a_run_whose_command_the_broker_refused_sends_it_when_the_clc_asks_again_and_only_then(nodes, monkeypatch):
    monkeypatch.setattr(commands, "PUBLISH_RETRY", {"max_retries": 0})
    away = "amqp://guest:guest@127.0.0.1:1//"  # nothing listens there: as a broker away longer than the retries
    with pytest.raises(BusUnavailable):  # the CLC's call fails (a 500): it asks again with the same run number
        run_instance(away, request())
    assert ClusterInstance.objects.get().run_sent is False
    assert queued("nc-1") == []
    again = run_instance(broker(), request())
    assert again.node == "nc-1" and ClusterInstance.objects.get().run_sent is True
    assert [command.op for command in queued("nc-1")] == ["instance/run"]
    run_instance(broker(), request())  # a third ask, its command taken by the broker: nothing more goes
    assert queued("nc-1") == []


def test_the_nodes_run_command_carries_the_vm_types_disk_size(nodes):
    url = broker()
    run_instance(url, request(disk_mb=20 * 1024))
    [command] = queued("nc-1")
    assert command.paras["disk_mb"] == 20 * 1024


class Upstream:
    """The cloud's bus as the CC's expiry sweep publishes to it: what went up, in order."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, object]] = []

    def publish(self, queue: str, message) -> None:
        self.sent.append((queue, message))


def test_a_run_an_offline_node_never_took_fails_after_its_expiry_with_a_reason_and_gives_its_ports_back(nodes):
    from cc.models import CommandTask
    from cc.services.command_tasks import TaskEventFold, expire_commands
    from luhyaapi.queues import CLC_STATUS

    record = run_instance(broker(), request())
    task = CommandTask.objects.get(instance_id="ins-0000000a")
    assert (task.op, task.state, task.seq, task.node) == ("instance/run", "queued", 1, "nc-1")
    upstream = Upstream()
    assert expire_commands(upstream, now=task.queued_at + timedelta(minutes=9)) == [], "not yet"

    [expired] = expire_commands(upstream, now=task.queued_at + timedelta(minutes=11))
    assert expired.task_id == task.task_id
    task.refresh_from_db()
    assert task.state == "failed"
    assert task.reason.startswith("node nc-1 did not take the command within 10 minutes (it is offline or too busy)")
    [(queue, report)] = upstream.sent
    assert queue == CLC_STATUS
    assert (report.insid, report.seq, report.state, report.errormsg) == ("ins-0000000a", 1, "failed", task.reason)
    assert not PortLease.objects.filter(instance_id=record.instance_id).exists()
    assert ClusterInstance.objects.get(instance_id="ins-0000000a").state == "failed"

    # The node back online: Celery drops the expired task unrun and says so; the CC keeps its own reason.
    TaskEventFold()({"type": "task-revoked", "uuid": task.task_id, "expired": True, "hostname": "nc@nc-1",
                     "timestamp": 1e10})
    task.refresh_from_db()
    assert (task.state, task.reason) == ("failed", expired.reason)
    assert expire_commands(upstream, now=task.queued_at + timedelta(hours=1)) == [], "failed once"


def test_commands_without_an_expiry_and_commands_a_worker_took_never_expire(nodes):
    from cc.models import CommandTask
    from cc.services.command_tasks import expire_commands

    run_instance(broker(), request())
    stop_instance(broker(), "ins-0000000a", 1)
    CommandTask.objects.filter(op="instance/run").update(state="received")
    assert expire_commands(Upstream(), now=datetime.now(UTC) + timedelta(days=2)) == []


def test_a_guests_remote_desktop_is_forwarded_and_named_rdp_through_the_cc_in_private_mode(nodes, clc_elsewhere):
    record = run_instance(broker(), request(services=(80, 3389), network=NETWORK))
    ports = dict(PortLease.objects.values_list("purpose", "port"))
    assert set(ports) == {"console", "tcp/80", "tcp/3389"} and 6400 <= ports["tcp/3389"] <= 6499
    assert record.access == {"console": f"vnc://192.0.2.10:{ports['console']}",
                             "http": f"http://192.0.2.10:{ports['tcp/80']}/",
                             "rdp": f"rdp://192.0.2.10:{ports['tcp/3389']}"}
    [command] = queued("nc-1")
    assert {"protocol": "tcp", "host_ip": "10.0.0.11", "host_port": ports["tcp/3389"], "guest_port": 3389} in (
        command.paras["options"]["nics"][0]["forwards"])  # the node forwards it into the guest


def test_a_guests_remote_desktop_is_at_the_node_without_network_settings_and_at_the_guest_when_bridged(nodes):
    from cc.services.instances import _access

    record = run_instance(broker(), request(services=(3389,)))
    port = PortLease.objects.get(purpose="tcp/3389").port
    assert record.access["rdp"] == f"rdp://10.0.0.11:{port}" and "tcp/3389" not in record.access
    bridged = _access("vs", "10.0.0.11", {"console": 6401}, (3389,), "vnc", "192.0.2.10", "192.0.2.50")
    assert bridged["rdp"] == "rdp://192.0.2.50:3389"  # its elastic (or LAN) address, no forward of the CC's
