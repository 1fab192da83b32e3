"""Metric store benchmark: what storing a batch of 1,000 samples costs (``watch.services.store.store``: series
look-up, duplicate check, raw points, 5-minute and 1-hour rollups merged, one transaction), against a plain
``bulk_create`` of the same 1,000 raw point rows in its own transaction, interleaved batch by batch in the same
minute, on SQLite and on MariaDB.

The load is ``--instances`` instances (default 10,000) with the nine instance metrics each (``INSTANCE_METRICS``),
one sample a minute: 1,500 metric points a second for 10,000 instances. A first minute makes the series (its
batches are timed apart: they make 1,000 series each); then ``--minutes`` minutes of samples are stored in batches
of ``--batch`` samples, each followed by the reference: the same rows bulk-created as raw points (their times moved
by a millisecond, so they are other rows of the same table and its indexes grow alike).

Each database runs in a child process of its own (Django binds its database at start): SQLite in a fresh file of a
temporary data dir, MariaDB in a fresh database at ``--mysql-url`` (dropped afterwards). ``--query`` also times the
cluster-wide 24-hour 5-minute average (``get_aggregate_statistics``) after filling a day of 5-minute rollups
directly (288 rows per series), from the cluster's own rollups and by grouping every instance's.

Prints per database: points/s stored and the batch time's median and 90th percentile, the reference's, their ratio,
and the headroom over the load. Run from the repository root:

    .venv/bin/python bench/watch_store.py
    .venv/bin/python bench/watch_store.py --database mysql --instances 2000 --minutes 2 --query
"""

from __future__ import annotations

import random
import statistics
import sys
import time
from pathlib import Path

from databases import django_child, per_database_parser, run_each, serve_child

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

T0 = 1_767_225_600  # an hour's start: the synthetic samples' first minute


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


# --- the child: one database ---------------------------------------------------------------------------------------

def child(database_url: str, data_dir: str, instances: int, minutes: int, batch: int, query: bool) -> dict:
    django_child(database_url, data_dir)
    from django.db import transaction

    from luhyaapi.metrics import INSTANCE_METRICS, INSTANCE_NAMESPACE, MetricSample
    from watch.models import MetricPoint, MetricSeries
    from watch.services.store import store

    rng = random.Random(17)
    dimensions = [{"InstanceId": f"ins-{n:08x}", "Cluster": f"c{n % 4}", "NodeName": f"nc-{n % 200:03d}",
                   "ImageId": f"img-{n % 20:08x}", "OwnerGroup": f"edu.s{n % 50}.c{n % 7}"} for n in range(instances)]

    def minute_samples(minute: int) -> list[MetricSample]:
        return [MetricSample(namespace=INSTANCE_NAMESPACE, name=name, dimensions=dims, unit=unit,
                             timestamp=T0 + 60 * minute + rng.uniform(0, 59.999), value=rng.uniform(0, 100))
                for dims in dimensions for name, unit in INSTANCE_METRICS.items()]

    def timed_store(samples: list[MetricSample]) -> float:
        started = time.perf_counter()
        assert store(samples) == len(samples)
        return time.perf_counter() - started

    first = minute_samples(0)
    creating = [timed_store(first[at:at + batch]) for at in range(0, len(first), batch)]
    ids = {(name, dims["InstanceId"]): series_id
           for series_id, name, dims in MetricSeries.objects.values_list("id", "name", "dimensions")}
    stored, reference = [], []
    for minute in range(1, minutes + 1):
        samples = minute_samples(minute)
        for at in range(0, len(samples), batch):
            chunk = samples[at:at + batch]
            stored.append(timed_store(chunk))
            rows = [MetricPoint(series_id=ids[s.name, s.dimensions["InstanceId"]], time=s.timestamp + 0.001,
                                value=s.value) for s in chunk]
            started = time.perf_counter()
            with transaction.atomic():
                MetricPoint.objects.bulk_create(rows)
            reference.append(time.perf_counter() - started)

    result = {"database": database_url.split(":")[0], "instances": instances, "series": len(ids),
              "batch": batch, "batches": len(stored), "load_points_per_s": len(ids) / 60,
              "create_points_per_s": len(first) / sum(creating),
              "store_points_per_s": batch * len(stored) / sum(stored),
              "store_batch_ms_p50": 1000 * statistics.median(stored),
              "store_batch_ms_p90": 1000 * percentile(stored, .9),
              "reference_points_per_s": batch * len(reference) / sum(reference),
              "reference_batch_ms_p50": 1000 * statistics.median(reference)}
    if query:
        result |= _query(ids, instances)
    return result


def fill_rollups(ids, instances) -> tuple[int, dict]:
    """A day of 5-minute CPU rollups for every instance and for each cluster, written directly as the store would
    have merged them (288 a series), apart from the rollups the store made. Returns the day's start and
    ``rollup_rows_filled``, ``fill_s``."""
    from luhyaapi.metrics import INSTANCE_NAMESPACE
    from watch.models import DimensionRollup, MetricRollup, RollupPeriod

    cpu = [series_id for (name, _), series_id in ids.items() if name == "CPUUtilization"]
    day = T0 + 3600 + 86400  # a day after the first hour, apart from the rollups the store made
    steps = range(288)
    rows = [MetricRollup(series_id=series_id, period=RollupPeriod.FIVE_MINUTES, start=day + 300 * step, minimum=1.0,
                         maximum=2.0, total=3.0, count=2) for series_id in cpu for step in steps]
    clusters = [DimensionRollup(namespace=INSTANCE_NAMESPACE, name="CPUUtilization", dimension="Cluster",
                                value=f"c{cluster}", period=RollupPeriod.FIVE_MINUTES, start=day + 300 * step,
                                minimum=1.0, maximum=2.0, total=3.0 * len(range(cluster, instances, 4)),
                                count=2 * len(range(cluster, instances, 4))) for cluster in range(4) for step in steps]
    started = time.perf_counter()
    MetricRollup.objects.bulk_create(rows, batch_size=5000)
    DimensionRollup.objects.bulk_create(clusters)
    return day, {"rollup_rows_filled": len(rows), "fill_s": time.perf_counter() - started}


def cluster_average_timings(day: int, instances: int, repeat: int = 5) -> dict:
    """The cluster-wide 24-hour 5-minute average of the instances of cluster c1 (a quarter of them) over the day
    ``fill_rollups`` wrote, ``repeat`` times each way: from the cluster's own rollups (``{"Cluster": "c1"}``), and
    grouping every instance's rollups (``{"Cluster": "c1", "InstanceId": None}``: the same instances, a filter the
    cluster's rollups do not answer). Median and quickest of each, in ms."""
    from luhyaapi.metrics import INSTANCE_NAMESPACE
    from watch.services.query import get_aggregate_statistics

    result = {}
    for label, dimensions in (("cluster_rollups", {"Cluster": "c1"}),
                              ("every_series", {"Cluster": "c1", "InstanceId": None})):
        timings = []
        for _ in range(repeat):
            started = time.perf_counter()
            points = get_aggregate_statistics(INSTANCE_NAMESPACE, "CPUUtilization", dimensions, day, day + 86400,
                                              300, ["Average", "SampleCount"], now=day + 86400)
            timings.append(time.perf_counter() - started)
        assert len(points) == 288 and points[0]["SampleCount"] == 2 * len(range(1, instances, 4)), points[0]
        result |= {f"{label}_ms_median": 1000 * statistics.median(timings), f"{label}_ms_min": 1000 * min(timings)}
    return result


def _query(ids, instances) -> dict:
    day, result = fill_rollups(ids, instances)
    return result | cluster_average_timings(day, instances)


# --- the parent: a child per database, then the table ------------------------------------------------------------

def report(result: dict) -> None:
    print(f"\n{result['database']}: {result['instances']} instances, {result['series']} series, load "
          f"{result['load_points_per_s']:.0f} points/s; {result['batches']} batches of {result['batch']}")
    print(f"  first minute (makes the series): {result['create_points_per_s']:8.0f} points/s")
    print(f"  store:      {result['store_points_per_s']:8.0f} points/s  (batch p50 {result['store_batch_ms_p50']:.1f} "
          f"ms, p90 {result['store_batch_ms_p90']:.1f} ms)")
    print(f"  reference:  {result['reference_points_per_s']:8.0f} points/s  (plain bulk_create of the same rows, "
          f"batch p50 {result['reference_batch_ms_p50']:.1f} ms)")
    print(f"  ratio store/reference time: {result['reference_points_per_s'] / result['store_points_per_s']:.2f}; "
          f"headroom over the load: {result['store_points_per_s'] / result['load_points_per_s']:.1f}x")
    if "cluster_rollups_ms_median" in result:
        print(f"  cluster-wide 24 h 5-minute average ({result['rollup_rows_filled']} instance rollup rows stored):")
        print(f"    from the cluster's rollups:      median {result['cluster_rollups_ms_median']:6.1f} ms, best "
              f"{result['cluster_rollups_ms_min']:6.1f} ms")
        print(f"    grouping every instance's:       median {result['every_series_ms_median']:6.1f} ms, best "
              f"{result['every_series_ms_min']:6.1f} ms")


def main() -> None:
    if serve_child(child):
        return
    parser = per_database_parser(__doc__)
    parser.add_argument("--minutes", type=int, default=2)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--query", action="store_true")
    args = parser.parse_args()
    run_each(__file__, args, {"instances": args.instances, "minutes": args.minutes, "batch": args.batch,
                              "query": args.query}, report)


if __name__ == "__main__":
    main()
