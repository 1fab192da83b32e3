"""Reading the metric store in CloudWatch's terms: list the metrics, and the statistics of one series, or of every
series that matches a dimension filter, per period over a time range.

Each query reads one source, chosen by its period: the 1-hour rollups when the period is a multiple of 3600, the
5-minute rollups when it is a multiple of 300, else the raw points. A rollup equals what its raw points give, so
the choice changes the cost, never the answer; it only narrows what can be asked of old ranges: raw points are kept
``watch.raw_days``, 5-minute rollups ``watch.rollup_5m_days``, so a range older than that needs a period that a
coarser source divides. Times are epoch seconds. The range is widened to the source's granularity (60 s for raw
points): a datapoint's timestamp is the start of its period, counted from the range's start rounded down.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from django.conf import settings
from django.db.models import (
    Count,
    Exists,
    F,
    FloatField,
    Func,
    IntegerField,
    Max,
    Min,
    OuterRef,
    Q,
    QuerySet,
    Sum,
    Value,
)
from django.db.models.expressions import ExpressionWrapper
from pydantic import ValidationError

from luhyaapi.metric_params import MAX_LIST
from luhyaapi.metrics import (
    AGGREGATED_DIMENSIONS,
    DIMENSION_NAME_ADAPTER,
    DIMENSION_VALUE_ADAPTER,
    MAX_DATAPOINTS,
    MAX_DIMENSIONS,
    METRIC_NAME_ADAPTER,
    NAMESPACE_ADAPTER,
    STATISTICS,
    dimensions_key,
)
from watch.models import DimensionRollup, MetricPoint, MetricRollup, MetricSeries, RollupPeriod
from watch.services.store import DAY, dimensions_hash

RAW_GRANULARITY = 60


class QueryError(ValueError):
    """A query the store cannot answer as asked; ``field`` names the argument at fault (the API's 400)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass(frozen=True)
class _Source:
    """Where a query's statistics come from: raw points (``period`` 0) or the rollups of ``period``."""

    period: int
    granularity: int
    setting: str

    @property
    def raw(self) -> bool:
        return self.period == 0


RAW = _Source(0, RAW_GRANULARITY, "raw_days")
FIVE_MINUTES = _Source(RollupPeriod.FIVE_MINUTES, RollupPeriod.FIVE_MINUTES, "rollup_5m_days")
ONE_HOUR = _Source(RollupPeriod.ONE_HOUR, RollupPeriod.ONE_HOUR, "rollup_1h_days")


def list_metrics(namespace: str | None = None, name: str | None = None, dimensions: dict[str, str | None] | None = None,
                 *, under: dict[str, str] | None = None, limit: int = MAX_LIST, offset: int = 0) -> list[dict]:
    """The series (``namespace``, ``name``, ``dimensions``, ``unit``) of ``namespace`` and metric ``name`` when
    given, that have every dimension of ``dimensions`` (with that value, or any value for ``None``) and, for each
    of ``under``, a value equal to it or below it in a dotted path (``OwnerGroup`` under ``edu.s1`` takes
    ``edu.s1.c1``); they may have more dimensions (CloudWatch's ListMetrics). Sorted by namespace, name and
    dimensions; ``limit`` (1 to MAX_LIST) from ``offset``. Raises QueryError naming the argument at fault."""
    if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= MAX_LIST:
        raise QueryError("limit", f"{limit!r} is not a number of metrics from 1 to {MAX_LIST}")
    if not isinstance(offset, int) or isinstance(offset, bool) or offset < 0:
        raise QueryError("offset", f"{offset!r} is not a number of metrics to skip (0 or more)")
    series = _matching_series(namespace, name, dimensions or {}, under or {})
    rows = series.order_by("namespace", "name", "dimensions_key").values(
        "namespace", "name", "dimensions", "unit")[offset:offset + limit]
    return list(rows)


def count_metrics(namespace: str | None = None, name: str | None = None,
                  dimensions: dict[str, str | None] | None = None, *, under: dict[str, str] | None = None) -> int:
    """How many series ``list_metrics`` pages through for the same arguments. Raises QueryError as it does."""
    return _matching_series(namespace, name, dimensions or {}, under or {}).count()


def latest_points(since: float) -> list[dict]:
    """The newest raw point at or after ``since`` (epoch seconds) of every series that has one: ``namespace``,
    ``name``, ``dimensions``, ``unit``, ``time``, ``value``, sorted by namespace, name and dimensions (what a
    Prometheus scrape shows). One statement: each point is kept when no newer point of its series follows it, a
    look-up of the (series, time) index."""
    newer = MetricPoint.objects.filter(series_id=OuterRef("series_id"), time__gt=OuterRef("time"))
    rows = (MetricPoint.objects.filter(time__gte=since).filter(~Exists(newer))
            .order_by("series__namespace", "series__name", "series__dimensions_key")
            .values_list("series__namespace", "series__name", "series__dimensions", "series__unit", "time", "value"))
    return [{"namespace": namespace, "name": name, "dimensions": dimensions, "unit": unit, "time": moment,
             "value": value} for namespace, name, dimensions, unit, moment, value in rows]


def get_statistics(namespace: str, name: str, dimensions: dict[str, str], start: float, end: float, period: int,
                   statistics: list[str], *, now: float | None = None) -> list[dict]:
    """The datapoints of the series with exactly these dimensions (CloudWatch's GetMetricStatistics): one per
    period of ``[start, end)`` that has points, sorted by time, each ``timestamp`` (the period's start), ``unit`` and
    the asked ``statistics`` (Average, Minimum, Maximum, Sum, SampleCount). A metric the store does not have gives
    no datapoints. ``now`` (epoch seconds, default the clock) decides which ranges the retention still covers.
    Raises QueryError naming the argument at fault."""
    source, start, end = _checked_range(start, end, period, statistics, now)
    _check_metric(namespace, name)
    _check_dimensions(dimensions, allow_any=False)
    key = dimensions_key(dimensions)
    candidates = MetricSeries.objects.filter(namespace=namespace, name=name, dimensions_hash=dimensions_hash(key))
    found = [(series_id, unit) for series_id, series_key, unit in candidates.values_list("id", "dimensions_key", "unit")
             if series_key == key]
    if not found:
        return []
    series_id, unit = found[0]
    return _datapoints(source, [series_id], start, end, period, statistics, unit)


def get_aggregate_statistics(namespace: str, name: str, dimensions: dict[str, str | None], start: float, end: float,
                             period: int, statistics: list[str], *, under: dict[str, str] | None = None,
                             now: float | None = None) -> list[dict]:
    """The datapoints of every series of the metric that matches ``dimensions`` and ``under`` as in list_metrics,
    taken together: per period, the minimum and maximum of all their points, their sum and count, and the average
    of all those points (not of the series' averages). E.g. the cluster-wide CPUUtilization of every instance with
    ``Cluster=c1``: a filter of one aggregated dimension (``AGGREGATED_DIMENSIONS``) at a rollup's period reads
    the store's rollups of that dimension value, a few hundred rows, instead of every series'. The unit is the
    first matching series'. Raises QueryError naming the argument at fault."""
    source, start, end = _checked_range(start, end, period, statistics, now)
    _check_metric(namespace, name)
    series = _matching_series(namespace, name, dimensions, under or {})
    units = list(series.values_list("unit", flat=True)[:1])
    if not units:
        return []
    [(dimension, value)] = dimensions.items() if len(dimensions) == 1 else [(None, None)]
    if not source.raw and not under and dimension in AGGREGATED_DIMENSIONS and value is not None:
        rows = DimensionRollup.objects.filter(namespace=namespace, name=name, dimension=dimension, value=value,
                                              period=source.period, start__gte=start, start__lt=end)
        return _grouped(rows, "start", _ROLLUP_AGGREGATES, start, period, statistics, units[0])
    return _datapoints(source, series.values("id"), start, end, period, statistics, units[0])


def _checked_range(start: float, end: float, period: int, statistics: list[str],
                   now: float | None) -> tuple[_Source, int, int]:
    """Check what every statistics query asks; return its source and its range widened to the source's
    granularity."""
    if not isinstance(statistics, list | tuple) or not statistics or any(s not in STATISTICS for s in statistics):
        raise QueryError("statistics", f"{statistics!r}: ask one or more of {', '.join(STATISTICS)}")
    if not isinstance(period, int) or isinstance(period, bool) or period <= 0 or period % 60:
        raise QueryError("period", f"{period!r} is not a positive multiple of 60 seconds")
    for field, value in (("start", start), ("end", end)):
        if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value) or value < 0:
            raise QueryError(field, f"{value!r} is not a time in epoch seconds")
    if end <= start:
        raise QueryError("end", f"{end!r} is not after start ({start!r})")
    if (count := math.ceil((end - start) / period)) > MAX_DATAPOINTS:
        smallest = math.ceil((end - start) / MAX_DATAPOINTS / 60) * 60
        raise QueryError("period", f"{period} s over {end - start:g} s gives {count} datapoints, more than "
                                   f"{MAX_DATAPOINTS}: the smallest period for this range is {smallest} s")
    source = ONE_HOUR if period % ONE_HOUR.period == 0 else FIVE_MINUTES if period % FIVE_MINUTES.period == 0 else RAW
    now = time.time() if now is None else now
    kept_days = getattr(settings.EDUCLOUD, f"watch_{source.setting}")
    # Past the 1-hour rollups' days nothing is kept at all: no datapoints, as for a metric never stored.
    if source is not ONE_HOUR and start < now - kept_days * DAY:
        coarser = FIVE_MINUTES if source.raw else ONE_HOUR
        raise QueryError("period", f"points older than {kept_days:g} days (watch.{source.setting}) are kept only as "
                                   f"coarser statistics: for this start ask a period that is a multiple of "
                                   f"{coarser.period}")
    granularity = source.granularity
    return source, int(start // granularity) * granularity, math.ceil(end / granularity) * granularity


def _check_metric(namespace: str | None, name: str | None, *, required: bool = True) -> None:
    """A namespace and metric name as samples may have them (``None`` allowed when not ``required``)."""
    for field, adapter, value in (("namespace", NAMESPACE_ADAPTER, namespace), ("name", METRIC_NAME_ADAPTER, name)):
        if value is None and not required:
            continue
        try:
            adapter.validate_python(value)
        except ValidationError:
            raise QueryError(field, f"{value!r} is not a metric {field}") from None


def _check_dimensions(dimensions: dict, *, allow_any: bool, field: str = "dimensions") -> None:
    if not isinstance(dimensions, dict):
        raise QueryError(field, "give dimensions as a mapping of name to value")
    if len(dimensions) > MAX_DIMENSIONS:
        raise QueryError(field, f"{len(dimensions)} dimensions, more than {MAX_DIMENSIONS}")
    for name, value in dimensions.items():
        try:
            DIMENSION_NAME_ADAPTER.validate_python(name)
            if value is not None or not allow_any:
                DIMENSION_VALUE_ADAPTER.validate_python(value)
        except ValidationError:
            raise QueryError(field, f"{name!r}={value!r} is not a dimension (name: letters and digits, value: "
                                    f"letters, digits and _.:-)") from None


def _matching_series(namespace: str | None, name: str | None, dimensions: dict[str, str | None],
                     under: dict[str, str]) -> QuerySet[MetricSeries]:
    """The series of the namespace and name (when given) with every dimension filter: each one a join on the
    (name, value) index of the dimension rows."""
    _check_metric(namespace, name, required=False)
    _check_dimensions(dimensions, allow_any=True)
    _check_dimensions(under, allow_any=False, field="under")
    series = MetricSeries.objects.all()
    if namespace is not None:
        series = series.filter(namespace=namespace)
    if name is not None:
        series = series.filter(name=name)
    for dimension, value in dimensions.items():
        exact = {} if value is None else {"dimension_rows__value": value}
        series = series.filter(dimension_rows__name=dimension, **exact)
    for dimension, value in under.items():
        series = series.filter(Q(dimension_rows__name=dimension) & (
            Q(dimension_rows__value=value) | Q(dimension_rows__value__startswith=value + ".")))
    return series


class _BucketIndex(Func):
    """``floor(expression)`` as both databases compute it fast: SQLite has no native FLOOR (Django's is a Python
    function called per row), and its CAST truncates, which is the floor of the non-negative offsets asked here;
    MariaDB's CAST rounds, so it keeps FLOOR."""

    function = "FLOOR"
    output_field = IntegerField()

    def as_sqlite(self, compiler, connection, **extra_context):
        return self.as_sql(compiler, connection, template="CAST(%(expressions)s AS INTEGER)", **extra_context)


_RAW_AGGREGATES = {"minimum": Min("value"), "maximum": Max("value"), "total": Sum("value"), "count": Count("id")}
_ROLLUP_AGGREGATES = {"minimum": Min("minimum"), "maximum": Max("maximum"), "total": Sum("total"),
                      "count": Sum("count")}


def _datapoints(source: _Source, series_ids, start: int, end: int, period: int, statistics: list[str],
                unit: str) -> list[dict]:
    """The datapoints of the series from the source's rows in ``[start, end)``."""
    if source.raw:
        rows = MetricPoint.objects.filter(series_id__in=series_ids, time__gte=start, time__lt=end)
        return _grouped(rows, "time", _RAW_AGGREGATES, start, period, statistics, unit)
    rows = MetricRollup.objects.filter(series_id__in=series_ids, period=source.period, start__gte=start, start__lt=end)
    return _grouped(rows, "start", _ROLLUP_AGGREGATES, start, period, statistics, unit)


def _grouped(rows: QuerySet, column: str, aggregates: dict, start: int, period: int, statistics: list[str],
             unit: str) -> list[dict]:
    """Group the rows by period in the database, then name the asked statistics."""
    offset = ExpressionWrapper((F(column) - Value(start)) / Value(period), output_field=FloatField())
    grouped = rows.annotate(bucket=_BucketIndex(offset)).values("bucket").annotate(**aggregates).order_by("bucket")
    return [_datapoint(start + int(row["bucket"]) * period, unit, row, statistics) for row in grouped]


def _datapoint(timestamp: int, unit: str, row: dict, statistics: list[str]) -> dict:
    count = int(row["count"])
    values = {"Average": row["total"] / count, "Minimum": row["minimum"], "Maximum": row["maximum"],
              "Sum": row["total"], "SampleCount": float(count)}
    return {"timestamp": timestamp, "unit": unit} | {statistic: values[statistic] for statistic in statistics}
