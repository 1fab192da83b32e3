"""The CLC's alarms API for people (``/clc/api/1.0/alarms/``), forwarded signed to the watch role (this test
server's own, online as the CLC knows it): the owner-group rule on each alarm (an alarm on an instance needs write
on it to make or change, read to see; a teacher of another branch gets 404 for our instance's alarm; the guest
watchdog's and host alarms are for the cloud's administrators), the list filtered to what the person may see, the
owner-group the CLC files an alarm under, the watch's 400 passed on, 503 when no watch host is online, and an
alarm entering ALARM notifying through the CLC's own ``alarm-actions/``."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model

from clc.tests.classes import as_
from luhyaapi.metrics import HOST_NAMESPACE, INSTANCE_NAMESPACE, MetricSample
from luhyadb.models import Instance, Notification, Server
from watch.models import Alarm, AlarmHistory, AlarmState
from watch.services.alarms import evaluate_alarms
from watch.services.store import store

pytestmark = [pytest.mark.database, pytest.mark.django_db(transaction=True)]

API = "/clc/api/1.0/alarms/"
OURS, THEIRS = "ins-0000c1c1", "ins-0000c2c2"


def alarm_on(instance_id: str, name: str = "busy", **changes) -> dict:
    return {"name": name, "namespace": INSTANCE_NAMESPACE, "metric": "CPUUtilization",
            "dimensions": {"InstanceId": instance_id}, "statistic": "Average", "comparison": "GreaterThanThreshold",
            "threshold": 90, "period": 300, "evaluation_periods": 2, "actions": ["notify"]} | changes


@pytest.fixture
def cloud(schools, controller):
    """Two schools, an instance of class edu.s1.c1 assigned to a student and one of school edu.s2, this test
    server's watch online, and the cloud's first administrator."""
    for instance_id, owner, image in ((OURS, schools["c1"], schools["images"]["edu.s1"]),
                                      (THEIRS, schools["s2"], schools["images"]["edu.s2"])):
        Instance.objects.create(instance_id=instance_id, name=instance_id, kind="rvd", image=image,
                                vm_type=schools["tiny"], owner_group=owner,
                                assigned_to=schools["students"][0] if owner == schools["c1"] else None)
    Server.objects.create(role="watch", name="watch-1", ip="127.0.0.1", cluster="cluster1",
                          api_url=controller.api_url, state="online")
    schools["admin"] = get_user_model().objects.create_user("cloud-admin", is_staff=True, is_superuser=True)
    return schools


def post(user, body):
    return as_(user).post(API, body, content_type="application/json")


def test_a_teacher_makes_an_alarm_on_their_schools_instance_filed_under_its_owner_group(cloud):
    answer = post(cloud["teacher1"], alarm_on(OURS))
    assert answer.status_code == 201, answer.content
    assert answer.json()["history_url"].endswith("/clc/api/1.0/alarms/busy/history/")
    stored = Alarm.objects.get(name="busy")
    assert (stored.owner_group, stored.created_by) == ("edu.s1.c1", "teacher1")


def test_a_teacher_of_another_branch_gets_404_for_our_instances_alarm(cloud):
    post(cloud["teacher1"], alarm_on(OURS))
    other = as_(cloud["teacher2"])
    for method in ("get", "delete"):
        assert getattr(other, method)(API + "busy/").status_code == 404
    assert other.put(API + "busy/", alarm_on(THEIRS), content_type="application/json").status_code == 404
    assert other.get(API + "busy/history/").status_code == 404
    assert other.get(API).json() == {"count": 0, "next": None, "previous": None, "results": []}
    refused = post(cloud["teacher2"], alarm_on(OURS, name="theirs-on-ours"))
    assert refused.status_code == 404 and refused.json() == {"detail": f"no instance {OURS} that you may read"}
    assert Alarm.objects.get(name="busy").threshold == 90.0, "nothing changed"


def test_a_student_sees_the_alarm_on_their_desktop_but_may_not_make_change_or_delete_one(cloud):
    post(cloud["teacher1"], alarm_on(OURS))
    student = as_(cloud["students"][0])
    assert student.get(API + "busy/").status_code == 200
    assert [row["name"] for row in student.get(API).json()["results"]] == ["busy"]
    assert student.delete(API + "busy/").status_code == 403
    assert student.patch(API + "busy/", {"threshold": 1}, content_type="application/json").status_code == 403
    assert post(cloud["students"][0], alarm_on(OURS, name="mine")).status_code == 403
    assert as_(cloud["students"][1]).get(API + "busy/").status_code == 404, "another student's desktop"


def test_the_list_shows_each_person_what_they_may_see(cloud):
    post(cloud["teacher1"], alarm_on(OURS, name="ours"))
    post(cloud["teacher2"], alarm_on(THEIRS, name="theirs"))
    post(cloud["admin"], alarm_on("", name="nc-load", namespace=HOST_NAMESPACE, metric="LoadAverage",
                                  dimensions={"HostName": "nc-1"}))
    Alarm.objects.create(name=f"watchdog-{OURS}", namespace=INSTANCE_NAMESPACE, metric="Alive",
                         dimensions={"InstanceId": OURS}, statistic="Minimum", comparison="LessThanThreshold",
                         threshold=1, period=60, actions=["watchdog"], builtin=True, owner_group="edu.s1.c1")

    def names(user, query=""):
        return [row["name"] for row in as_(user).get(API + query).json()["results"]]

    assert names(cloud["teacher1"]) == ["ours", f"watchdog-{OURS}"]
    assert names(cloud["head2"]) == ["theirs"]
    assert names(cloud["admin"]) == ["nc-load", "ours", "theirs", f"watchdog-{OURS}"]
    assert names(cloud["admin"], "?limit=2&offset=1") == ["ours", "theirs"]
    assert as_(cloud["admin"]).get(API).json()["count"] == 4


def test_host_and_watchdog_alarms_are_changed_by_the_clouds_administrators_only(cloud):
    host_alarm = alarm_on("", name="nc-load", namespace=HOST_NAMESPACE, metric="LoadAverage",
                          dimensions={"HostName": "nc-1"})
    assert post(cloud["head1"], host_alarm).status_code == 403
    assert post(cloud["admin"], host_alarm).status_code == 201
    assert Alarm.objects.get(name="nc-load").owner_group == "edu"
    Alarm.objects.create(name=f"watchdog-{OURS}", namespace=INSTANCE_NAMESPACE, metric="Alive",
                         dimensions={"InstanceId": OURS}, statistic="Minimum", comparison="LessThanThreshold",
                         threshold=1, period=60, actions=["watchdog"], builtin=True, owner_group="edu.s1.c1")
    watchdog = API + f"watchdog-{OURS}/"
    teacher = as_(cloud["teacher1"])
    assert teacher.get(watchdog).status_code == 200
    assert teacher.patch(watchdog, {"enabled": False}, content_type="application/json").status_code == 403
    changed = as_(cloud["admin"]).patch(watchdog, {"enabled": False}, content_type="application/json")
    assert changed.status_code == 200, changed.content
    assert Alarm.objects.get(name=f"watchdog-{OURS}").enabled is False


def test_an_alarm_on_an_owner_group_is_ruled_by_the_rights_on_that_groups_instances(cloud):
    group_alarm = alarm_on("", name="class-c1", dimensions={"OwnerGroup": "edu.s1.c1"})
    answer = post(cloud["teacher1"], group_alarm)
    assert answer.status_code == 201, answer.content
    assert Alarm.objects.get(name="class-c1").owner_group == "edu.s1.c1"
    assert post(cloud["teacher2"], group_alarm | {"name": "theirs-on-c1"}).status_code == 403
    assert as_(cloud["teacher2"]).get(API + "class-c1/").status_code == 404
    assert as_(cloud["students"][0]).get(API + "class-c1/").status_code == 404, "a student reads their desktop only"
    assert as_(cloud["head1"]).delete(API + "class-c1/").status_code == 204


def test_an_alarm_moved_to_another_schools_instance_is_refused(cloud):
    post(cloud["teacher1"], alarm_on(OURS))
    answer = as_(cloud["teacher1"]).put(API + "busy/", alarm_on(THEIRS), content_type="application/json")
    assert answer.status_code == 404
    assert Alarm.objects.get(name="busy").dimensions == {"InstanceId": OURS}


def test_the_teacher_changes_and_deletes_their_alarm_and_reads_its_history(cloud):
    post(cloud["teacher1"], alarm_on(OURS))
    teacher = as_(cloud["teacher1"])
    changed = teacher.put(API + "busy/", alarm_on(OURS, threshold=75), content_type="application/json")
    assert changed.status_code == 200 and changed.json()["threshold"] == 75.0
    alarm = Alarm.objects.get(name="busy")
    AlarmHistory.objects.create(alarm=alarm, time=1_767_225_600, old_state=AlarmState.OK,
                                new_state=AlarmState.ALARM, reason="Threshold Crossed: ...",
                                datapoints=[{"timestamp": 1_767_225_300, "value": 99.0}])
    history = teacher.get(API + "busy/history/").json()
    assert history == {"count": 1, "results": [{"time": 1_767_225_600.0, "kind": "state", "old_state": "OK",
                                                "new_state": "ALARM", "reason": "Threshold Crossed: ...",
                                                "datapoints": [{"timestamp": 1_767_225_300, "value": 99.0}]}]}
    assert teacher.delete(API + "busy/").status_code == 204
    assert not Alarm.objects.filter(name="busy").exists()


def test_the_watchs_400_naming_the_field_is_passed_on(cloud):
    answer = post(cloud["teacher1"], alarm_on(OURS, period=90))
    assert answer.status_code == 400 and "multiple of 60" in answer.json()["period"][0]
    assert as_(cloud["teacher1"]).get(API + "Bad%20Name/").json()["name"][0].startswith("'Bad Name'")


def test_nobody_logged_in_is_refused_and_no_watch_online_is_a_503_saying_so(cloud, client):
    assert client.get(API).status_code in (401, 403)
    Server.objects.filter(role="watch").update(state="offline")
    answer = as_(cloud["teacher1"]).get(API)
    assert answer.status_code == 503 and "no watch host is online" in answer.json()["detail"]


def test_an_alarm_entering_alarm_notifies_through_the_clcs_alarm_actions(cloud):
    """The whole way: an alarm made through the CLC, points in the watch's store, the evaluation posting signed to
    this test server's ``alarm-actions/``, and a notification of the instance's owner-group."""
    post(cloud["teacher1"], alarm_on(OURS, period=60, evaluation_periods=1))
    t0 = 1_767_225_600
    store([MetricSample(namespace=INSTANCE_NAMESPACE, name="CPUUtilization", dimensions={"InstanceId": OURS},
                        timestamp=t0 + 5, value=97.0, unit="Percent")])
    assert evaluate_alarms(t0 + 90) == {"evaluated": 1, "changed": 1}
    (note,) = Notification.objects.all()
    assert (note.instance_id, note.owner_group, note.alarm, note.action) == (OURS, "edu.s1.c1", "busy", "notify")
    assert [row.reason for row in AlarmHistory.objects.filter(kind="action")] == ["notify: delivered to the CLC"]
