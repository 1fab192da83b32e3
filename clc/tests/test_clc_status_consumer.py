"""Who may put what on the CLC's status queue (``clc.status``, ``luhyaapi.bus_trust``): a host's own heartbeat (as a
role it enrolled with), and a CC relaying its own cluster's reports: about hosts trusted in its cluster, of runs
placed there. Anything else is parked with the reason and never folded."""

from __future__ import annotations

import pytest
from django.utils import timezone

from clc.consumers.clc_status import ClcStatusConsumer
from clc.services.status import StatusFolder
from luhyaapi.bus import InProcessBus
from luhyaapi.messages import HostStatus, InsStatus, NodeStatus, Resources, TaskStatus
from luhyaapi.queues import CLC_STATUS
from luhyadb.choices import KeyStateChoices
from luhyadb.models import HostCredential, Image, Instance, OwnerGroup, Server, TaskTransaction, VMType
from tests.consuming import deliver
from tests.keys import enrolled_key

pytestmark = [pytest.mark.database, pytest.mark.django_db]

PC_12 = "52:54:00:3c:0f:12"
ROOM = Resources(cpus=4, memory_mb=8192, disk_mb=100_000)
PREPARE = "img-0000aaaa:img-0000aaaa:ins-0000000b"


def heartbeat(name: str, role: str = "nc", cluster: str = "cluster1", mac: str = "") -> NodeStatus:
    return NodeStatus(role=role, name=name, ip="10.0.0.2", mac=mac, cluster=cluster, interval=5, seq=1,
                      capacity=ROOM, free=ROOM)


def preparing(tid: str = PREPARE) -> TaskStatus:
    return TaskStatus(tid=tid, phase="preparing", state="downloading", progress=10)


@pytest.fixture
def hosts():
    """Two clusters, each with its CC and a node; a PC and a walrus in cluster1."""
    keys = {"cc-1": enrolled_key("cc-1", "cc"), "cc-2": enrolled_key("cc-2", "cc", cluster="cluster2"),
            "nc-1": enrolled_key("nc-1"), "nc-9": enrolled_key("nc-9", cluster="cluster2"),
            "pc-12": enrolled_key("pc-12", "pc", mac=PC_12), "store": enrolled_key("store", "walrus")}
    for name, cluster in (("nc-1", "cluster1"), ("nc-9", "cluster2")):
        Server.objects.create(role="nc", name=name, ip="10.0.0.2", cluster=cluster, last_seen=timezone.now())
    return keys


def run(sent: list[tuple]):
    """Put each (message, key) on the CLC's queue and run the CLC's consumer."""
    bus = InProcessBus()
    for message, key in sent:
        bus.publish(CLC_STATUS, message, key=key)
    folder = StatusFolder(missed_heartbeats=3, db_touch_seconds=0)
    return deliver(bus, CLC_STATUS, ClcStatusConsumer(folder).consume, len(sent))


def test_own_heartbeats_and_a_ccs_relays_of_its_own_cluster_are_folded(hosts):
    sent = [(heartbeat("store", role="walrus"), hosts["store"]), (heartbeat("cc-1", role="cc"), hosts["cc-1"]),
            (heartbeat("nc-1"), hosts["cc-1"]), (heartbeat("pc-12", mac=PC_12), hosts["cc-1"]),
            (HostStatus(name="pc-12", ip="10.0.0.12", mac=PC_12, cluster="cluster1", interval=5, seq=1),
             hosts["cc-1"]),
            (InsStatus(insid="ins-0000000a", node="nc-1", state="running"), hosts["cc-1"]),
            (heartbeat("nc-9", cluster="cluster2"), hosts["cc-2"])]
    done = run(sent)
    assert (done.handled, done.reasons) == ([message for message, _key in sent], [])
    assert Server.objects.get(role="walrus", name="store").state == "online"


@pytest.mark.parametrize("message, sender, reason", [
    (heartbeat("nc-9", cluster="cluster2"), "cc-1", "cc-1 relays cluster cluster1, and nc-9 is in cluster cluster2"),
    (heartbeat("nc-9", cluster="cluster1"), "cc-1", "cc-1 relays cluster cluster1, and nc-9 is in cluster cluster2"),
    (InsStatus(insid="ins-0000000a", node="nc-9", state="stopped"), "cc-1",
     "cc-1 relays cluster cluster1, and nc-9 is in cluster cluster2"),
    (heartbeat("nc-5"), "cc-1", "nc-5 is not a trusted host of this cloud (unknown, or its key was revoked)"),
    (heartbeat("cc-2", role="cc", cluster="cluster2"), "cc-1",
     "cc-1 relays cluster cluster1, and cc-2 is in cluster cluster2"),
    (heartbeat("nc-1", role="cc"), "cc-1", "a CC relays the heartbeats of nc and sc only, not of cc"),
    (heartbeat("store", role="cc"), "store", "store is enrolled as walrus, not as cc"),
    (heartbeat("cc-1", role="cc"), "store", "the report is about cc-1, not store"),
    (preparing(), "store", "store (walrus) may not put a taskstatus message on clc.status"),
])
def test_a_report_the_sender_may_not_make_is_parked_with_why(hosts, message, sender, reason):
    done = run([(message, hosts[sender])])
    assert (done.handled, done.reasons) == ([], [f"refused: {reason}"])


def test_a_cc_relays_the_progress_of_its_own_clusters_tasks_only(hosts):
    """An image's preparation on nc-9 runs in cluster2: cluster1's CC may not report on it; cluster2's may."""
    TaskTransaction.objects.create(tid=PREPARE, src_image_id="img-0000aaaa", dst_image_id="img-0000aaaa",
                                   instance_id="ins-0000000b", runtime_option={"node": "nc-9", "version": 1})
    done = run([(preparing(), hosts["cc-1"]), (preparing(), hosts["cc-2"])])
    assert [message.tid for message in done.handled] == [PREPARE]
    assert done.reasons == [f"refused: task {PREPARE} runs in cluster cluster2, not in cc-1's cluster cluster1"]
    assert TaskTransaction.objects.get(tid=PREPARE).state == "downloading"


def test_a_cc_relays_its_own_clusters_instances_only(hosts):
    """ins-0000000a runs in cluster2: cluster1's CC may not report on it, even about its own node; cluster2's may."""
    group = OwnerGroup.objects.create(name="edu", path="edu")
    image = Image.objects.create(image_id="img-0000aaaa", name="desk", owner_group=group)
    Instance.objects.create(instance_id="ins-0000000a", name="desk", kind="rvd", image=image, owner_group=group,
                            vm_type=VMType.objects.create(name="small", cpus=1, memory_mb=1024, disk_gb=10),
                            cluster="cluster2", node="nc-9", state="running")
    done = run([(InsStatus(insid="ins-0000000a", node="nc-1", state="stopped"), hosts["cc-1"]),
                (InsStatus(insid="ins-0000000a", node="nc-9", state="stopped", seq=1), hosts["cc-2"])])
    assert [(message.node, message.state) for message in done.handled] == [("nc-9", "stopped")]
    assert done.reasons == ["refused: instance ins-0000000a runs in cluster cluster2, not in cc-1's cluster cluster1"]


def test_reports_about_a_revoked_host_stop_counting_at_once(hosts):
    HostCredential.objects.filter(name="nc-1").update(state=KeyStateChoices.REVOKED)
    before = Server.objects.get(name="nc-1").last_seen
    done = run([(heartbeat("nc-1"), hosts["cc-1"]), (heartbeat("nc-1"), hosts["nc-1"])])
    assert done.handled == []
    assert done.reasons == ["refused: nc-1 is not a trusted host of this cloud (unknown, or its key was revoked)"] * 2
    assert Server.objects.get(name="nc-1").last_seen == before
