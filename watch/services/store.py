"""Writing metric samples into the watch role's store in batches, and purging what is past its retention.

A batch costs a fixed handful of statements whatever its size (up to ``MAX_SAMPLES``): one look-up of its series
(plus three more the first time a series is seen), one look-up of the points it might repeat, one multi-row insert
of its points, and per rollup period two upserts (the series' buckets, the aggregated dimensions' buckets) that merge
the batch's buckets into the stored ones in the database (so two writers merging into one bucket cannot lose each
other's counts). docs/watch.md has the figures.
"""

from __future__ import annotations

import hashlib
import logging
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from django.conf import settings
from django.db import connection, transaction

from luhyaapi.metrics import AGGREGATED_DIMENSIONS, MetricSample, dimensions_key
from watch.models import DimensionRollup, MetricPoint, MetricRollup, MetricSeries, RollupPeriod, SeriesDimension

logger = logging.getLogger(__name__)

DAY = 86400
# Series and rollup rows per statement of the purge: small enough that neither database holds a long lock.
PURGE_SERIES_CHUNK = 200
# Rows per statement of the rollup upserts (at most 10 parameters each: under SQLite's and MariaDB's limits).
UPSERT_CHUNK = 500


def dimensions_hash(key: str) -> str:
    """The SHA-256 (hex) of a dimensions key: what the series' unique index holds instead of the long key."""
    return hashlib.sha256(key.encode()).hexdigest()


@dataclass
class _Bucket:
    minimum: float
    maximum: float
    total: float
    count: int

    def add(self, value: float) -> None:
        self.minimum = min(self.minimum, value)
        self.maximum = max(self.maximum, value)
        self.total += value
        self.count += 1

    def merge(self, other: _Bucket) -> None:
        self.minimum = min(self.minimum, other.minimum)
        self.maximum = max(self.maximum, other.maximum)
        self.total += other.total
        self.count += other.count


def store(samples: list[MetricSample]) -> int:
    """Store a batch of samples in one transaction: their series (made when new, with the first sample's unit),
    their raw points, their 5-minute and 1-hour rollups, and those of every value of an aggregated dimension
    (``AGGREGATED_DIMENSIONS``: all instances of a cluster). Returns how many points were stored: a sample whose
    series already has a point at its time (a batch delivered again, or the same sample twice) is left out, so a
    redelivered batch changes nothing. Samples may arrive in any order and late: a rollup bucket is merged with
    what it held.

    Raises ``django.db.Error`` when the database fails (nothing of the batch is kept: the caller retries it); an
    ``IntegrityError`` when another writer stored one of the same points at the same moment, after which a retry
    stores the rest."""
    if not samples:
        return 0
    keys = [(sample.namespace, sample.name, dimensions_key(sample.dimensions)) for sample in samples]
    with transaction.atomic():
        series_ids = _series_ids(samples, keys)
        points = _new_points(samples, [series_ids[key] for key in keys])
        MetricPoint.objects.bulk_create(points)
        aggregated = {series_ids[key]: [(sample.namespace, sample.name, dimension, value)
                                        for dimension, value in sample.dimensions.items()
                                        if dimension in AGGREGATED_DIMENSIONS]
                      for sample, key in zip(samples, keys, strict=True)}
        for period in RollupPeriod:
            buckets = _rollups(points, period)
            _merge(MetricRollup, ("series", "period", "start"),
                   [(series_id, period, start, bucket) for (series_id, start), bucket in buckets.items()])
            _merge(DimensionRollup, ("namespace", "name", "dimension", "value", "period", "start"),
                   [(*key, period, start, bucket) for (key, start), bucket in _across(buckets, aggregated).items()])
    return len(points)


def _series_ids(samples: list[MetricSample], keys: list[tuple[str, str, str]]) -> dict[tuple[str, str, str], int]:
    """(namespace, name, dimensions key) -> series id for every sample, making the missing series and their
    dimension rows. One query when every series exists; three more when some are new."""
    wanted: dict[tuple[str, str, str], MetricSample] = {}
    for sample, key in zip(samples, keys, strict=True):
        wanted.setdefault(key, sample)
    hashes = {dimensions_hash(key) for _, _, key in wanted}
    found = _find_series(hashes, wanted)
    missing = [key for key in wanted if key not in found]
    if missing:
        MetricSeries.objects.bulk_create(
            [MetricSeries(namespace=namespace, name=name, dimensions=first.dimensions, dimensions_key=key,
                          dimensions_hash=dimensions_hash(key), unit=first.unit)
             for namespace, name, key in missing for first in [wanted[namespace, name, key]]],
            ignore_conflicts=True)  # another writer may make the same series meanwhile: either row is the series
        made = _find_series({dimensions_hash(key) for _, _, key in missing}, {key: wanted[key] for key in missing})
        SeriesDimension.objects.bulk_create(
            [SeriesDimension(series_id=series_id, name=name, value=value)
             for key, series_id in made.items() for name, value in wanted[key].dimensions.items()],
            ignore_conflicts=True)
        found.update(made)
    return found


def _find_series(hashes: set[str], wanted: dict) -> dict[tuple[str, str, str], int]:
    """The ids of the wanted series among those with one of these dimension hashes (an instance's dimensions are
    shared by all its metrics, so the hashes of a batch are few and each finds a handful of series)."""
    rows = MetricSeries.objects.filter(dimensions_hash__in=hashes).values_list(
        "namespace", "name", "dimensions_key", "id")
    return {(namespace, name, key): series_id for namespace, name, key, series_id in rows
            if (namespace, name, key) in wanted}


def _new_points(samples: list[MetricSample], series_ids: list[int]) -> list[MetricPoint]:
    """The batch's points that their series do not have yet (first of a time wins within the batch too)."""
    candidates: dict[tuple[int, float], float] = {}
    for sample, series_id in zip(samples, series_ids, strict=True):
        candidates.setdefault((series_id, sample.timestamp), sample.value)
    times = [time for _, time in candidates]
    stored = set(MetricPoint.objects.filter(
        series_id__in=set(series_ids), time__gte=min(times), time__lte=max(times),
    ).values_list("series_id", "time"))
    return [MetricPoint(series_id=series_id, time=time, value=value)
            for (series_id, time), value in candidates.items() if (series_id, time) not in stored]


def _rollups(points: Iterable[MetricPoint], period: int) -> dict[tuple[int, int], _Bucket]:
    """The batch's own statistics per (series, bucket start) of ``period``."""
    buckets: dict[tuple[int, int], _Bucket] = {}
    for point in points:
        key = (point.series_id, int(point.time // period) * period)
        if bucket := buckets.get(key):
            bucket.add(point.value)
        else:
            buckets[key] = _Bucket(point.value, point.value, point.value, 1)
    return buckets


def _across(buckets: dict[tuple[int, int], _Bucket],
            aggregated: dict[int, list[tuple[str, str, str, str]]]) -> dict[tuple[tuple, int], _Bucket]:
    """The series' buckets merged per (namespace, name, aggregated dimension, value) and start."""
    merged: dict[tuple[tuple, int], _Bucket] = {}
    for (series_id, start), bucket in buckets.items():
        for key in aggregated[series_id]:
            if into := merged.get((key, start)):
                into.merge(bucket)
            else:
                merged[key, start] = _Bucket(bucket.minimum, bucket.maximum, bucket.total, bucket.count)
    return merged


def _merge(model, key_fields: tuple[str, ...], rows: list[tuple]) -> None:
    """Add buckets (rows of the key fields' values and a _Bucket) to the stored ones of ``model`` in the database
    itself: an upsert per chunk that inserts a bucket or merges min, max, sum and count into the row already there,
    so that concurrent batches both count."""
    if not rows:
        return
    ops = connection.ops
    meta = model._meta
    column = {name: ops.quote_name(meta.get_field(name).column)
              for name in (*key_fields, "minimum", "maximum", "total", "count")}
    if connection.vendor == "mysql":
        def new(name: str) -> str:
            return f"VALUES({column[name]})"
        conflict = "ON DUPLICATE KEY UPDATE"
        least, greatest = "LEAST", "GREATEST"
    else:
        def new(name: str) -> str:
            return f"excluded.{column[name]}"
        conflict = f"ON CONFLICT ({', '.join(column[name] for name in key_fields)}) DO UPDATE SET"
        least, greatest = "MIN", "MAX"
    merge = (f"{column['minimum']} = {least}({column['minimum']}, {new('minimum')}), "
             f"{column['maximum']} = {greatest}({column['maximum']}, {new('maximum')}), "
             f"{column['total']} = {column['total']} + {new('total')}, "
             f"{column['count']} = {column['count']} + {new('count')}")
    placeholders = "(" + ", ".join(["%s"] * len(column)) + ")"
    sql = f"INSERT INTO {ops.quote_name(meta.db_table)} ({', '.join(column.values())}) VALUES "
    with connection.cursor() as cursor:
        for first in range(0, len(rows), UPSERT_CHUNK):
            chunk = rows[first:first + UPSERT_CHUNK]
            cursor.execute(f"{sql}{', '.join([placeholders] * len(chunk))} {conflict} {merge}",
                           [value for *key, bucket in chunk
                            for value in (*key, bucket.minimum, bucket.maximum, bucket.total, bucket.count)])


def purge(now: float) -> dict[str, int]:
    """Delete the raw points older than ``watch.raw_days`` before ``now`` (epoch seconds), and the 5-minute and
    1-hour rollups (of series and of aggregated dimensions) older than ``watch.rollup_5m_days`` and
    ``watch.rollup_1h_days``. Deletes a few series at a time through the (series, time) and (series, period,
    start) indexes, so that no statement holds the tables long while batches keep arriving. Returns how many rows
    of each it deleted (``raw``, ``5m``, ``1h``)."""
    config = settings.EDUCLOUD
    raw_before = now - config.watch_raw_days * DAY
    rollup_before = {RollupPeriod.FIVE_MINUTES: now - config.watch_rollup_5m_days * DAY,
                     RollupPeriod.ONE_HOUR: now - config.watch_rollup_1h_days * DAY}
    deleted: dict[str, int] = defaultdict(int)
    series_ids = list(MetricSeries.objects.order_by("id").values_list("id", flat=True))
    for first in range(0, len(series_ids), PURGE_SERIES_CHUNK):
        chunk = series_ids[first:first + PURGE_SERIES_CHUNK]
        deleted["raw"] += MetricPoint.objects.filter(series_id__in=chunk, time__lt=raw_before).delete()[0]
        for period, before in rollup_before.items():
            deleted["5m" if period == RollupPeriod.FIVE_MINUTES else "1h"] += MetricRollup.objects.filter(
                series_id__in=chunk, period=period, start__lt=before).delete()[0]
    for period, before in rollup_before.items():
        deleted["5m" if period == RollupPeriod.FIVE_MINUTES else "1h"] += DimensionRollup.objects.filter(
            period=period, start__lt=before).delete()[0]
    logger.info("purged %d raw points, %d 5-minute and %d 1-hour rollups", deleted["raw"], deleted["5m"],
                deleted["1h"])
    return {"raw": deleted["raw"], "5m": deleted["5m"], "1h": deleted["1h"]}
