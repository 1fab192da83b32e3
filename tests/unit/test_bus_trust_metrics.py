"""Who may put ``metrics`` messages where (``luhyaapi.bus_trust``, issue 17): on a cluster's status queue its nodes,
PCs and SCs, each its own samples in that cluster (a node's of its instances too); on ``watch.metrics`` any trusted
host its own host samples, and a CC those of a node or SC of its own cluster. Each refusal is parked with its reason
and never reaches the consumer. Through the in-process bus, with the real policies and trust records."""

from __future__ import annotations

import pytest

from luhyaapi.bus import InProcessBus
from luhyaapi.messages import MetricsReport
from luhyaapi.metrics import HOST_NAMESPACE, INSTANCE_NAMESPACE, MetricSample
from luhyaapi.queues import WATCH_METRICS, cc_status
from luhyadb.choices import KeyStateChoices
from luhyadb.models import HostCredential
from tests.consuming import deliver
from tests.keys import enrolled_key, new_key

pytestmark = [pytest.mark.database, pytest.mark.django_db]

STATUS = cc_status("cluster1")
PC_12 = "52:54:00:3c:0f:12"


def host_sample(host: str, cluster: str = "cluster1", name: str = "CPUUtilization") -> MetricSample:
    return MetricSample(namespace=HOST_NAMESPACE, name=name, dimensions={"HostName": host, "Cluster": cluster},
                        timestamp=1000.0, value=12.5, unit="Percent")


def instance_sample(node: str, cluster: str = "cluster1", insid: str = "ins-0000000a") -> MetricSample:
    return MetricSample(namespace=INSTANCE_NAMESPACE, name="CPUUtilization", timestamp=1000.0, value=50.0,
                        dimensions={"InstanceId": insid, "NodeName": node, "Cluster": cluster}, unit="Percent")


def custom_sample(host: str) -> MetricSample:
    return MetricSample(namespace="Custom/lab", name="Temperature", timestamp=1000.0, value=40.0,
                        dimensions={"HostName": host, "Cluster": "cluster1"})


def report(host: str, *samples: MetricSample) -> MetricsReport:
    return MetricsReport(host=host, samples=samples)


@pytest.fixture
def hosts():
    return {"nc-1": enrolled_key("nc-1"), "nc-9": enrolled_key("nc-9", cluster="cluster2"),
            "sc-1": enrolled_key("sc-1", "sc"), "store": enrolled_key("store", "walrus"),
            "pc-12": enrolled_key("pc-12", "pc", mac=PC_12), "cc-1": enrolled_key("cc-1", "cc"),
            "cc-2": enrolled_key("cc-2", "cc", cluster="cluster2")}


def put(queue: str, message: MetricsReport, key) -> tuple[list, list[str]]:
    """Put ``message`` on ``queue`` sealed by ``key`` and consume it: what was handed over, and why it was parked."""
    bus = InProcessBus()
    bus.publish(queue, message, key=key)
    done = deliver(bus, queue, lambda messages: None, 1)
    return done.handled, done.reasons


@pytest.mark.parametrize("message, sender", [
    (report("nc-1", instance_sample("nc-1"), host_sample("nc-1")), "nc-1"),
    (report("pc-12", instance_sample("pc-12"), host_sample("pc-12")), "pc-12"),
    (report("sc-1", host_sample("sc-1", name="DiskUsed")), "sc-1"),
])
def test_a_clusters_host_puts_its_own_samples_on_its_clusters_status_queue(hosts, message, sender):
    assert put(STATUS, message, hosts[sender]) == ([message], [])


@pytest.mark.parametrize("message, sender, reason", [
    (report("nc-2", instance_sample("nc-2")), "nc-1", "the metrics are of nc-2, not nc-1"),
    (report("nc-1", instance_sample("nc-2")), "nc-1",
     "a sample of eduCloud/Instance CPUUtilization is about nc-2, not nc-1"),
    (report("nc-1", host_sample("sc-1")), "nc-1", "a sample of eduCloud/Host CPUUtilization is about sc-1, not nc-1"),
    (report("nc-1", instance_sample("nc-1", cluster="cluster2")), "nc-1",
     "a sample of eduCloud/Instance CPUUtilization is of cluster cluster2, not cluster1"),
    (report("nc-9", instance_sample("nc-9")), "nc-9", "nc-9 is enrolled in cluster cluster2, not cluster1"),
    (report("sc-1", instance_sample("sc-1")), "sc-1", "sc-1 may send its own host metrics only, not eduCloud/Instance"),
    (report("nc-1", custom_sample("nc-1")), "nc-1",
     "nc-1 may send its own host or instance metrics only, not Custom/lab"),
    (report("store", host_sample("store")), "store",
     "store (walrus) may not put a metrics message on cc.status.<cluster>"),
])
def test_metrics_a_host_may_not_put_on_a_clusters_status_queue_are_parked_with_why(hosts, message, sender, reason):
    assert put(STATUS, message, hosts[sender]) == ([], [f"refused: {reason}"])


@pytest.mark.parametrize("message, sender", [
    (report("store", host_sample("store")), "store"),
    (report("cc-1", host_sample("cc-1")), "cc-1"),
    (report("nc-9", host_sample("nc-9", cluster="cluster2")), "nc-9"),
    (report("nc-1", instance_sample("nc-1"), host_sample("nc-1")), "cc-1"),
    (report("sc-1", host_sample("sc-1")), "cc-1"),
    (report("pc-12", instance_sample("pc-12")), "cc-1"),
    (report("nc-9", instance_sample("nc-9", cluster="cluster2")), "cc-2"),
])
def test_a_host_puts_its_own_host_samples_and_a_cc_its_clusters_on_watch_metrics(hosts, message, sender):
    assert put(WATCH_METRICS, message, hosts[sender]) == ([message], [])


@pytest.mark.parametrize("message, sender, reason", [
    (report("store", instance_sample("store")), "store",
     "store may send its own host metrics only, not eduCloud/Instance"),
    (report("nc-1", instance_sample("nc-1")), "nc-1", "nc-1 may send its own host metrics only, not eduCloud/Instance"),
    (report("store", host_sample("nc-1")), "store",
     "a sample of eduCloud/Host CPUUtilization is about nc-1, not store"),
    (report("store", host_sample("store", cluster="cluster2")), "store",
     "a sample of eduCloud/Host CPUUtilization is of cluster cluster2, not cluster1"),
    (report("store", custom_sample("store")), "store", "store may send its own host metrics only, not Custom/lab"),
    (report("nc-2", host_sample("nc-2")), "nc-1", "the metrics are of nc-2, not nc-1"),
    (report("nc-9", instance_sample("nc-9", cluster="cluster2")), "cc-1",
     "cc-1 relays cluster cluster1, and nc-9 is in cluster cluster2"),
    (report("nc-1", instance_sample("nc-2")), "cc-1",
     "a sample of eduCloud/Instance CPUUtilization is about nc-2, not nc-1"),
    (report("nc-1", instance_sample("nc-1", cluster="cluster2")), "cc-1",
     "a sample of eduCloud/Instance CPUUtilization is of cluster cluster2, not cluster1"),
    (report("sc-1", instance_sample("sc-1")), "cc-1", "sc-1 may send its own host metrics only, not eduCloud/Instance"),
    (report("store", host_sample("store")), "cc-1",
     "a CC relays the metrics of its cluster's nodes and SCs only, not of store"),
    (report("nc-5", host_sample("nc-5")), "cc-1",
     "nc-5 is not a trusted host of this cloud (unknown, or its key was revoked)"),
])
def test_metrics_a_host_may_not_put_on_watch_metrics_are_parked_with_why(hosts, message, sender, reason):
    assert put(WATCH_METRICS, message, hosts[sender]) == ([], [f"refused: {reason}"])


def test_a_revoked_node_s_metrics_are_refused_on_both_queues_even_relayed_by_its_cc(hosts):
    HostCredential.objects.filter(name="nc-1").update(state=KeyStateChoices.REVOKED)
    message = report("nc-1", instance_sample("nc-1"))
    unknown = "nc-1 is not a trusted host of this cloud (unknown, or its key was revoked)"
    assert put(STATUS, message, hosts["nc-1"]) == ([], [f"refused: {unknown}"])
    assert put(WATCH_METRICS, message, hosts["cc-1"]) == ([], [f"refused: {unknown}"])
    assert put(WATCH_METRICS, report("nc-7", host_sample("nc-7")), new_key("nc-7")) == (
        [], ["refused: nc-7 is not a trusted host of this cloud (unknown, or its key was revoked)"])
