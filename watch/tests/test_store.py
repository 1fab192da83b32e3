"""The metric store: rollups that equal what the raw points give whatever the order and batching of the samples, a
redelivered batch counted once, raw points and rollups agreeing, and the purge keeping each source its days."""

from __future__ import annotations

import random
from collections import defaultdict

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from luhyaapi.metrics import INSTANCE_NAMESPACE, MetricSample
from watch.models import DimensionRollup, MetricPoint, MetricRollup, MetricSeries, SeriesDimension
from watch.services.query import QueryError, get_aggregate_statistics, get_statistics
from watch.services.store import DAY, purge, store

pytestmark = [pytest.mark.database, pytest.mark.django_db]

# A synthetic week from an hour's start, and "now" at its end (every source keeps the whole week).
WEEK_START = 1_767_225_600
WEEK = 7 * DAY
DIMENSIONS = {"InstanceId": "ins-00000001", "Cluster": "c1", "NodeName": "nc-1"}
ALL = ["Average", "Minimum", "Maximum", "Sum", "SampleCount"]


def sample(time: float, value: float, dimensions: dict | None = None, name: str = "CPUUtilization") -> MetricSample:
    return MetricSample(namespace=INSTANCE_NAMESPACE, name=name, dimensions=dimensions or DIMENSIONS,
                        timestamp=time, value=value, unit="Percent")


def expected_statistics(points: list[tuple[float, float]], start: int, period: int) -> dict[int, dict]:
    """The statistics per period computed directly from the raw points, as the datapoints should give them."""
    buckets: dict[int, list[float]] = defaultdict(list)
    for time, value in points:
        buckets[start + int((time - start) // period) * period].append(value)
    return {timestamp: {"Average": sum(values) / len(values), "Minimum": min(values), "Maximum": max(values),
                        "Sum": sum(values), "SampleCount": float(len(values))}
            for timestamp, values in buckets.items()}


def assert_datapoints_equal(datapoints: list[dict], expected: dict[int, dict]) -> None:
    assert [point["timestamp"] for point in datapoints] == sorted(expected)
    for point in datapoints:
        want = expected[point["timestamp"]]
        for statistic in ALL:
            assert point[statistic] == pytest.approx(want[statistic], rel=1e-9, abs=1e-6), (point, statistic)


def statistics(start: float, end: float, period: int, now: float = WEEK_START + WEEK) -> list[dict]:
    return get_statistics(INSTANCE_NAMESPACE, "CPUUtilization", DIMENSIONS, start, end, period, ALL, now=now)


# Times in milliseconds over the week, half of them crowded into three hours so that buckets get many points.
_TIMES = st.one_of(st.integers(0, WEEK * 1000 - 1), st.integers(50 * 3600 * 1000, 53 * 3600 * 1000 - 1))
_POINTS = st.lists(st.tuples(_TIMES, st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False)),
                   min_size=1, max_size=200, unique_by=lambda point: point[0])


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow])
@given(points=_POINTS, seed=st.randoms(use_true_random=False), batches=st.integers(1, 8))
def test_rollups_give_the_statistics_of_the_raw_points_whatever_the_order_and_batching(points, seed, batches):
    MetricSeries.objects.all().delete()
    timed = [(WEEK_START + millis / 1000, value) for millis, value in points]
    shuffled = list(timed)
    seed.shuffle(shuffled)  # late and out of order: later points before earlier ones, batches split anywhere
    cuts = sorted(seed.randint(0, len(shuffled)) for _ in range(batches - 1))
    stored = 0
    for first, last in zip([0, *cuts], [*cuts, len(shuffled)], strict=True):
        stored += store([sample(time, value) for time, value in shuffled[first:last]])
    assert stored == len(timed)

    end = WEEK_START + WEEK
    assert_datapoints_equal(statistics(WEEK_START, end, 3600), expected_statistics(timed, WEEK_START, 3600))
    assert_datapoints_equal(statistics(WEEK_START, end, 7200), expected_statistics(timed, WEEK_START, 7200))
    half = WEEK_START + WEEK // 2  # 1,440 datapoints at most: 5-minute periods of half a week at a time
    for start, stop in ((WEEK_START, half), (half, end)):
        inside = [(time, value) for time, value in timed if start <= time < stop]
        assert_datapoints_equal(statistics(start, stop, 300), expected_statistics(inside, start, 300))


def test_a_batch_stored_again_changes_nothing():
    batch = [sample(WEEK_START + 60 * minute, float(minute)) for minute in range(30)]
    assert store(batch) == 30
    before = statistics(WEEK_START, WEEK_START + 3600, 300)
    assert store(batch + [sample(WEEK_START + 29 * 60 + 30, 7.0)]) == 1  # only the new one, in the last bucket
    assert MetricPoint.objects.count() == 31
    after = statistics(WEEK_START, WEEK_START + 3600, 300)
    assert after[:-1] == before[:-1] and after[-1]["SampleCount"] == before[-1]["SampleCount"] + 1


def test_a_series_is_made_once_with_its_dimensions_and_its_first_unit():
    store([sample(WEEK_START, 1.0), sample(WEEK_START + 60, 2.0, name="MemoryUsed")])
    store([MetricSample(namespace=INSTANCE_NAMESPACE, name="CPUUtilization", dimensions=dict(reversed(
        DIMENSIONS.items())), timestamp=WEEK_START + 120, value=3.0, unit="None")])
    cpu = MetricSeries.objects.get(name="CPUUtilization")
    assert MetricSeries.objects.count() == 2 and cpu.unit == "Percent"
    assert cpu.dimensions_key == "Cluster=c1|InstanceId=ins-00000001|NodeName=nc-1"
    assert set(SeriesDimension.objects.filter(series=cpu).values_list("name", "value")) == set(DIMENSIONS.items())
    assert cpu.points.count() == 2


def test_raw_points_and_rollups_agree_on_a_range_that_has_both():
    rng = random.Random(17)
    now = WEEK_START + 3 * 3600
    # Two hours at a 60 s sample with a jitter, sent in shuffled batches of 25.
    points = [(WEEK_START + 60 * minute + rng.uniform(0, 59), rng.uniform(0, 100)) for minute in range(120)]
    rng.shuffle(points)
    for first in range(0, len(points), 25):
        store([sample(time, value) for time, value in points[first:first + 25]])
    end = WEEK_START + 2 * 3600
    per_minute = statistics(WEEK_START, end, 60, now=now)
    assert len(per_minute) == 120
    for period in (300, 3600):
        folded: dict[int, dict] = {}
        for point in per_minute:
            bucket = WEEK_START + (point["timestamp"] - WEEK_START) // period * period
            into = folded.setdefault(bucket, {"Minimum": point["Minimum"], "Maximum": point["Maximum"], "Sum": 0.0,
                                              "SampleCount": 0.0})
            into["Minimum"] = min(into["Minimum"], point["Minimum"])
            into["Maximum"] = max(into["Maximum"], point["Maximum"])
            into["Sum"] += point["Sum"]
            into["SampleCount"] += point["SampleCount"]
        for values in folded.values():
            values["Average"] = values["Sum"] / values["SampleCount"]
        assert_datapoints_equal(statistics(WEEK_START, end, period, now=now), folded)


def test_after_the_purge_the_rollups_still_answer_for_as_long_as_they_are_kept():
    points = [(WEEK_START + 30 * step + 7, float(step % 13)) for step in range(480)]  # four hours, every 30 s
    store([sample(time, value) for time, value in points])
    end = WEEK_START + 4 * 3600
    five_minutes = statistics(WEEK_START, end, 300, now=end)
    hours = statistics(WEEK_START, end, 3600, now=end)
    assert len(five_minutes) == 48 and len(hours) == 4

    three_days_later = end + 3 * DAY
    assert purge(three_days_later) == {"raw": 480, "5m": 0, "1h": 0}
    assert not MetricPoint.objects.exists()
    with pytest.raises(QueryError) as error:  # minutes were only in the raw points
        statistics(WEEK_START, end, 60, now=three_days_later)
    assert error.value.field == "period" and "multiple of 300" in error.value.message
    assert statistics(WEEK_START, end, 300, now=three_days_later) == five_minutes
    assert statistics(WEEK_START, end, 3600, now=three_days_later) == hours

    sixteen_days_later = end + 16 * DAY
    # The series' rollups and those of its cluster (an aggregated dimension).
    assert purge(sixteen_days_later) == {"raw": 0, "5m": 2 * 48, "1h": 0}
    assert statistics(WEEK_START, end, 3600, now=sixteen_days_later) == hours
    assert purge(end + 456 * DAY) == {"raw": 0, "5m": 0, "1h": 2 * 4}
    assert not MetricRollup.objects.exists() and not DimensionRollup.objects.exists()


def test_the_purge_reads_its_days_from_the_settings(settings):
    from dataclasses import replace

    settings.EDUCLOUD = replace(settings.EDUCLOUD, watch_raw_days=0.5)
    store([sample(WEEK_START, 1.0), sample(WEEK_START + DAY, 2.0)])
    assert purge(WEEK_START + DAY)["raw"] == 1
    assert list(MetricPoint.objects.values_list("value", flat=True)) == [2.0]


_FLEET_POINTS = st.lists(st.tuples(st.integers(0, 5), st.integers(0, 2 * DAY - 1),
                                   st.floats(0, 100, allow_nan=False)),
                         min_size=1, max_size=150, unique_by=lambda point: point[:2])


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow])
@given(points=_FLEET_POINTS, seed=st.randoms(use_true_random=False), batches=st.integers(1, 6))
def test_a_clusters_rollups_give_the_statistics_of_every_point_of_its_instances(points, seed, batches):
    MetricSeries.objects.all().delete()
    DimensionRollup.objects.all().delete()
    # Six instances, the even ones in cluster c0 and the odd ones in c1.
    samples = [sample(WEEK_START + seconds, value, {"InstanceId": f"ins-{number:08d}", "Cluster": f"c{number % 2}"})
               for number, seconds, value in points]
    seed.shuffle(samples)
    cuts = sorted(seed.randint(0, len(samples)) for _ in range(batches - 1))
    for first, last in zip([0, *cuts], [*cuts, len(samples)], strict=True):
        store(samples[first:last])
    end = WEEK_START + 2 * DAY
    for cluster in (0, 1):
        inside = [(WEEK_START + seconds, value) for number, seconds, value in points if number % 2 == cluster]
        for start, stop, period in ((WEEK_START, end, 3600), (WEEK_START, WEEK_START + DAY, 300),
                                    (WEEK_START + DAY, end, 300), (WEEK_START, end, 1800)):
            datapoints = get_aggregate_statistics(INSTANCE_NAMESPACE, "CPUUtilization", {"Cluster": f"c{cluster}"},
                                                  start, stop, period, ALL, now=end)
            part = [(time, value) for time, value in inside if start <= time < stop]
            assert_datapoints_equal(datapoints, expected_statistics(part, start, period))
