"""The CLC's metric API for people over two schools, forwarded signed to this test server's own watch role (a live
server that the CLC knows as an online watch host), with samples stored by the real store: a teacher of the class
gets its instance's datapoints, a teacher of another branch a 404 as for an instance that does not exist; owner-group
metrics by the same rule; host and cluster metrics for the cloud's administrators only; bad input a 400 naming the
field (the watch's own 400 passed on as it was), no watch host a 503."""

from __future__ import annotations

import time
from urllib.parse import urlencode

import pytest

from clc.tests.classes import as_
from luhyaapi.metrics import INSTANCE_NAMESPACE, MetricSample
from luhyadb.models import Instance, Server
from watch.services.store import store

pytestmark = [pytest.mark.database, pytest.mark.django_db(transaction=True)]

API = "/clc/api/1.0"
HOUR = int(time.time() // 3600) * 3600 - 3600
OURS = "ins-0000c1c1"


@pytest.fixture
def watched(schools, live_server):
    """Our instance in class edu.s1.c1 (assigned to the first student) and one of school 2, an hour of CPU of each
    in the store, and this test server online as the cloud's watch host."""
    Server.objects.create(role="watch", name="watch-1", ip="127.0.0.1", cluster="cluster1", api_url=live_server.url,
                          state="online")
    owners = {OURS: (schools["c1"], schools["images"]["edu.s1"]), "ins-0000s2s2": (schools["s2"],
                                                                                    schools["images"]["edu.s2"])}
    for instance_id, (group, image) in owners.items():
        Instance.objects.create(instance_id=instance_id, name=instance_id, kind="rvd", image=image,
                                vm_type=schools["tiny"], owner_group=group,
                                assigned_to=schools["students"][0] if instance_id == OURS else None)
    samples = [MetricSample(namespace=INSTANCE_NAMESPACE, name="CPUUtilization", timestamp=HOUR + minute * 60,
                            value=value, unit="Percent", dimensions={
                                "InstanceId": instance_id, "Cluster": "cluster1", "OwnerGroup": group.path})
               for minute in range(60) for instance_id, (group, _), value in
               ((OURS, owners[OURS], 20.0), ("ins-0000s2s2", owners["ins-0000s2s2"], 80.0))]
    store(samples)
    return schools


def statistics(client, dimensions: str, **params):
    query = {"namespace": INSTANCE_NAMESPACE, "name": "CPUUtilization", "dimensions": dimensions, "start": HOUR,
             "end": HOUR + 3600, "period": 3600, "statistics": "Average,SampleCount"} | params
    return client.get(f"{API}/metrics/statistics/?{urlencode(query)}")


def test_a_teacher_of_the_class_gets_the_datapoints_of_its_instance(watched):
    teacher = as_(watched["teacher1"])
    answer = statistics(teacher, f"InstanceId={OURS}")
    assert answer.status_code == 200, answer.content
    assert answer.json()["datapoints"] == [{"timestamp": HOUR, "Average": 20.0, "SampleCount": 60.0}]
    listed = teacher.get(f"{API}/metrics/?dimensions=InstanceId={OURS}").json()
    assert listed["count"] == 1 and listed["results"][0]["dimensions"]["InstanceId"] == OURS


def test_a_teacher_of_another_branch_gets_404_for_our_instances_metrics_as_for_no_instance(watched):
    teacher = as_(watched["teacher2"])
    ours = statistics(teacher, f"InstanceId={OURS}")
    unknown = statistics(teacher, "InstanceId=ins-0000dead")
    assert ours.status_code == unknown.status_code == 404
    assert ours.json()["detail"].replace(OURS, "?") == unknown.json()["detail"].replace("ins-0000dead", "?")
    assert teacher.get(f"{API}/metrics/?dimensions=InstanceId={OURS}").status_code == 404
    assert statistics(teacher, "InstanceId=ins-0000s2s2").json()["datapoints"][0]["Average"] == 80.0


def test_a_student_gets_the_metrics_of_the_desktop_assigned_to_them_only(watched):
    assert statistics(as_(watched["students"][0]), f"InstanceId={OURS}").status_code == 200
    assert statistics(as_(watched["students"][1]), f"InstanceId={OURS}").status_code == 404


def test_owner_group_metrics_are_for_who_may_read_the_groups_instances(watched):
    answer = statistics(as_(watched["teacher1"]), "OwnerGroup=edu.s1.c1")
    assert answer.json()["datapoints"] == [{"timestamp": HOUR, "Average": 20.0, "SampleCount": 60.0}]
    assert statistics(as_(watched["teacher2"]), "OwnerGroup=edu.s1.c1").status_code == 404
    assert statistics(as_(watched["students"][0]), "OwnerGroup=edu.s1.c1").status_code == 404


def test_cluster_and_host_metrics_are_for_the_clouds_administrators_only(watched, staff):
    for who in (watched["head1"], watched["teacher1"], watched["students"][0]):
        response = statistics(as_(who), "Cluster=cluster1")
        assert response.status_code == 403 and "administrators" in response.json()["detail"]
        assert as_(who).get(f"{API}/metrics/?namespace=eduCloud/Host").status_code == 403
    whole = statistics(staff, "Cluster=cluster1")
    assert whole.json()["datapoints"] == [{"timestamp": HOUR, "Average": 50.0, "SampleCount": 120.0}]
    assert staff.get(f"{API}/metrics/").json()["count"] == 2


@pytest.mark.parametrize(("params", "field"), [
    ({"period": 90}, "period"), ({"end": HOUR - 60}, "end"), ({"statistics": "Median"}, "statistics"),
    ({"dimensions": ",".join(f"Tag{n}=x" for n in range(10_000))}, "dimensions"),
    ({"dimensions": f"InstanceId={OURS},InstanceId=ins-0000s2s2"}, "dimensions"),
])
def test_bad_input_is_a_400_naming_the_field(watched, params, field):
    asked = {"dimensions": f"InstanceId={OURS}"} | params
    response = statistics(as_(watched["teacher1"]), **asked)
    assert response.status_code == 400 and field in response.json(), response.content


def test_the_watchs_own_refusal_comes_back_as_it_was(watched):
    old = HOUR - 30 * 86400
    response = statistics(as_(watched["teacher1"]), f"InstanceId={OURS}", start=old, end=old + 3600, period=60)
    assert response.status_code == 400
    assert "watch.raw_days" in response.json()["period"][0]


def test_without_an_online_watch_host_the_answer_is_503_saying_so(watched):
    Server.objects.filter(role="watch").update(state="offline")
    response = statistics(as_(watched["teacher1"]), f"InstanceId={OURS}")
    assert response.status_code == 503 and "no watch host is online" in response.json()["detail"]


def test_nobody_logged_in_is_401_and_hosts_are_refused(watched, client, signed_client):
    assert client.get(f"{API}/metrics/?dimensions=InstanceId={OURS}").status_code == 401
    assert signed_client.get(f"{API}/metrics/?dimensions=InstanceId={OURS}").status_code == 403
