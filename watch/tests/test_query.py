"""Queries of the metric store: every bad argument named, an unknown metric answered with no datapoints, exact
dimensions for one series, list_metrics' filters and pages, and statistics over every series a filter matches."""

from __future__ import annotations

import pytest

from luhyaapi.metrics import CUSTOM_PREFIX, HOST_NAMESPACE, INSTANCE_NAMESPACE, MAX_DIMENSIONS, MetricSample
from watch.services.query import QueryError, get_aggregate_statistics, get_statistics, list_metrics
from watch.services.store import store

pytestmark = [pytest.mark.database, pytest.mark.django_db]

T0 = 1_767_225_600  # an hour's start
NOW = T0 + 86400


def instance(number: int, cluster: str, group: str) -> dict:
    return {"InstanceId": f"ins-{number:08d}", "Cluster": cluster, "OwnerGroup": group, "NodeName": f"nc-{number % 2}"}


def cpu(dimensions: dict, time: float, value: float, name: str = "CPUUtilization") -> MetricSample:
    return MetricSample(namespace=INSTANCE_NAMESPACE, name=name, dimensions=dimensions, timestamp=time, value=value,
                        unit="Percent")


VALID = {"namespace": INSTANCE_NAMESPACE, "name": "CPUUtilization", "dimensions": instance(1, "c1", "edu.s1"),
         "start": T0, "end": T0 + 3600, "period": 300, "statistics": ["Average"]}


@pytest.mark.parametrize(("changes", "field", "says"), [
    ({"period": 90}, "period", "multiple of 60"),
    ({"period": 0}, "period", "multiple of 60"),
    ({"period": -60}, "period", "multiple of 60"),
    ({"period": "300"}, "period", "multiple of 60"),
    ({"end": T0}, "end", "not after start"),
    ({"end": T0 - 60}, "end", "not after start"),
    ({"start": float("nan")}, "start", "epoch seconds"),
    ({"dimensions": {f"Tag{n}": "x" for n in range(MAX_DIMENSIONS + 1)}}, "dimensions", "more than 10"),
    ({"dimensions": {f"Tag{n}": "x" for n in range(10_000)}}, "dimensions", "10000 dimensions"),
    ({"dimensions": {"InstanceId": "ins 1; DROP"}}, "dimensions", "not a dimension"),
    ({"statistics": ["p99"]}, "statistics", "Average, Minimum, Maximum, Sum, SampleCount"),
    ({"statistics": []}, "statistics", "one or more"),
    ({"end": T0 + 2 * 86400, "period": 60}, "period", "2880 datapoints, more than 1440: the smallest period for "
                                                      "this range is 120 s"),
    ({"namespace": "AWS/EC2"}, "namespace", "not a metric namespace"),
    ({"name": "cpu utilization"}, "name", "not a metric name"),
    ({"namespace": None}, "namespace", "not a metric namespace"),
])
def test_each_bad_argument_is_an_error_naming_it(changes, field, says):
    with pytest.raises(QueryError) as error:
        get_statistics(**(VALID | changes), now=NOW)
    assert error.value.field == field
    assert says in error.value.message


def test_a_raw_range_older_than_the_raw_points_are_kept_asks_for_a_coarser_period():
    with pytest.raises(QueryError) as error:
        get_statistics(**(VALID | {"period": 60}), now=T0 + 3 * 86400)
    assert error.value.field == "period"
    assert "watch.raw_days" in error.value.message and "multiple of 300" in error.value.message
    with pytest.raises(QueryError, match="multiple of 3600"):
        get_statistics(**(VALID | {"period": 600}), now=T0 + 20 * 86400)
    assert get_statistics(**(VALID | {"period": 3600}), now=T0 + 20 * 86400) == []
    assert get_statistics(**(VALID | {"period": 3600}), now=T0 + 500 * 86400) == []


def test_an_unknown_metric_or_other_dimensions_give_no_datapoints():
    store([cpu(instance(1, "c1", "edu.s1"), T0 + 10, 50.0)])
    assert get_statistics(**VALID, now=NOW) == [{"timestamp": T0, "unit": "Percent", "Average": 50.0}]
    assert get_statistics(**(VALID | {"name": "NetworkIn"}), now=NOW) == []
    # CloudWatch's rule: the dimensions match a series exactly, neither a subset nor a superset of them.
    assert get_statistics(**(VALID | {"dimensions": {"InstanceId": "ins-00000001"}}), now=NOW) == []
    assert get_statistics(**(VALID | {"dimensions": instance(1, "c1", "edu.s1") | {"ImageId": "img-1"}}),
                          now=NOW) == []


def test_series_that_differ_only_in_case_stay_apart():
    """MariaDB compares text case-insensitively unless the columns say otherwise (the migration makes them)."""
    def custom(tag: str, value: float) -> MetricSample:
        return MetricSample(namespace=CUSTOM_PREFIX + "lab", name="Visitors", dimensions={"Room": tag},
                            timestamp=T0, value=value)

    store([custom("A1", 1.0), custom("a1", 2.0)])
    for tag, value in (("A1", 1.0), ("a1", 2.0)):
        datapoints = get_statistics(CUSTOM_PREFIX + "lab", "Visitors", {"Room": tag}, T0, T0 + 300, 300, ["Sum"],
                                    now=NOW)
        assert [point["Sum"] for point in datapoints] == [value]
        assert [metric["dimensions"] for metric in list_metrics(dimensions={"Room": tag})] == [{"Room": tag}]


@pytest.fixture
def fleet():
    """Four instances (two in cluster c1 of school edu.s1 and its class edu.s1.c1, one in c2 of edu.s10, one in c1
    of edu.s2), each with CPU and network; a host's CPU. Instance n's CPU is 10 n + the minute."""
    groups = {1: ("c1", "edu.s1"), 2: ("c1", "edu.s1.c1"), 3: ("c2", "edu.s10"), 4: ("c1", "edu.s2")}
    samples = []
    for number, (cluster, group) in groups.items():
        for minute in range(10):
            samples.append(cpu(instance(number, cluster, group), T0 + 60 * minute, 10.0 * number + minute))
            samples.append(cpu(instance(number, cluster, group), T0 + 60 * minute, 1000.0, name="NetworkIn"))
    samples.append(MetricSample(namespace=HOST_NAMESPACE, name="CPUUtilization", timestamp=T0, value=5.0,
                                dimensions={"HostName": "clc-1", "Cluster": "c1"}, unit="Percent"))
    store(samples)


def ids(metrics: list[dict]) -> list[str]:
    return [metric["dimensions"].get("InstanceId", metric["dimensions"].get("HostName")) for metric in metrics]


def test_list_metrics_filters_by_namespace_name_and_dimensions(fleet):
    assert len(list_metrics()) == 9
    assert len(list_metrics(INSTANCE_NAMESPACE)) == 8
    assert ids(list_metrics(name="CPUUtilization")) == ["clc-1", *(f"ins-0000000{n}" for n in (1, 2, 4, 3))]
    assert ids(list_metrics(INSTANCE_NAMESPACE, "CPUUtilization", {"Cluster": "c1"})) == [
        "ins-00000001", "ins-00000002", "ins-00000004"]
    assert ids(list_metrics(INSTANCE_NAMESPACE, "NetworkIn", {"Cluster": "c1", "NodeName": "nc-0"})) == [
        "ins-00000002", "ins-00000004"]
    assert ids(list_metrics(name="CPUUtilization", dimensions={"InstanceId": None})) == [
        "ins-00000001", "ins-00000002", "ins-00000004", "ins-00000003"]
    assert ids(list_metrics(name="CPUUtilization", dimensions={"HostName": None})) == ["clc-1"]
    # "under": the school and its classes, not a school whose name only starts the same way.
    assert ids(list_metrics(name="CPUUtilization", under={"OwnerGroup": "edu.s1"})) == [
        "ins-00000001", "ins-00000002"]
    assert list_metrics(name="CPUUtilization", dimensions={"Cluster": "c3"}) == []
    assert list_metrics(INSTANCE_NAMESPACE, "CPUUtilization", {"InstanceId": "ins-00000003"}) == [
        {"namespace": INSTANCE_NAMESPACE, "name": "CPUUtilization", "unit": "Percent",
         "dimensions": instance(3, "c2", "edu.s10")}]


def test_list_metrics_pages_in_a_stable_order(fleet):
    everything = list_metrics()
    pages = [list_metrics(limit=4, offset=offset) for offset in (0, 4, 8)]
    assert [len(page) for page in pages] == [4, 4, 1]
    assert [metric for page in pages for metric in page] == everything
    assert [(m["namespace"], m["name"]) for m in everything] == sorted((m["namespace"], m["name"]) for m in everything)
    assert list_metrics(offset=9) == []


@pytest.mark.parametrize(("arguments", "field"), [
    ({"limit": 0}, "limit"), ({"limit": 501}, "limit"), ({"offset": -1}, "offset"),
    ({"dimensions": {f"Tag{n}": None for n in range(11)}}, "dimensions"),
    ({"under": {"OwnerGroup": "edu s1"}}, "under"), ({"namespace": "eduCloud/Nope"}, "namespace"),
    ({"name": "CPU;Utilization"}, "name"),
])
def test_list_metrics_names_a_bad_argument(arguments, field):
    with pytest.raises(QueryError) as error:
        list_metrics(**arguments)
    assert error.value.field == field


def test_the_aggregate_takes_every_point_of_the_series_the_filter_matches(fleet):
    statistics = ["Average", "Minimum", "Maximum", "Sum", "SampleCount"]
    datapoints = get_aggregate_statistics(INSTANCE_NAMESPACE, "CPUUtilization", {"Cluster": "c1"}, T0, T0 + 600, 300,
                                          statistics, now=NOW)
    # Cluster c1: instances 1, 2 and 4 (not the host, another namespace; not instance 3, cluster c2).
    for datapoint, minutes in zip(datapoints, (range(5), range(5, 10)), strict=True):
        values = [10.0 * number + minute for number in (1, 2, 4) for minute in minutes]
        assert datapoint == {"timestamp": T0 + 300 * (minutes[0] // 5), "unit": "Percent",
                             "Average": pytest.approx(sum(values) / 15), "Minimum": min(values),
                             "Maximum": max(values), "Sum": pytest.approx(sum(values)), "SampleCount": 15.0}
    assert len(datapoints) == 2
    # The same at one 10-minute period (from the 5-minute rollups), and from raw points at 2 minutes.
    [whole] = get_aggregate_statistics(INSTANCE_NAMESPACE, "CPUUtilization", {"Cluster": "c1"}, T0, T0 + 600, 600,
                                       ["SampleCount", "Maximum"], now=NOW)
    assert whole == {"timestamp": T0, "unit": "Percent", "SampleCount": 30.0, "Maximum": 49.0}
    raw = get_aggregate_statistics(INSTANCE_NAMESPACE, "CPUUtilization", {"Cluster": "c1"}, T0, T0 + 600, 120,
                                   ["SampleCount", "Sum"], now=NOW)
    assert [point["SampleCount"] for point in raw] == [6.0] * 5
    assert sum(point["Sum"] for point in raw) == pytest.approx(sum(point["Sum"] for point in datapoints))
    # A school and its classes.
    [school] = get_aggregate_statistics(INSTANCE_NAMESPACE, "CPUUtilization", {}, T0, T0 + 3600, 3600, ["Average"],
                                        under={"OwnerGroup": "edu.s1"}, now=NOW)
    assert school["Average"] == pytest.approx((sum(10 + m for m in range(10)) + sum(20 + m for m in range(10))) / 20)
    assert get_aggregate_statistics(INSTANCE_NAMESPACE, "CPUUtilization", {"Cluster": "c9"}, T0, T0 + 600, 300,
                                    ["Average"], now=NOW) == []
