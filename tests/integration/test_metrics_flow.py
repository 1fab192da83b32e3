"""Collection end to end (issue 17), with the daemons' own loops in threads: the node's ``nc-metrics`` sweep puts its
``metrics`` messages on its cluster's status queue, the CC's consumer relays them to ``watch.metrics`` on the cloud's
bus, and the watch's consumer stores them, where ``watch.services.query`` finds them with the labels the run command
gave. A stopped instance and one with monitoring off send nothing; a forged report (another node's samples, another
cluster's node) is parked on the dead-letter queue with the reason. Once on the in-process bus, once on RabbitMQ (two
scratch virtual hosts: the cluster's broker and the cloud's).

The test host is the node, the CC and the watch at once (tests/conf/test.conf: all roles, cluster1); the hypervisor
is a recording driver of counters (the drivers' own counters are proved by their contract tests)."""

from __future__ import annotations

import threading
import time
from contextlib import ExitStack

import pytest
from django.conf import settings

from cc.consumers.cc_status import CcStatusConsumer
from cc.models import ClusterInstance
from cc.services.nodes import NodeStatusRelay
from daemons.metrics import sample_loop
from daemons.worker import Worker
from luhyaapi.bus import InProcessBus, RabbitMQBus
from luhyaapi.hostmetrics import HostSampler
from luhyaapi.messages import MetricsReport
from luhyaapi.metrics import HOST_NAMESPACE, INSTANCE_NAMESPACE, MetricSample
from luhyaapi.queues import WATCH_METRICS, cc_status
from nc.drivers.base import VMMetrics, VMNotFound
from nc.models import NodeInstance
from nc.services import instances
from nc.services.metrics import InstanceSampler, node_sweep
from tests.keys import enrolled_key
from tests.rabbitmq import scratch_vhost
from watch.consumers.watch_metrics import MAX_BATCH, WatchMetricsConsumer
from watch.services.query import get_statistics, list_metrics

pytestmark = [pytest.mark.database, pytest.mark.django_db(transaction=True)]

STATUS = cc_status("cluster1")
RUNNING, STOPPED, UNMONITORED = "ins-0000f001", "ins-0000f002", "ins-0000f003"
LABELS = {"image_id": "img-0000f00a", "owner_group": "edu.school1.class2", "monitoring": True}


class CountingDriver:
    """The node's hypervisor as the sampler asks it: each running VM's counters grow by one CPU second a reading."""

    def __init__(self, running: set[str]) -> None:
        self.running = running
        self.readings: dict[str, int] = {}

    def metrics(self, insid: str) -> VMMetrics:
        if insid not in self.running:
            raise VMNotFound(insid)
        self.readings[insid] = count = self.readings.get(insid, 0) + 1
        return VMMetrics(alive=True, cpu_seconds=count, memory_bytes=2**30, disk_read_bytes=4096 * count)


@pytest.fixture(params=["in-process", pytest.param("rabbitmq", marks=pytest.mark.rabbitmq)])
def buses(request):
    """The cluster's bus and the cloud's."""
    if request.param == "in-process":
        yield InProcessBus(), InProcessBus()
        return
    with ExitStack() as stack:
        cluster, cloud = (RabbitMQBus(stack.enter_context(scratch_vhost()), publish_retry_seconds=30)
                          for _ in range(2))
        yield cluster, cloud
        cluster.close()
        cloud.close()


@pytest.fixture
def node(monkeypatch):
    """This node's instances: one running with its run's labels, one stopped, one running with monitoring off."""
    for insid, state, labels in ((RUNNING, "running", LABELS), (STOPPED, "stopped", LABELS),
                                 (UNMONITORED, "running", LABELS | {"monitoring": False})):
        NodeInstance.objects.create(instance_id=insid, tid=f"t-{insid}", state=state, options={"cpus": 1},
                                    labels=labels)
        ClusterInstance.objects.create(instance_id=insid, node=settings.EDUCLOUD.name, tid=f"t-{insid}", seq=1,
                                       kind="vs", cpus=1, memory_mb=256, state=state)
    driver = CountingDriver({RUNNING, UNMONITORED})
    monkeypatch.setattr(instances, "node_driver", lambda: driver)
    return driver


def run_collection(cluster, cloud, tmp_path) -> tuple[threading.Event, list[Worker]]:
    """The node's sampling loop, the CC's status consumer and the watch's consumer, as ``daemons.roles`` runs them."""
    config, stop = settings.EDUCLOUD, threading.Event()
    sampler, host = InstanceSampler(), HostSampler(tmp_path, config.name, config.cluster, role="nc")
    workers = [
        Worker("nc-metrics", sample_loop(0.2, lambda: node_sweep(sampler, host), cluster, STATUS), stop),
        Worker("cc-status", lambda stop: cluster.consume(STATUS, CcStatusConsumer(NodeStatusRelay(cloud)).consume,
                                                         stop), stop),
        Worker("watch-metrics", lambda stop: cloud.consume(WATCH_METRICS, WatchMetricsConsumer().consume, stop,
                                                           max_batch=MAX_BATCH), stop)]
    for worker in workers:
        worker.start()
    return stop, workers


def wait_for(found, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := found():
            return value
        time.sleep(0.1)
    raise AssertionError(f"not found within {timeout} s")


def wait_dead(bus, queue: str, count: int, timeout: float = 30.0) -> list[str]:
    """The reasons of the first ``count`` messages parked for ``queue``."""
    reasons: list[str] = []
    deadline = time.monotonic() + timeout
    while len(reasons) < count and time.monotonic() < deadline:
        reasons += [letter.reason for letter in bus.take_dead_letters(queue)]
        time.sleep(0.1)
    return reasons


def test_a_nodes_samples_reach_the_store_labelled_and_stopped_or_unmonitored_instances_send_nothing(buses, node,
                                                                                                     tmp_path):
    cluster, cloud = buses
    stop, workers = run_collection(cluster, cloud, tmp_path)
    try:
        cpu = wait_for(lambda: list_metrics(INSTANCE_NAMESPACE, "CPUUtilization", {"InstanceId": RUNNING}))
        wait_for(lambda: list_metrics(HOST_NAMESPACE, "CPUUtilization", {"HostName": settings.EDUCLOUD.name}))
    finally:
        stop.set()
        for worker in workers:
            worker.join(timeout=15)
    name, cluster_name = settings.EDUCLOUD.name, settings.EDUCLOUD.cluster
    dimensions = {"InstanceId": RUNNING, "NodeName": name, "Cluster": cluster_name, "ImageId": "img-0000f00a",
                  "OwnerGroup": "edu.school1.class2"}
    assert cpu == [{"namespace": INSTANCE_NAMESPACE, "name": "CPUUtilization", "dimensions": dimensions,
                    "unit": "Percent"}]
    assert {row["name"] for row in list_metrics(INSTANCE_NAMESPACE, dimensions={"InstanceId": RUNNING})} == {
        "CPUUtilization", "MemoryUsed", "Alive", "DiskReadBytes", "DiskWriteBytes", "NetworkIn", "NetworkOut"}
    now = time.time()
    [alive] = get_statistics(INSTANCE_NAMESPACE, "Alive", dimensions, now - 3600, now + 60, 3600, ["Minimum"])
    assert alive["Minimum"] == 1
    assert list_metrics(dimensions={"InstanceId": STOPPED}) == []
    assert list_metrics(dimensions={"InstanceId": UNMONITORED}) == []
    assert UNMONITORED not in node.readings, "monitoring off: its VM is not even read"
    [host] = list_metrics(HOST_NAMESPACE, "MemoryTotal")
    assert host["dimensions"] == {"HostName": name, "Cluster": cluster_name, "Role": "nc"}
    assert cluster.take_dead_letters(STATUS) == [] and cloud.take_dead_letters(WATCH_METRICS) == []


def forged(host: str, node: str, cluster: str = "cluster1") -> MetricsReport:
    return MetricsReport(host=host, samples=(MetricSample(
        namespace=INSTANCE_NAMESPACE, name="Alive", timestamp=time.time(), value=0,
        dimensions={"InstanceId": RUNNING, "NodeName": node, "Cluster": cluster}),))


def test_forged_reports_end_on_the_dead_letter_queue_with_why_and_store_nothing(buses, tmp_path, monkeypatch):
    monkeypatch.setattr(instances, "node_driver", lambda: CountingDriver(set()))  # a node running nothing
    cluster, cloud = buses
    keys = {"nc-2": enrolled_key("nc-2"), "nc-9": enrolled_key("nc-9", cluster="cluster2")}
    stop, workers = run_collection(cluster, cloud, tmp_path)
    try:
        name = settings.EDUCLOUD.name
        cluster.publish(STATUS, forged(name, name), key=keys["nc-2"])  # in another node's name
        cluster.publish(STATUS, forged("nc-2", name), key=keys["nc-2"])  # of another node's instance
        cluster.publish(STATUS, forged("nc-9", "nc-9", "cluster2"), key=keys["nc-9"])  # another cluster's node
        cloud.publish(WATCH_METRICS, forged("nc-2", "nc-2"), key=keys["nc-2"])  # past its CC
        status_reasons = wait_dead(cluster, STATUS, 3)
        watch_reasons = wait_dead(cloud, WATCH_METRICS, 1)
    finally:
        stop.set()
        for worker in workers:
            worker.join(timeout=15)
    assert status_reasons == [f"refused: the metrics are of {name}, not nc-2",
                              f"refused: a sample of eduCloud/Instance Alive is about {name}, not nc-2",
                              "refused: nc-9 is enrolled in cluster cluster2, not cluster1"]
    assert watch_reasons == ["refused: nc-2 may send its own host metrics only, not eduCloud/Instance"]
    assert list_metrics(INSTANCE_NAMESPACE, "Alive") == []
