"""Which host runs which loop of the collection (issue 17, ``daemons.roles``): a node ``nc-metrics`` (its instances
and itself, on its cluster's status queue, as its heartbeat), every other host ``host-metrics`` (an SC's on its
cluster's status queue for its CC to relay, any other's on ``watch.metrics``), a watch host the ``watch-metrics``
consumer; and a host's loop whose samples the watch's queue takes and the watch stores."""

from __future__ import annotations

import threading

import pytest

from daemons.metrics import host_role, host_sweep, metrics_queue, sample_loop
from daemons.roles import build_workers
from daemons.worker import Worker
from luhyaapi.bus import InProcessBus
from luhyaapi.config import load_config
from luhyaapi.hostmetrics import HostSampler
from luhyaapi.metrics import HOST_NAMESPACE
from luhyaapi.queues import WATCH_METRICS, cc_status
from nc import tasks
from tests.consuming import deliver
from watch.consumers.watch_metrics import WatchMetricsConsumer
from watch.services.query import list_metrics


def host_config(tmp_path, roles: str):
    return load_config({"EDUCLOUD_HOST_NAME": "host-1", "EDUCLOUD_ROLES": roles, "EDUCLOUD_HOST_CLUSTER": "lab",
                        "EDUCLOUD_HOST_DATA_DIR": str(tmp_path), "EDUCLOUD_CLOUD_CLC_URL": "http://10.0.0.1:8000",
                        "EDUCLOUD_CLOUD_CC_URL": "http://10.0.0.2:8000",
                        "EDUCLOUD_HOST_PEER_CONFIG_DIR": "/nonexistent"})


@pytest.mark.parametrize("roles, loops, absent", [
    ("nc", {"nc-metrics"}, {"host-metrics", "watch-metrics"}),
    ("walrus", {"host-metrics"}, {"nc-metrics", "watch-metrics"}),
    ("watch", {"host-metrics", "watch-metrics"}, {"nc-metrics"}),
    ("clc,walrus,cc,nc,sc,watch", {"nc-metrics", "watch-metrics"}, {"host-metrics"}),
])
def test_each_host_runs_the_collection_loops_of_its_roles(tmp_path, monkeypatch, roles, loops, absent):
    monkeypatch.setattr(tasks, "_reporter", tasks._reporter)  # a node's workers set it: back as it was afterwards
    names = {worker.name for worker in build_workers(host_config(tmp_path, roles), threading.Event())[0]}
    assert loops <= names and not absent & names


@pytest.mark.parametrize("roles, queue, role", [
    ("sc", cc_status("lab"), "sc"),
    ("walrus", WATCH_METRICS, "walrus"),
    ("clc,watch,walrus", WATCH_METRICS, "clc-walrus-watch"),
    ("cc,sc", cc_status("lab"), "cc-sc"),
])
def test_a_host_without_a_node_sends_its_samples_where_it_reports_with_its_roles(tmp_path, roles, queue, role):
    config = host_config(tmp_path, roles)
    assert (metrics_queue(config), host_role(config)) == (queue, role)


@pytest.mark.database
@pytest.mark.django_db(transaction=True)
def test_a_hosts_loop_puts_its_samples_on_watch_metrics_which_takes_and_stores_them(settings, tmp_path):
    config, bus, stop = settings.EDUCLOUD, InProcessBus(), threading.Event()
    sampler = HostSampler(tmp_path, config.name, config.cluster, role=host_role(config))
    loop = Worker("host-metrics", sample_loop(0.1, lambda: host_sweep(sampler, config.name), bus, WATCH_METRICS),
                  stop)
    loop.start()
    try:
        done = deliver(bus, WATCH_METRICS, WatchMetricsConsumer().consume, 2)
    finally:
        stop.set()
        loop.join(timeout=10)
    assert (len(done.handled), done.reasons) == (2, [])
    names = {row["name"] for row in list_metrics(HOST_NAMESPACE, dimensions={"HostName": config.name})}
    assert names == {"CPUUtilization", "MemoryUsed", "MemoryTotal", "DiskUsed", "DiskTotal", "NetworkIn",
                     "NetworkOut", "LoadAverage"}, "the second sample brings CPU and network"
