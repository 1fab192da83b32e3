"""What the CLC does when a watch alarm enters ALARM (``POST /clc/api/1.0/alarm-actions/``, signed by a watch
host): notify, stop and reboot a real instance through this test server's cluster controller, the guest watchdog
(recorded; started again when the instance says so), idempotency of a post repeated, and the endpoint's refusals."""

from __future__ import annotations

import pytest

from clc.services.instances import define_instance, run_instance, stop_instance
from clc.tests.classes import report
from luhyadb.models import Instance, Notification
from tests.commands import purge, queued
from tests.keys import enrolled_key

pytestmark = [pytest.mark.database, pytest.mark.django_db(transaction=True)]

URL = "/clc/api/1.0/alarm-actions/"
WHEN = 1_800_000_000.0


@pytest.fixture
def web(schools):
    """School 1's virtual server, placed on nc-1 by this test server's CC and reported running."""
    purge("nc-1")
    instance = define_instance(name="web", kind="vs", image=schools["images"]["edu.s1"], vm_type=schools["tiny"],
                               owner_group=schools["s1"])
    run_instance(instance)
    report(instance, "running")
    instance.refresh_from_db()
    assert (instance.state, instance.runs) == ("running", 1)
    queued("nc-1")  # the run's command
    return instance


def post(signed_client, key=None, **body):
    payload = {"alarm": "cpu-high", "action": "notify", "instance_id": "", "reason": "CPUUtilization 97 > 90",
               "state": "ALARM", "datapoints": [{"timestamp": WHEN - 60, "Average": 97.0}], "time": WHEN} | body
    return signed_client.post(URL, payload, key=key or enrolled_key("watch-1", "watch"))


def fresh(instance: Instance) -> Instance:
    return Instance.objects.get(pk=instance.pk)


def test_notify_records_a_notification_of_the_instances_owner_group_and_nothing_else(signed_client, web):
    answer = post(signed_client, instance_id=web.instance_id)
    assert answer.status_code == 202, answer.content
    assert (answer.json()["result"], answer.json()["repeated"]) == ("done", False)
    (note,) = Notification.objects.all()
    assert (note.instance_id, note.owner_group, note.alarm, note.action, note.read) == (
        web.instance_id, "edu.s1", "cpu-high", "notify", False)
    assert "CPUUtilization 97 > 90" in note.message
    assert fresh(web).state == "running"


def test_a_notify_without_an_instance_belongs_to_the_root_or_the_owner_group_posted(signed_client, schools):
    assert post(signed_client, alarm="disk-full").status_code == 202
    assert post(signed_client, alarm="class-cpu", owner_group="edu.s2").status_code == 202
    assert dict(Notification.objects.values_list("alarm", "owner_group")) == {"disk-full": "edu",
                                                                              "class-cpu": "edu.s2"}


def test_stop_stops_the_instance_through_its_cluster_and_the_nodes_report_ends_it(signed_client, web):
    answer = post(signed_client, action="stop", instance_id=web.instance_id)
    assert answer.status_code == 202, answer.content
    assert answer.json()["result"] == "done"
    assert fresh(web).state == "stopping"
    assert [command.op for command in queued("nc-1")] == ["instance/stop"]
    report(web, "stopped")
    assert fresh(web).state == "stopped"
    assert fresh(web).runs == 1  # a stop is not started again
    (note,) = Notification.objects.filter(instance_id=web.instance_id)
    assert (note.action, note.level) == ("stop", "warning")
    assert "stopped" in note.title


def test_the_same_alarm_and_time_posted_twice_make_one_notification_and_one_stop(signed_client, web):
    first = post(signed_client, action="stop", instance_id=web.instance_id)
    again = post(signed_client, action="stop", instance_id=web.instance_id, reason="worded otherwise")
    assert (first.status_code, again.status_code) == (202, 202)
    assert (first.json()["repeated"], again.json()["repeated"]) == (False, True)
    assert first.json()["notification"] == again.json()["notification"]
    assert [command.op for command in queued("nc-1")] == ["instance/stop"]
    assert Notification.objects.count() == 1
    later = post(signed_client, action="stop", instance_id=web.instance_id, time=WHEN + 60)
    assert (later.json()["repeated"], later.json()["result"]) == (False, "nothing to do")  # stopping already
    assert Notification.objects.count() == 2


def test_stop_of_an_instance_that_is_not_running_records_nothing_to_do(signed_client, web):
    stop_instance(web)
    report(web, "stopped")
    queued("nc-1")
    answer = post(signed_client, action="stop", instance_id=web.instance_id)
    assert answer.status_code == 202
    assert answer.json()["result"] == "nothing to do"
    assert "stopped, not running" in answer.json()["message"]
    assert queued("nc-1") == []
    assert Notification.objects.get().action == "stop"


def test_reboot_stops_now_and_starts_again_once_the_node_reports_it_stopped(signed_client, web):
    answer = post(signed_client, action="reboot", instance_id=web.instance_id)
    assert answer.status_code == 202, answer.content
    assert answer.json()["result"] == "done"
    stopping = fresh(web)
    assert (stopping.state, stopping.restart_after_run) == ("stopping", 1)
    assert [command.op for command in queued("nc-1")] == ["instance/stop"]
    report(web, "stopped")
    again = fresh(web)
    assert (again.runs, again.state, again.node, again.restart_after_run) == (2, "scheduled", "nc-1", 0)
    assert [command.op for command in queued("nc-1")] == ["instance/run"]
    titles = list(Notification.objects.order_by("pk").values_list("action", "title"))
    assert [action for action, _ in titles] == ["reboot", "restart"]
    assert "started again" in titles[1][1]
    report(web, "stopped")  # the same report again (a redelivery): started once only
    assert fresh(web).runs == 2


def test_a_reboot_refused_by_the_cluster_leaves_the_instance_as_it_was_and_says_why(signed_client, web):
    from luhyadb.models import Server

    Server.objects.filter(role="cc").update(state="offline")
    answer = post(signed_client, action="reboot", instance_id=web.instance_id)
    assert answer.status_code == 202
    assert answer.json()["result"] == "failed"
    assert "no online cluster controller" in answer.json()["message"]
    instance = fresh(web)
    assert (instance.state, instance.restart_after_run) == ("running", 0)
    assert Notification.objects.get().level == "error"


def test_watchdog_on_a_run_the_node_ended_unasked_starts_it_again_when_the_instance_says_so(signed_client, web):
    Instance.objects.filter(pk=web.pk).update(restart_when_dead=True)
    report(web, "stopped")  # the node's watcher: the guest powered itself off, nobody asked
    assert fresh(web).died_run == 1
    queued("nc-1")
    answer = post(signed_client, alarm=f"watchdog-{web.instance_id}", action="watchdog", instance_id=web.instance_id)
    assert answer.status_code == 202, answer.content
    assert "stopped or hung from inside" in answer.json()["title"]
    assert "started again" in answer.json()["message"]
    again = fresh(web)
    assert (again.runs, again.state) == (2, "scheduled")
    assert [command.op for command in queued("nc-1")] == ["instance/run"]


def test_watchdog_while_the_clc_still_has_it_running_starts_it_again_after_the_nodes_stop(signed_client, web):
    Instance.objects.filter(pk=web.pk).update(restart_when_dead=True)
    answer = post(signed_client, alarm=f"watchdog-{web.instance_id}", action="watchdog", instance_id=web.instance_id)
    assert answer.status_code == 202
    assert "once its node reports the run ended" in answer.json()["message"]
    assert (fresh(web).state, fresh(web).restart_after_run) == ("running", 1)
    report(web, "stopped")
    assert (fresh(web).runs, fresh(web).state) == (2, "scheduled")
    assert Notification.objects.order_by("pk").last().action == "restart"


def test_watchdog_without_restart_when_dead_records_what_happened_and_leaves_it_stopped(signed_client, web):
    report(web, "stopped")
    answer = post(signed_client, alarm=f"watchdog-{web.instance_id}", action="watchdog", instance_id=web.instance_id)
    assert answer.status_code == 202
    assert "not started again" in answer.json()["message"]
    assert (fresh(web).state, fresh(web).runs) == ("stopped", 1)
    note = Notification.objects.get()
    assert (note.instance_id, note.action, note.level) == (web.instance_id, "watchdog", "error")


def test_watchdog_after_someone_stopped_the_instance_does_nothing(signed_client, web):
    Instance.objects.filter(pk=web.pk).update(restart_when_dead=True)
    stop_instance(web)
    report(web, "stopped")
    answer = post(signed_client, alarm=f"watchdog-{web.instance_id}", action="watchdog", instance_id=web.instance_id)
    assert answer.status_code == 202
    assert answer.json()["result"] == "nothing to do"
    assert (fresh(web).state, fresh(web).runs, fresh(web).died_run) == ("stopped", 1, 0)


@pytest.mark.parametrize("change, field", [
    ({"action": "explode"}, "action"), ({"instance_id": "ins-xyz"}, "instance_id"), ({"time": "soon"}, "time"),
    ({"time": -5}, "time"), ({"alarm": ""}, "alarm"), ({"alarm": "x" * 300}, "alarm"),
    ({"owner_group": "Not A Path"}, "owner_group"), ({"datapoints": "many"}, "datapoints"),
    ({"state": "ON_FIRE"}, "state"), ({"action": "stop", "instance_id": ""}, "instance_id"),
])
def test_a_malformed_post_is_a_400_naming_the_field(signed_client, schools, change, field):
    answer = post(signed_client, **change)
    assert answer.status_code == 400, answer.content
    assert field in answer.json()
    assert not Notification.objects.exists()


def test_an_unknown_instance_is_a_404_naming_it(signed_client, schools):
    answer = post(signed_client, action="stop", instance_id="ins-0000dead")
    assert answer.status_code == 404
    assert "ins-0000dead" in answer.json()["instance_id"][0]


def test_only_watch_hosts_may_post_alarm_actions(signed_client, api_client, schools):
    from django.test import Client

    assert post(signed_client, key=enrolled_key("nc-9", "nc")).status_code == 403
    assert api_client.post(URL, {"alarm": "x", "action": "notify", "time": WHEN}).status_code == 403
    assert Client().post(URL, {"alarm": "x", "action": "notify", "time": WHEN},
                         content_type="application/json").status_code == 401
    assert not Notification.objects.exists()


def test_posts_of_one_action_arriving_at_once_make_one_notification(schools):
    """Four threads, each with its own connection, post the same action at the same moment: the unique event key
    lets one carry it out. (In-memory SQLite is per connection: the MariaDB run proves it.)"""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    from django.db import connection

    from clc.services.alarm_actions import AlarmAction, take_alarm_action

    if connection.vendor != "mysql":
        pytest.skip("threads share the database only on MariaDB (in-memory SQLite is per connection)")
    barrier = threading.Barrier(4)

    def post_once(_) -> bool:
        barrier.wait()
        try:
            return take_alarm_action(AlarmAction(alarm="disk-full", action="notify", time=WHEN)).repeated
        finally:
            connection.close()

    with ThreadPoolExecutor(4) as pool:
        repeated = sorted(pool.map(post_once, range(4)))
    assert repeated == [False, True, True, True]
    assert Notification.objects.count() == 1
