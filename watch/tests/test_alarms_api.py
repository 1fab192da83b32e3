"""The watch's alarms API (``/watch/api/1.0/alarms/``): the CLC (signed) and the Django administrator make, list,
get, change and delete alarms by name and read their history; each bad field is a 400 naming it; people, anonymous
callers and other roles' hosts are refused."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model

from luhyaapi.metrics import HOST_NAMESPACE, INSTANCE_NAMESPACE, MetricSample
from tests.keys import enrolled_key
from watch.models import Alarm, AlarmHistory, AlarmState
from watch.services.alarms import evaluate_alarms
from watch.services.store import store

pytestmark = [pytest.mark.database, pytest.mark.django_db]

API = "/watch/api/1.0/alarms/"
ALARM = {"name": "busy-desktop", "namespace": INSTANCE_NAMESPACE, "metric": "CPUUtilization",
         "dimensions": {"InstanceId": "ins-0000abcd"}, "statistic": "Average", "comparison": "GreaterThanThreshold",
         "threshold": 90, "period": 300, "evaluation_periods": 3, "actions": ["notify", "stop"],
         "owner_group": "edu.s1.c1", "created_by": "teacher1"}


def test_the_clc_makes_lists_gets_changes_and_deletes_an_alarm_by_name(signed_client):
    made = signed_client.post(API, ALARM)
    assert made.status_code == 201, made.content
    assert made.json() | {"created": None} == ALARM | {
        "threshold": 90.0, "enabled": True, "state": "INSUFFICIENT_DATA", "builtin": False, "state_changed": None,
        "state_reason": "Unchecked: the alarm has not been evaluated yet", "created": None}
    listed = signed_client.get(API).json()
    assert listed["count"] == 1 and [row["name"] for row in listed["results"]] == ["busy-desktop"]
    assert signed_client.get(API + "busy-desktop/").json()["metric"] == "CPUUtilization"
    changed = signed_client.request("PUT", API + "busy-desktop/", ALARM | {"threshold": 75, "actions": ["notify"]})
    assert changed.status_code == 200, changed.content
    assert Alarm.objects.get(name="busy-desktop").threshold == 75.0
    patched = signed_client.request("PATCH", API + "busy-desktop/", {"enabled": False})
    assert patched.status_code == 200 and patched.json()["enabled"] is False
    assert signed_client.request("DELETE", API + "busy-desktop/").status_code == 204
    assert signed_client.get(API + "busy-desktop/").status_code == 404


def test_the_django_administrator_may_use_it_too(api_client):
    assert api_client.post(API, ALARM).status_code == 201
    assert api_client.get(API).json()["count"] == 1


def test_the_list_is_paginated_and_narrowed_by_state(signed_client):
    for number in range(3):
        Alarm.objects.create(name=f"a-{number}", namespace=INSTANCE_NAMESPACE, metric="CPUUtilization",
                             statistic="Average", comparison="GreaterThanThreshold", threshold=1, period=60,
                             state=AlarmState.ALARM if number == 1 else AlarmState.OK)
    page = signed_client.get(API + "?limit=2&offset=1").json()
    assert page["count"] == 3 and [row["name"] for row in page["results"]] == ["a-1", "a-2"]
    assert [row["name"] for row in signed_client.get(API + "?state=ALARM").json()["results"]] == ["a-1"]
    assert signed_client.get(API + "?state=RED").json() == {"state": ["one of OK, ALARM, INSUFFICIENT_DATA"]}
    assert signed_client.get(API + "?limit=0").status_code == 400


def test_the_history_lists_each_change_newest_first_with_its_datapoints(signed_client, cloud_at):
    cloud_at("http://127.0.0.1:9")  # no CLC: the actions are recorded as not delivered
    signed_client.post(API, ALARM | {"period": 60, "evaluation_periods": 1})
    t0 = 1_767_225_600
    store([MetricSample(namespace=INSTANCE_NAMESPACE, name="CPUUtilization", dimensions={"InstanceId": "ins-0000abcd"},
                        timestamp=t0 + 5, value=99.0, unit="Percent")])
    evaluate_alarms(t0 + 90)
    answer = signed_client.get(API + "busy-desktop/history/").json()
    assert answer["count"] == AlarmHistory.objects.count() == 3  # the change, and two actions not delivered
    change = answer["results"][-1]
    assert (change["kind"], change["old_state"], change["new_state"]) == ("state", "INSUFFICIENT_DATA", "ALARM")
    assert change["datapoints"] == [{"timestamp": t0, "value": 99.0}] and change["time"] == t0 + 90
    assert signed_client.get(API + "nobody/history/").status_code == 404


@pytest.mark.parametrize(("changes", "field", "says"), [
    ({"period": 90}, "period", "multiple of 60"),
    ({"period": 0}, "period", "greater than or equal to 60"),
    ({"period": 86400 * 2}, "period", "less than or equal to 86400"),
    ({"evaluation_periods": 0}, "evaluation_periods", "greater than or equal to 1"),
    ({"evaluation_periods": 101}, "evaluation_periods", "less than or equal to 100"),
    ({"statistic": "p99"}, "statistic", "not a valid choice"),
    ({"comparison": "Bigger"}, "comparison", "not a valid choice"),
    ({"actions": ["explode"]}, "actions", "an action is one of notify, stop, reboot or hook:<name>"),
    ({"actions": ["hook:Bad Name"]}, "actions", "hook:<name>"),
    ({"actions": ["notify", "notify"]}, "actions", "given twice"),
    ({"actions": ["watchdog"]}, "actions", "an action is one of"),
    ({"actions": ["stop"], "dimensions": {"OwnerGroup": "edu.s1"}}, "actions", "give the alarm an InstanceId"),
    ({"dimensions": {"Instance Id": "x"}}, "dimensions", "not a dimension name"),
    ({"dimensions": {"InstanceId": "ins 1; DROP"}}, "dimensions", "a value is letters, digits"),
    ({"dimensions": {f"Tag{n}": "x" for n in range(11)}}, "dimensions", "more than 10"),
    ({"dimensions": {"InstanceId": None}}, "dimensions", "'InstanceId': This field may not be null."),
    ({"actions": ["notify", None]}, "actions", "item 1: This field may not be null."),
    ({"namespace": "AWS/EC2"}, "namespace", "eduCloud/Instance, eduCloud/Host or Custom/<name>"),
    ({"metric": "cpu utilization"}, "metric", "a metric name"),
    ({"name": "Busy Desktop"}, "name", "lowercase letters"),
    ({"name": "watchdog-ins-0000abcd"}, "name", "the guest watchdog's"),
    ({"owner_group": "edu..s1"}, "owner_group", "not an owner-group path"),
    ({"threshold": "high"}, "threshold", "A valid number is required"),
    ({"period": 1860, "evaluation_periods": 100}, "period", "kept only as coarser"),  # raw points, 2 days
])
def test_each_bad_field_is_a_400_naming_it(signed_client, changes, field, says):
    answer = signed_client.post(API, ALARM | changes)
    assert answer.status_code == 400, answer.content
    assert field in answer.json() and says in " ".join(answer.json()[field]), answer.json()
    assert not Alarm.objects.exists()


def test_a_name_taken_already_is_a_400_naming_it_and_a_name_does_not_change(signed_client):
    signed_client.post(API, ALARM)
    assert "already" in signed_client.post(API, ALARM).json()["name"][0]
    answer = signed_client.request("PUT", API + "busy-desktop/", ALARM | {"name": "renamed"})
    assert answer.status_code == 400 and "does not change" in answer.json()["name"][0]


def test_a_host_alarm_without_actions_on_an_instance_is_taken(signed_client):
    answer = signed_client.post(API, ALARM | {"name": "nc-1-load", "namespace": HOST_NAMESPACE,
                                              "metric": "LoadAverage", "dimensions": {"HostName": "nc-1"},
                                              "actions": ["notify", "hook:scale-out"]})
    assert answer.status_code == 201, answer.content


def test_people_anonymous_callers_and_other_roles_hosts_are_refused(client, signed_client):
    assert client.get(API).status_code in (401, 403)
    user = get_user_model().objects.create_user("teacher1")
    client.force_login(user)
    assert client.get(API).status_code == 403
    assert client.post(API, ALARM, content_type="application/json").status_code == 403
    node = enrolled_key("nc-7")
    assert signed_client.get(API, key=node).status_code == 403
    assert signed_client.post(API, ALARM, key=node).status_code == 403
    assert not Alarm.objects.exists()


def test_a_bad_name_in_the_url_is_a_400_naming_it(signed_client):
    assert signed_client.get(API + "Bad%20Name/").json() == {"name": ["'Bad Name' is not an alarm name"]}
