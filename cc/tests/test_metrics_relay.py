"""The CC's relay of its cluster's ``metrics`` messages (issue 17): from ``cc.status.<cluster>`` to ``watch.metrics``
on the cloud's bus, never to the CLC's status queue, with only the instance samples of instances this cluster placed
on the reporting node. Real buses (in-process), the CC's consumer and the trust records."""

from __future__ import annotations

import pytest

from cc.consumers.cc_status import CcStatusConsumer
from cc.models import ClusterInstance
from cc.services.nodes import NodeStatusRelay
from luhyaapi.bus import InProcessBus
from luhyaapi.messages import InsStatus, MetricsReport
from luhyaapi.metrics import HOST_NAMESPACE, INSTANCE_NAMESPACE, MetricSample
from luhyaapi.queues import CLC_STATUS, WATCH_METRICS, cc_status
from tests.consuming import deliver
from tests.keys import enrolled_key

pytestmark = [pytest.mark.database, pytest.mark.django_db]

STATUS = cc_status("cluster1")
TID = "img-0000aaaa:img-0000aaaa:ins-0000000a"


def sample(node: str, insid: str = "", name: str = "CPUUtilization") -> MetricSample:
    if insid:
        return MetricSample(namespace=INSTANCE_NAMESPACE, name=name, timestamp=1000.0, value=50.0, unit="Percent",
                            dimensions={"InstanceId": insid, "NodeName": node, "Cluster": "cluster1"})
    return MetricSample(namespace=HOST_NAMESPACE, name=name, dimensions={"HostName": node, "Cluster": "cluster1"},
                        timestamp=1000.0, value=5.0, unit="Percent")


def placed(insid: str, node: str) -> None:
    ClusterInstance.objects.create(instance_id=insid, node=node, tid=TID, seq=1, kind="vs", cpus=1, memory_mb=256,
                                   state="running")


@pytest.fixture
def keys():
    return {"nc-1": enrolled_key("nc-1"), "nc-2": enrolled_key("nc-2"), "sc-1": enrolled_key("sc-1", "sc")}


def relay(sent: list[tuple]) -> tuple[InProcessBus, list]:
    """Put each (message, key) on the cluster's status queue and run the CC's consumer with the cloud's bus as its
    upstream; returns that bus and what the consumer was handed."""
    cluster_bus, cloud_bus = InProcessBus(), InProcessBus()
    for message, key in sent:
        cluster_bus.publish(STATUS, message, key=key)
    done = deliver(cluster_bus, STATUS, CcStatusConsumer(NodeStatusRelay(cloud_bus, touch_seconds=0)).consume,
                   len(sent))
    assert done.reasons == []
    return cloud_bus, done.handled


def taken(bus: InProcessBus, queue: str, count: int) -> list:
    """What a consumer of ``queue`` on ``bus`` is handed (checked by the queue's own policy): ``count`` messages,
    or what came within a second when ``count`` is 0."""
    done = deliver(bus, queue, lambda messages: None, count or 1, timeout=1.0 if count == 0 else 10.0)
    assert done.reasons == []
    return done.handled


def test_a_nodes_and_an_scs_metrics_go_to_watch_metrics_on_the_cloud_bus_and_not_to_the_clc(keys):
    placed("ins-0000000a", "nc-1")
    node = MetricsReport(host="nc-1", samples=(sample("nc-1", "ins-0000000a"), sample("nc-1")))
    storage = MetricsReport(host="sc-1", samples=(sample("sc-1", name="DiskUsed"),))
    status = InsStatus(insid="ins-0000000a", node="nc-1", seq=1, state="running")
    cloud, _ = relay([(node, keys["nc-1"]), (storage, keys["sc-1"]), (status, keys["nc-1"])])
    assert taken(cloud, WATCH_METRICS, 2) == [node, storage], "relayed as they came, same message ids"
    assert [message.type for message in taken(cloud, CLC_STATUS, 1)] == ["insstatus"]


def test_instance_samples_of_instances_not_placed_on_the_reporting_node_are_left_out(keys):
    placed("ins-0000000a", "nc-1")
    placed("ins-0000000b", "nc-2")
    mine, theirs, unknown = (sample("nc-1", "ins-0000000a"), sample("nc-1", "ins-0000000b"),
                             sample("nc-1", "ins-0000000c"))
    host = sample("nc-1")
    cloud, _ = relay([(MetricsReport(host="nc-1", samples=(mine, theirs, unknown, host)), keys["nc-1"])])
    [relayed] = taken(cloud, WATCH_METRICS, 1)
    assert relayed.samples == (mine, host)


def test_a_report_left_with_no_sample_goes_nowhere(keys):
    placed("ins-0000000b", "nc-2")
    cloud, handled = relay([(MetricsReport(host="nc-1", samples=(sample("nc-1", "ins-0000000b"),)), keys["nc-1"])])
    assert len(handled) == 1
    assert taken(cloud, WATCH_METRICS, 0) == []
    assert taken(cloud, CLC_STATUS, 0) == []
