"""The watch role's metric API through the Django test client: samples stored with the real store, listed and
queried signed by hosts of the cloud and by the Django administrator; every bad parameter a 400 naming it; custom
metric data put and read back (only ``Custom/`` namespaces); the Prometheus text endpoint behind its token, parsed
as a scraper parses it."""

from __future__ import annotations

import re
import time
from dataclasses import replace
from datetime import UTC, datetime
from urllib.parse import urlencode

import pytest
from django.contrib.auth import get_user_model

from luhyaapi.config import ConfigError, load_config
from luhyaapi.metrics import HOST_NAMESPACE, INSTANCE_NAMESPACE, MetricSample
from tests.keys import enrolled_key
from watch.models import MetricPoint
from watch.services.prometheus import escape_label_value, metric_name, snake_case
from watch.services.store import store

pytestmark = [pytest.mark.database, pytest.mark.django_db]

API = "/watch/api/1.0"
TOKEN = "s3cret-scrape-token-0123456789"
# The current hour's start less an hour: all test points are within the raw points' days and the last 10 minutes'
# points are written relative to the clock.
HOUR = int(time.time() // 3600) * 3600 - 3600
OURS = {"InstanceId": "ins-00000001", "Cluster": "c1", "NodeName": "nc-1", "OwnerGroup": "edu.s1.c1"}
THEIRS = {"InstanceId": "ins-00000002", "Cluster": "c1", "NodeName": "nc-2", "OwnerGroup": "edu.s2"}


def sample(dimensions: dict, at: float, value: float, name: str = "CPUUtilization", unit: str = "Percent",
           namespace: str = INSTANCE_NAMESPACE) -> MetricSample:
    return MetricSample(namespace=namespace, name=name, dimensions=dimensions, timestamp=at, value=value, unit=unit)


@pytest.fixture
def stored():
    """An hour of CPU per minute for two instances (ours 10, 20, ... 100 over each 10 minutes; theirs 50), memory
    of ours, and a host's CPU."""
    samples = [sample(OURS, HOUR + minute * 60, 10.0 * (minute % 10 + 1)) for minute in range(60)]
    samples += [sample(THEIRS, HOUR + minute * 60, 50.0) for minute in range(60)]
    samples += [sample(OURS, HOUR, 2**30, "MemoryUsed", "Bytes")]
    samples += [sample({"HostName": "nc-1", "Cluster": "c1", "Role": "nc"}, HOUR, 5.0, namespace=HOST_NAMESPACE)]
    assert store(samples) == len(samples)


def statistics(signed_client, **params):
    query = {"namespace": INSTANCE_NAMESPACE, "name": "CPUUtilization", "start": HOUR, "end": HOUR + 3600,
             "period": 600, "statistics": "Average,Maximum,SampleCount"} | params
    return signed_client.get(f"{API}/statistics/?{urlencode(query)}")


def test_metrics_lists_the_series_having_the_filter_dimensions_with_their_count(signed_client, stored):
    answer = signed_client.get(f"{API}/metrics/?dimensions=InstanceId=ins-00000001").json()
    assert answer == {"count": 2, "results": [
        {"namespace": INSTANCE_NAMESPACE, "name": "CPUUtilization", "dimensions": OURS, "unit": "Percent"},
        {"namespace": INSTANCE_NAMESPACE, "name": "MemoryUsed", "dimensions": OURS, "unit": "Bytes"}]}
    every_cpu = signed_client.get(f"{API}/metrics/?name=CPUUtilization&dimensions=Cluster&limit=1&offset=1").json()
    assert every_cpu["count"] == 3 and len(every_cpu["results"]) == 1
    assert signed_client.get(f"{API}/metrics/?dimensions=").json()["count"] == 4
    hosts = signed_client.get(f"{API}/metrics/?namespace=eduCloud/Host").json()
    assert [row["dimensions"]["HostName"] for row in hosts["results"]] == ["nc-1"]


def test_statistics_of_one_instance_come_per_period_in_time_order(signed_client, stored):
    answer = statistics(signed_client, dimensions="InstanceId=ins-00000001", match="filter").json()
    assert answer["unit"] == "Percent" and answer["period"] == 600
    assert answer["dimensions"] == {"InstanceId": "ins-00000001"}
    assert answer["datapoints"] == [{"timestamp": HOUR + n * 600, "Average": 55.0, "Maximum": 100.0,
                                     "SampleCount": 10.0} for n in range(6)]


def test_exact_match_is_the_one_series_with_exactly_those_dimensions(signed_client, stored):
    exact = statistics(signed_client, dimensions=",".join(f"{k}={v}" for k, v in OURS.items()), match="exact",
                       period=3600, start=datetime.fromtimestamp(HOUR, UTC).isoformat()).json()
    assert exact["datapoints"] == [{"timestamp": HOUR, "Average": 55.0, "Maximum": 100.0, "SampleCount": 60.0}]
    fewer = statistics(signed_client, dimensions="InstanceId=ins-00000001", match="exact").json()
    assert fewer["datapoints"] == [] and fewer["unit"] == "None"


def test_a_cluster_filter_takes_every_instance_of_it_together(signed_client, stored):
    answer = statistics(signed_client, dimensions="Cluster=c1", period=3600).json()
    assert answer["datapoints"] == [{"timestamp": HOUR, "Average": 52.5, "Maximum": 100.0, "SampleCount": 120.0}]


@pytest.mark.parametrize(("params", "field", "says"), [
    ({"period": 90}, "period", "not a multiple of 60"),
    ({"period": 0}, "period", "greater than or equal to 60"),
    ({"period": "soon"}, "period", "valid integer"),
    ({"period": 10**12}, "period", "less than or equal to"),
    ({"end": HOUR - 60}, "end", "not after start"),
    ({"end": HOUR}, "end", "not after start"),
    ({"start": "yesterday"}, "start", "not a time"),
    ({"start": "nan"}, "start", "not a time from 1970"),
    ({"end": "1e400"}, "end", "not a time from 1970"),
    ({"dimensions": ",".join(f"Tag{n}=x" for n in range(10_000))}, "dimensions", "more than 10 dimensions"),
    ({"dimensions": ",".join(f"Tag{n}=x" for n in range(11))}, "dimensions", "more than 10 dimensions"),
    ({"dimensions": "InstanceId=a,InstanceId=b"}, "dimensions", "given twice"),
    ({"dimensions": "InstanceId=ins 1'"}, "dimensions", "a dimension value is"),
    ({"dimensions": "1d=x"}, "dimensions", "not a dimension name"),
    ({"dimensions": "InstanceId", "match": "exact"}, "dimensions", "needs a value"),
    ({"statistics": "Median"}, "statistics", "ask one or more of Average"),
    ({"statistics": "Average,Average"}, "statistics", "each once"),
    ({"match": "fuzzy"}, "match", "not a valid choice"),
    ({"namespace": "AWS/EC2"}, "namespace", "not a metric namespace"),
    ({"name": "cpu utilization"}, "name", "not a metric name"),
    ({"end": HOUR + 2 * 86400, "period": 60}, "period", "more than 1440"),
    ({"start": HOUR - 30 * 86400, "end": HOUR - 30 * 86400 + 3600, "period": 60}, "period",
     "kept only as coarser statistics"),
])
def test_a_bad_statistics_parameter_is_a_400_naming_it(signed_client, stored, params, field, says):
    response = statistics(signed_client, **params)
    assert response.status_code == 400, response.content
    assert field in response.json() and says in " ".join(response.json()[field]), response.json()


@pytest.mark.parametrize(("query", "field"), [
    ("limit=0", "limit"), ("limit=501", "limit"), ("offset=-1", "offset"), (f"offset={10**12}", "offset"),
    ("namespace=eduCloud/Nope", "namespace"), ("dimensions=" + ",".join(["A=b"] * 10_000), "dimensions"),
])
def test_a_bad_list_parameter_is_a_400_naming_it(signed_client, query, field):
    response = signed_client.get(f"{API}/metrics/?{query}")
    assert response.status_code == 400 and field in response.json(), response.content


def test_hosts_of_every_role_and_the_administrator_may_query_and_nobody_else(client, signed_client, stored):
    path = f"{API}/metrics/?dimensions=InstanceId=ins-00000001"
    for role in ("clc", "walrus", "cc", "nc", "sc", "watch"):
        assert signed_client.get(path, key=enrolled_key(f"host-{role}", role)).status_code == 200, role
    assert signed_client.get(path, key=enrolled_key("pc-1", "pc", mac="52:54:00:00:00:01")).status_code == 403
    assert client.get(path).status_code == 401
    client.force_login(get_user_model().objects.create_user("teacher"))
    assert client.get(path).status_code == 403
    client.force_login(get_user_model().objects.create_user("admin", is_staff=True))
    assert client.get(path).json()["count"] == 2


def put(signed_client, namespace: str, data: list[dict], **options):
    return signed_client.post(f"{API}/metric-data/", {"namespace": namespace, "metric_data": data}, **options)


def test_custom_metric_data_put_by_a_host_is_stored_once_and_read_back(signed_client):
    now = time.time()
    data = [{"name": "Logins", "dimensions": {"Room": "r1"}, "timestamp": now - 60 * n, "value": n, "unit": "Count"}
            for n in range(3)]
    data.append({"name": "Logins", "dimensions": {"Room": "r2"},
                 "timestamp": datetime.fromtimestamp(now, UTC).replace(tzinfo=None).isoformat(), "value": 7})
    key = enrolled_key("sc-1", "sc")
    response = put(signed_client, "Custom/lab", data, key=key)
    assert (response.status_code, response.json()) == (201, {"stored": 4})
    assert put(signed_client, "Custom/lab", data, key=key).json() == {"stored": 0}, "the same points again"
    answer = statistics(signed_client, namespace="Custom/lab", name="Logins", dimensions="Room=r1",
                        start=now - 600, end=now + 60, period=600, statistics="Sum,SampleCount").json()
    assert answer["unit"] == "Count"
    assert sum(point["Sum"] for point in answer["datapoints"]) == 3.0
    assert sum(point["SampleCount"] for point in answer["datapoints"]) == 3.0


def test_metric_data_of_the_clouds_own_namespaces_is_refused_naming_namespace(signed_client):
    data = [{"name": "CPUUtilization", "dimensions": OURS, "timestamp": time.time(), "value": 99.0}]
    response = put(signed_client, INSTANCE_NAMESPACE, data, key=enrolled_key("nc-9", "nc"))
    assert response.status_code == 403 and "namespace" in response.json()
    assert not MetricPoint.objects.exists()


@pytest.mark.parametrize(("body", "field"), [
    ({"namespace": "Custom/lab", "metric_data": []}, "metric_data"),
    ({"namespace": "Custom/lab", "metric_data": [{"name": "x", "timestamp": 1, "value": 1}] * 1001}, "metric_data"),
    ({"namespace": "Custom/lab", "metric_data": [{"name": "x", "timestamp": "now", "value": 1}]},
     "metric_data.0.timestamp"),
    ({"namespace": "Custom/lab", "metric_data": [{"name": "x", "timestamp": 1, "value": 1}]},
     "metric_data.0.timestamp"),
    ({"namespace": "Custom/lab", "metric_data": [{"name": "x", "timestamp": time.time() + 86400, "value": 1}]},
     "metric_data.0.timestamp"),
    ({"namespace": "Custom/lab", "metric_data": [{"name": "x", "timestamp": time.time(), "value": "NaN"}]},
     "metric_data.0.value"),
    ({"namespace": "Custom/lab", "metric_data": [{"name": "x y", "timestamp": time.time(), "value": 1}]},
     "metric_data.0.name"),
    ({"namespace": "Custom/lab", "metric_data": [{"name": "x", "timestamp": time.time(), "value": 1,
                                                 "dimensions": {f"D{n}": "v" for n in range(11)}}]},
     "metric_data.0.dimensions"),
    ({"namespace": "Custom/../x", "metric_data": [{"name": "x", "timestamp": time.time(), "value": 1}]},
     "namespace"),
])
def test_bad_metric_data_is_a_400_naming_the_field_and_nothing_is_stored(signed_client, body, field):
    response = signed_client.post(f"{API}/metric-data/", body)
    assert response.status_code == 400 and field in response.json(), response.json()
    assert not MetricPoint.objects.exists()


# Prometheus -----------------------------------------------------------------------------------------------------

_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)(?: (-?\d+))?$")
_LABEL = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"\s*(?:,|$)')


def parse_exposition(text: str) -> dict[str, dict]:
    """A scraper's reading of the text format 0.0.4, strict: each family's HELP and TYPE before its samples, the
    samples of a family together, each label set once; {name: {"help", "type", "samples": [(labels, value, ms)]}}."""
    assert text.endswith("\n")
    families: dict[str, dict] = {}
    current = None
    for line in text[:-1].split("\n"):
        if line.startswith("# HELP "):
            name, _, help_text = line[7:].partition(" ")
            assert name not in families, f"{name} twice"
            current = families[name] = {"help": help_text, "samples": []}
        elif line.startswith("# TYPE "):
            name, _, kind = line[7:].partition(" ")
            assert name == current_name(families) and kind in {"gauge", "counter", "untyped"}
            current["type"] = kind
        else:
            match = _SAMPLE.match(line)
            assert match, f"not a sample line: {line!r}"
            name, labels_text, value, ms = match.groups()
            assert name == current_name(families), f"{name} outside its family"
            labels, position = {}, 0
            while labels_text and position < len(labels_text):
                label = _LABEL.match(labels_text, position)
                assert label and label[1] not in labels, f"bad labels {labels_text!r}"
                labels[label[1]] = re.sub(r"\\(.)", lambda m: {"n": "\n"}.get(m[1], m[1]), label[2])
                position = label.end()
            assert labels not in [seen for seen, _, _ in current["samples"]], "one label set twice"
            current["samples"].append((labels, float(value), int(ms) if ms else None))
    return families


# What Prometheus 2.x sends.
PROMETHEUS_ACCEPT = ("application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,"
                     "text/plain;version=0.0.4;q=0.5,*/*;q=0.1")


def current_name(families: dict) -> str:
    return list(families)[-1]


@pytest.fixture
def token(settings):
    settings.EDUCLOUD = replace(settings.EDUCLOUD, watch_prometheus_token=TOKEN)
    return TOKEN


def scrape(client, token: str | None = TOKEN, path: str = "prometheus", accept: str = PROMETHEUS_ACCEPT):
    return client.get(f"{API}/{path}", HTTP_ACCEPT=accept,
                      **({"HTTP_AUTHORIZATION": f"Bearer {token}"} if token else {}))


def test_the_prometheus_endpoint_is_off_without_a_token(client, settings):
    assert settings.EDUCLOUD.watch_prometheus_token == ""
    response = scrape(client)
    assert (response.status_code, response.json()) == (
        404, {"detail": "the Prometheus endpoint is disabled (watch.prometheus_token)"})


@pytest.mark.parametrize("given", [None, "wrong-token-0123456789abcdef", TOKEN[:-1], TOKEN + "x"])
def test_a_scrape_without_the_right_token_is_a_401(client, token, given):
    response = scrape(client, given)
    assert response.status_code == 401 and "Authorization: Bearer" in response.json()["detail"]


def test_a_signed_call_to_the_prometheus_endpoint_is_refused(signed_client, token):
    assert signed_client.get(f"{API}/prometheus", HTTP_AUTHORIZATION=f"Bearer {token}").status_code == 403


def test_a_scrape_parses_and_gives_the_latest_value_of_each_fresh_series(client, token):
    now = time.time()
    store([sample(OURS, now - 120, 12.5), sample(OURS, now - 60, 30.0), sample(THEIRS, now - 900, 99.0),
           sample({"HostName": "clc-1", "Cluster": "c1", "Role": "clc"}, now - 30, 1.5, "LoadAverage",
                  "None", HOST_NAMESPACE),
           sample({"Room": "r1"}, now - 30, 4.0, "Jobs.done", "Count", "Custom/lab.app")])
    for path, accept in (("prometheus", PROMETHEUS_ACCEPT), ("prometheus/", "text/plain")):
        response = scrape(client, path=path, accept=accept)
        assert response.status_code == 200
        assert response["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
        families = parse_exposition(response.content.decode())
        assert sorted(families) == ["educloud_custom_lab_app_jobs_done", "educloud_host_load_average",
                                    "educloud_instance_cpu_utilization"]
        cpu = families["educloud_instance_cpu_utilization"]
        assert (cpu["type"], cpu["help"]) == ("gauge", "eduCloud/Instance CPUUtilization (Percent)")
        assert cpu["samples"] == [({"cluster": "c1", "instance_id": "ins-00000001", "node_name": "nc-1",
                                    "owner_group": "edu.s1.c1"}, 30.0, int((now - 60) * 1000))], "older than 10 min"
        assert families["educloud_host_load_average"]["samples"][0][0]["role"] == "clc"


def test_names_are_snake_case_and_label_values_are_escaped_as_the_format_says():
    assert snake_case("CPUUtilization") == "cpu_utilization" and snake_case("NetworkIn") == "network_in"
    assert snake_case("InstanceId") == "instance_id" and snake_case("lab.app-1") == "lab_app_1"
    assert metric_name("eduCloud/Host", "DiskReadBytes") == "educloud_host_disk_read_bytes"
    assert metric_name("Custom/lab", "Logins") == "educloud_custom_lab_logins"
    text = 'a\\b"c\nd'
    escaped = escape_label_value(text)
    assert escaped == 'a\\\\b\\"c\\nd'
    parsed = parse_exposition(f'# HELP m x\n# TYPE m gauge\nm{{v="{escaped}"}} 1 2\n')
    assert parsed["m"]["samples"] == [({"v": text}, 1.0, 2)]


def test_the_prometheus_token_is_a_setting_checked_at_start():
    base = {"EDUCLOUD_HOST_NAME": "watch-1", "EDUCLOUD_ROLES": "watch", "EDUCLOUD_HOST_DATA_DIR": "/tmp/x",
            "EDUCLOUD_HOST_PEER_CONFIG_DIR": "/nonexistent"}
    assert load_config(base).watch_prometheus_token == ""
    assert load_config(base | {"EDUCLOUD_WATCH_PROMETHEUS_TOKEN": TOKEN}).watch_prometheus_token == TOKEN
    assert TOKEN not in repr(load_config(base | {"EDUCLOUD_WATCH_PROMETHEUS_TOKEN": TOKEN}))
    for wrong in ("short", "has space in it 0123456789", "x" * 300):
        with pytest.raises(ConfigError, match="watch.prometheus_token"):
            load_config(base | {"EDUCLOUD_WATCH_PROMETHEUS_TOKEN": wrong})
