"""Who may put what on a cluster's status queue (``cc.status.<cluster>``, ``luhyaapi.bus_trust``): the cluster's
nodes, SCs and PCs, each about itself, and task progress from its nodes. Anything else is parked with the reason and
never reaches the CC's relay (so never the CLC)."""

from __future__ import annotations

import pytest

from cc.consumers.cc_status import CcStatusConsumer
from cc.models import ClusterNode
from cc.services.nodes import NodeStatusRelay
from luhyaapi.bus import InProcessBus
from luhyaapi.messages import HostStatus, InsStatus, NodeStatus, Resources, TaskStatus
from luhyaapi.queues import CLC_STATUS, cc_status
from luhyadb.choices import KeyStateChoices
from luhyadb.models import HostCredential
from tests.consuming import deliver
from tests.keys import enrolled_key, new_key

pytestmark = [pytest.mark.database, pytest.mark.django_db]

QUEUE = cc_status("cluster1")
PC_12, PC_13 = "52:54:00:3c:0f:12", "52:54:00:3c:0f:13"
ROOM = Resources(cpus=4, memory_mb=8192, disk_mb=100_000)
TID = "img-0000aaaa:img-0000aaaa:ins-0000000a"


def heartbeat(name: str, role: str = "nc", cluster: str = "cluster1", mac: str = "") -> NodeStatus:
    return NodeStatus(role=role, name=name, ip="10.0.0.2", mac=mac, cluster=cluster, interval=5, seq=1,
                      capacity=ROOM, free=ROOM)


def pc_beat(name: str, mac: str, cluster: str = "cluster1") -> HostStatus:
    return HostStatus(name=name, ip="10.0.0.12", mac=mac, cluster=cluster, interval=5, seq=1)


def progress() -> TaskStatus:
    return TaskStatus(tid=TID, phase="preparing", state="downloading", progress=10)


@pytest.fixture
def hosts():
    return {"nc-1": enrolled_key("nc-1"), "nc-9": enrolled_key("nc-9", cluster="cluster2"),
            "sc-1": enrolled_key("sc-1", "sc"), "store": enrolled_key("store", "walrus"),
            "pc-12": enrolled_key("pc-12", "pc", mac=PC_12), "pc-13": enrolled_key("pc-13", "pc", mac=PC_13)}


class Upstream:
    """The CLC's queue as the relay sees it: what it publishes there."""

    def __init__(self) -> None:
        self.published: list = []

    def publish(self, queue: str, message) -> None:
        assert queue == CLC_STATUS
        self.published.append(message)


def run(sent: list[tuple]) -> tuple:
    """Put each (message, key) on the cluster's queue and run the CC's consumer: what was handed to it and parked,
    and what it relayed to the CLC."""
    bus, upstream = InProcessBus(), Upstream()
    for message, key in sent:
        bus.publish(QUEUE, message, key=key)
    done = deliver(bus, QUEUE, CcStatusConsumer(NodeStatusRelay(upstream, touch_seconds=0)).consume, len(sent))
    return done, upstream.published


def test_the_clusters_hosts_reports_about_themselves_are_relayed(hosts):
    sent = [heartbeat("nc-1"), heartbeat("sc-1", role="sc"), heartbeat("pc-12", mac=PC_12), pc_beat("pc-12", PC_12),
            InsStatus(insid="ins-0000000a", node="nc-1", state="running"), progress()]
    keys = [hosts["nc-1"], hosts["sc-1"], hosts["pc-12"], hosts["pc-12"], hosts["nc-1"], hosts["nc-1"]]
    done, relayed = run(list(zip(sent, keys, strict=True)))
    assert (done.handled, done.reasons) == (sent, [])
    assert relayed == sent, "relayed to the CLC as they came"
    assert ClusterNode.objects.filter(name__in=["nc-1", "sc-1", "pc-12"]).count() == 3


def test_a_report_of_a_run_placed_here_goes_up_with_the_runs_access(hosts):
    """A CLC whose answer to the run was lost learns the placement from its reports."""
    from cc.models import ClusterInstance

    access = {"console": "vnc://10.0.0.2:6400", "http": "http://10.0.0.2:6401/"}
    ClusterInstance.objects.create(instance_id="ins-0000000a", node="nc-1", tid=TID, seq=1, kind="rvd", cpus=1,
                                   memory_mb=256, state="scheduled", access=access)
    report = InsStatus(insid="ins-0000000a", node="nc-1", seq=1, state="preparing")
    _, relayed = run([(report, hosts["nc-1"])])
    assert relayed == [report.model_copy(update={"access": access})]


@pytest.mark.parametrize("message, sender, reason", [
    (pc_beat("pc-13", PC_13), "pc-12", "the report is about pc-13, not pc-12"),
    (heartbeat("pc-13", mac=PC_13), "pc-12", "the report is about pc-13, not pc-12"),
    (pc_beat("pc-12", PC_13), "pc-12", f"pc-12 is the classroom PC of MAC {PC_12}, not of {PC_13}"),
    (heartbeat("nc-2"), "nc-1", "the report is about nc-2, not nc-1"),
    (heartbeat("nc-1", role="cc"), "nc-1", "nc-1 is enrolled as nc, not as cc"),
    (heartbeat("nc-1", cluster="cluster2"), "nc-1", "nc-1 is enrolled in cluster cluster1, not cluster2"),
    (pc_beat("nc-1", PC_12), "nc-1", "nc-1 is not a classroom PC"),
    (InsStatus(insid="ins-0000000a", node="nc-2", state="running"), "nc-1", "the report is about node nc-2, not nc-1"),
    (heartbeat("nc-9", cluster="cluster2"), "nc-9", "nc-9 is enrolled in cluster cluster2, not cluster1"),
    (progress(), "nc-9", "nc-9 is enrolled in cluster cluster2, not cluster1"),
    (progress(), "sc-1", "sc-1 (sc) may not put a taskstatus message on cc.status.<cluster>"),
    (heartbeat("store", role="walrus"), "store",
     "store (walrus) may not put a nodestatus message on cc.status.<cluster>"),
])
def test_a_report_the_sender_may_not_make_is_parked_with_why(hosts, message, sender, reason):
    done, relayed = run([(message, hosts[sender])])
    assert (done.handled, relayed, done.reasons) == ([], [], [f"refused: {reason}"])


def test_a_revoked_or_unknown_hosts_heartbeat_is_parked(hosts):
    HostCredential.objects.filter(name="nc-1").update(state=KeyStateChoices.REVOKED)
    done, relayed = run([(heartbeat("nc-1"), hosts["nc-1"]), (heartbeat("nc-5"), new_key("nc-5"))])
    assert (done.handled, relayed) == ([], [])
    assert done.reasons == [
        f"refused: {name} is not a trusted host of this cloud (unknown, or its key was revoked)"
        for name in ("nc-1", "nc-5")]
    assert not ClusterNode.objects.filter(name__in=["nc-1", "nc-5"]).exists()
