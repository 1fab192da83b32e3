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


class AlarmState(models.TextChoices):
    """An alarm's state, as CloudWatch names them."""

    OK = "OK"
    ALARM = "ALARM"
    INSUFFICIENT_DATA = "INSUFFICIENT_DATA"


class AlarmComparison(models.TextChoices):
    """How an alarm's statistic is compared with its threshold (the statistic on the left)."""

    GREATER = "GreaterThanThreshold", "greater than"
    GREATER_OR_EQUAL = "GreaterThanOrEqualToThreshold", "greater than or equal to"
    LESS = "LessThanThreshold", "less than"
    LESS_OR_EQUAL = "LessThanOrEqualToThreshold", "less than or equal to"


class AlarmHistoryKind(models.TextChoices):
    """What a history row records: a change of state, or what became of an action the change started."""

    STATE = "state", "state change"
    ACTION = "action", "action"


class Alarm(models.Model):
    """A threshold on a statistic of a metric (CloudWatch's metric alarm), evaluated every minute by
    ``watch.services.alarms.evaluate_alarms`` over its last ``evaluation_periods`` periods of ``period`` seconds,
    aggregating every series that has ``dimensions`` (a filter, as the query API's). Entering ALARM runs its
    ``actions``. ``builtin`` alarms are the guest watchdog's (``watchdog-<instance id>``), made and removed by the
    evaluation itself. ``pending_actions`` holds the posts to the CLC that did not get through, retried while the
    alarm stays in ALARM; ``pending_version`` lets exactly one evaluator take them. Times are epoch seconds, as in
    the store."""

    name = models.CharField(max_length=128, unique=True)
    namespace = models.CharField(max_length=80)
    metric = models.CharField(max_length=64)
    dimensions = models.JSONField(default=dict, blank=True)
    statistic = models.CharField(max_length=16)
    comparison = models.CharField(max_length=32, choices=AlarmComparison.choices)
    threshold = models.FloatField()
    period = models.PositiveIntegerField(help_text="seconds, a multiple of 60")
    evaluation_periods = models.PositiveSmallIntegerField(default=1)
    actions = models.JSONField(default=list, blank=True,
                               help_text='run on entering ALARM: "notify", "stop", "reboot", "hook:<name>"')
    enabled = models.BooleanField(default=True)
    state = models.CharField(max_length=20, choices=AlarmState.choices, default=AlarmState.INSUFFICIENT_DATA)
    state_reason = models.TextField(blank=True, default="Unchecked: the alarm has not been evaluated yet")
    state_changed = models.FloatField(null=True, blank=True)
    builtin = models.BooleanField(default=False, help_text="the guest watchdog's, kept by the evaluation")
    owner_group = models.CharField(max_length=255, blank=True,
                                   help_text="owner-group path the alarm belongs to (set by the CLC)")
    created_by = models.CharField(max_length=150, blank=True)
    created = models.DateTimeField(auto_now_add=True)
    pending_actions = models.JSONField(default=list, blank=True,
                                       help_text="action posts not delivered yet, retried while in ALARM")
    pending_version = models.PositiveIntegerField(default=0)

    class Meta:
        indexes = [models.Index(fields=("builtin", "name"), name="watch_alarm_builtin")]

    def __str__(self) -> str:
        return self.name


class AlarmHistory(models.Model):
    """One event of an alarm: a change of state (``old_state`` -> ``new_state``, why, and the datapoints that
    decided it) or what became of one of the actions it started (``kind`` action: delivered, not delivered yet,
    dropped, an unknown hook)."""

    alarm = models.ForeignKey(Alarm, on_delete=models.CASCADE, related_name="history")
    time = models.FloatField(help_text="epoch seconds")
    kind = models.CharField(max_length=10, choices=AlarmHistoryKind.choices, default=AlarmHistoryKind.STATE)
    old_state = models.CharField(max_length=20, choices=AlarmState.choices)
    new_state = models.CharField(max_length=20, choices=AlarmState.choices)
    reason = models.TextField()
    datapoints = models.JSONField(default=list, blank=True)

    class Meta:
        ordering = ("-time", "-id")
        indexes = [models.Index(fields=("alarm", "time"), name="watch_alarm_history_time")]
        verbose_name_plural = "alarm history"

    def __str__(self) -> str:
        return f"{self.alarm_id}@{self.time}: {self.old_state} -> {self.new_state}"
