"""The watch role's consumer of ``watch.metrics`` (issue 17): every sample of a batch of ``metrics`` messages into the
store, 1,000 at a time; a batch delivered again stores nothing twice; a database that fails makes the batch wait on
its queue (``RetryLater``) and loses none of it."""

from __future__ import annotations

import pytest
from django.db import connection

from luhyaapi.bus import InProcessBus, RetryLater
from luhyaapi.messages import MetricsReport
from luhyaapi.metrics import HOST_NAMESPACE, MAX_SAMPLES, MetricSample
from luhyaapi.queues import WATCH_METRICS
from tests.consuming import deliver
from tests.keys import enrolled_key
from watch.consumers.watch_metrics import WatchMetricsConsumer
from watch.models import MetricPoint, MetricRollup
from watch.services.query import get_statistics

pytestmark = [pytest.mark.database]

START = 1_767_225_600


def host_report(host: str, count: int, first: int = 0) -> MetricsReport:
    """``count`` CPU samples of ``host``, one a second from ``START + first``."""
    return MetricsReport(host=host, samples=tuple(
        MetricSample(namespace=HOST_NAMESPACE, name="CPUUtilization", timestamp=START + first + second,
                     dimensions={"HostName": host, "Cluster": "cluster1"}, value=second % 100, unit="Percent")
        for second in range(count)))


@pytest.mark.django_db
def test_a_batch_of_reports_is_stored_whole_and_a_redelivered_one_stores_nothing_twice():
    key = enrolled_key("store", "walrus")
    sent = [host_report("store", MAX_SAMPLES), host_report("store", MAX_SAMPLES, first=MAX_SAMPLES),
            host_report("store", 500, first=2 * MAX_SAMPLES)]
    bus = InProcessBus()
    for report in sent + sent[:1]:
        bus.publish(WATCH_METRICS, report, key=key)
    done = deliver(bus, WATCH_METRICS, WatchMetricsConsumer().consume, len(sent) + 1)
    assert (len(done.handled), done.reasons) == (4, [])
    assert MetricPoint.objects.count() == 2 * MAX_SAMPLES + 500
    [hour] = get_statistics(HOST_NAMESPACE, "CPUUtilization", {"HostName": "store", "Cluster": "cluster1"}, START,
                            START + 3600, 3600, ["SampleCount", "Maximum"], now=START + 3600)
    assert (hour["SampleCount"], hour["Maximum"]) == (2 * MAX_SAMPLES + 500, 99)


@pytest.mark.django_db(transaction=True)
def test_a_database_that_fails_makes_the_batch_wait_and_none_of_it_is_lost():
    reports = [host_report("store", 300), host_report("cc-1", 200)]
    table = MetricRollup._meta.db_table
    with connection.schema_editor() as editor:  # the rollups' table gone: the store fails half-way through a batch
        editor.alter_db_table(MetricRollup, table, table + "_away")
    try:
        with pytest.raises(RetryLater, match="metric store unavailable"):
            WatchMetricsConsumer().consume(reports)
        assert MetricPoint.objects.count() == 0, "the failed batch left nothing half-stored"
    finally:
        with connection.schema_editor() as editor:
            editor.alter_db_table(MetricRollup, table + "_away", table)
    WatchMetricsConsumer().consume(reports)
    assert MetricPoint.objects.count() == 500
    assert MetricRollup.objects.filter(period=300).exists()
