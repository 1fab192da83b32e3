"""The watch role's metric store: a series per metric and set of dimensions, its raw points, and their 5-minute and
1-hour rollups (docs/watch.md says why this shape and what it is sized for).

Times are epoch seconds (floats for raw points, whole seconds for rollup starts), not ``DateTimeField``: a bucket is
then plain arithmetic in SQL that SQLite and MariaDB agree on, and a batch of points is written without a timezone
conversion per row.
"""

from __future__ import annotations

from django.db import models

from luhyaapi.metrics import MAX_DIMENSIONS


class RollupPeriod(models.IntegerChoices):
    """The periods points are rolled up to, in seconds."""

    FIVE_MINUTES = 300, "5 minutes"
    ONE_HOUR = 3600, "1 hour"


# A dimensions key holds at most MAX_DIMENSIONS "name=value" (32 + 1 + 128 characters) joined by "|".
DIMENSIONS_KEY_LENGTH = MAX_DIMENSIONS * (32 + 1 + 128) + MAX_DIMENSIONS - 1


class MetricSeries(models.Model):
    """One time series: metric ``name`` of ``namespace`` for exactly ``dimensions`` (CloudWatch's "metric").

    Unique on namespace, name and ``dimensions_hash`` (the SHA-256 of ``dimensions_key``): the key itself may be 1,619
    characters, longer than MariaDB indexes in utf8mb4. ``unit`` is the first sample's: a series keeps one unit.
    Made by the store when its first sample arrives; never removed by it (a series without points lists, and answers
    no datapoints)."""

    namespace = models.CharField(max_length=80)
    name = models.CharField(max_length=64)
    dimensions = models.JSONField(default=dict)
    dimensions_key = models.CharField(max_length=DIMENSIONS_KEY_LENGTH, blank=True,
                                      help_text="luhyaapi.metrics.dimensions_key of the dimensions")
    dimensions_hash = models.CharField(max_length=64, help_text="SHA-256 (hex) of dimensions_key")
    unit = models.CharField(max_length=10, default="None")
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=("namespace", "name", "dimensions_hash"),
                                               name="one_metric_series_per_dimensions")]
        verbose_name_plural = "metric series"

    def __str__(self) -> str:
        return f"{self.namespace} {self.name} {{{self.dimensions_key}}}"


class SeriesDimension(models.Model):
    """One dimension of a series, as its own row so that "every series with InstanceId=X" and "every series whose
    OwnerGroup is edu.s1 or under it" are range scans of the (name, value) index instead of a scan of every series'
    JSON (which neither database can index portably)."""

    series = models.ForeignKey(MetricSeries, on_delete=models.CASCADE, related_name="dimension_rows")
    name = models.CharField(max_length=32)
    value = models.CharField(max_length=128)

    class Meta:
        constraints = [models.UniqueConstraint(fields=("series", "name"), name="one_value_per_series_dimension")]
        indexes = [models.Index(fields=("name", "value"), name="watch_dimension_value")]

    def __str__(self) -> str:
        return f"{self.name}={self.value}"


class MetricPoint(models.Model):
    """A raw sample: ``value`` of ``series`` at ``time`` (epoch seconds). One per series and time: a sample stored
    again (a redelivered batch) is not counted twice. Kept ``watch.raw_days``."""

    series = models.ForeignKey(MetricSeries, on_delete=models.CASCADE, related_name="points")
    time = models.FloatField()
    value = models.FloatField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=("series", "time"), name="one_metric_point_per_series_time")]

    def __str__(self) -> str:
        return f"{self.series_id}@{self.time}={self.value}"


class MetricRollup(models.Model):
    """The statistics of a series' raw points in ``[start, start + period)``: ``minimum``, ``maximum``, ``total``
    (their sum) and ``count``; the average is ``total / count``. Merged by the store as points arrive (in any order),
    so it always equals what the raw points of the bucket give. Kept ``watch.rollup_5m_days`` (5 minutes) and
    ``watch.rollup_1h_days`` (1 hour)."""

    series = models.ForeignKey(MetricSeries, on_delete=models.CASCADE, related_name="rollups")
    period = models.PositiveIntegerField(choices=RollupPeriod.choices)
    start = models.BigIntegerField(help_text="epoch seconds, a multiple of period")
    minimum = models.FloatField()
    maximum = models.FloatField()
    total = models.FloatField()
    count = models.BigIntegerField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=("series", "period", "start"), name="one_rollup_per_bucket")]

    def __str__(self) -> str:
        return f"{self.series_id}/{self.period}@{self.start}"


class DimensionRollup(models.Model):
    """The statistics of every point of metric ``name`` in ``namespace`` whose series has ``dimension=value`` (one of
    ``luhyaapi.metrics.AGGREGATED_DIMENSIONS``, e.g. every instance of cluster c1) in ``[start, start + period)``,
    merged by the store as it merges the series' own rollups. It makes the cluster-wide average one range of a
    few hundred rows instead of a group-by over every instance's rollups (docs/watch.md has both timings). Kept as
    long as the series' rollups of its period."""

    namespace = models.CharField(max_length=80)
    name = models.CharField(max_length=64)
    dimension = models.CharField(max_length=32)
    value = models.CharField(max_length=128)
    period = models.PositiveIntegerField(choices=RollupPeriod.choices)
    start = models.BigIntegerField(help_text="epoch seconds, a multiple of period")
    minimum = models.FloatField()
    maximum = models.FloatField()
    total = models.FloatField()
    count = models.BigIntegerField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=("namespace", "name", "dimension", "value", "period", "start"),
                                               name="one_dimension_rollup_per_bucket")]

    def __str__(self) -> str:
        return f"{self.namespace} {self.name} {self.dimension}={self.value}/{self.period}@{self.start}"
