"""Evaluating alarms over points stored in the real metric store: each change recorded with its datapoints, the
actions of an alarm entering ALARM posted, signed, to the CLC (here a small HTTP server of the test's own that
records what it gets and checks each post's signature, until the CLC's ``alarm-actions/`` lands), a CLC that does
not answer recorded and posted to again while the alarm stays in ALARM, hooks run in process (an unknown one
recorded, not raised), one change however many evaluators, and the guest watchdog's built-in alarms."""

from __future__ import annotations

import json
import random
import threading
from dataclasses import replace
from wsgiref.simple_server import WSGIRequestHandler, make_server

import pytest

from luhyaapi.metrics import INSTANCE_NAMESPACE, MetricSample
from luhyaapi.signing import canonical_host, canonical_path, verify
from luhyaapi.trust import own_key
from watch.models import Alarm, AlarmHistory, AlarmHistoryKind, AlarmState
from watch.services import alarm_hooks
from watch.services.alarms import (
    change_state,
    decide,
    evaluate_alarms,
    read_window,
    rule_of,
    sync_watchdog_alarms,
    watchdog_windows,
)
from watch.services.store import store

pytestmark = [pytest.mark.database, pytest.mark.django_db]

T0 = 1_767_225_600  # an hour's start
INS = "ins-0000abcd"
DIMENSIONS = {"InstanceId": INS, "NodeName": "nc-1", "Cluster": "c1", "OwnerGroup": "edu.s1.c1"}


class _Quiet(WSGIRequestHandler):
    def log_message(self, format, *args):
        pass


class ClcRecorder:
    """A stand-in for the CLC's ``alarm-actions/``: records each request (method, path, body, whether its
    signature verifies against this host's key) and answers ``status``."""

    def __init__(self) -> None:
        self.requests: list[dict] = []
        self.status = "202 Accepted"
        self.server = make_server("127.0.0.1", 0, self.app, handler_class=_Quiet)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def app(self, environ, start_response):
        body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        headers = {key[5:].replace("_", "-").title(): value for key, value in environ.items()
                   if key.startswith("HTTP_")}
        key = own_key()
        try:
            sender, _ = verify(lambda name: key.public_key if name == key.name else None, environ["REQUEST_METHOD"],
                               canonical_host(environ["HTTP_HOST"], "http"),
                               canonical_path(environ["PATH_INFO"], environ.get("QUERY_STRING", "")), body, headers)
        except Exception as exc:  # recorded: the test asserts every post verified
            sender = f"refused: {exc}"
        self.requests.append({"method": environ["REQUEST_METHOD"], "path": environ["PATH_INFO"], "sender": sender,
                              "body": json.loads(body) if body else None})
        start_response(self.status, [("Content-Type", "application/json")])
        return [b'{"accepted": true}' if self.status.startswith("2") else b'{"detail": "down for the test"}']

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def clc(cloud_at):
    recorder = ClcRecorder()
    cloud_at(recorder.url)
    yield recorder
    recorder.close()


def cpu(minute: int, value: float, dimensions: dict | None = None, name: str = "CPUUtilization") -> MetricSample:
    return MetricSample(namespace=INSTANCE_NAMESPACE, name=name, dimensions=dimensions or DIMENSIONS,
                        timestamp=T0 + minute * 60 + 5, value=value, unit="Percent")


def alive(minute: int, value: float, instance_id: str = INS) -> MetricSample:
    return cpu(minute, value, DIMENSIONS | {"InstanceId": instance_id}, name="Alive")


def at(minute: int) -> float:
    """An evaluation time inside ``minute``: the minutes before it are whole."""
    return T0 + minute * 60 + 30


def cpu_alarm(**changes) -> Alarm:
    fields = {"name": "busy", "namespace": INSTANCE_NAMESPACE, "metric": "CPUUtilization",
              "dimensions": {"InstanceId": INS}, "statistic": "Average", "comparison": "GreaterThanThreshold",
              "threshold": 90.0, "period": 60, "evaluation_periods": 2, "actions": ["notify", "stop"]}
    return Alarm.objects.create(**(fields | changes))


def history(alarm: Alarm, kind: str = AlarmHistoryKind.STATE) -> list[AlarmHistory]:
    return list(AlarmHistory.objects.filter(alarm=alarm, kind=kind).order_by("time", "id"))


def test_an_alarm_entering_alarm_records_the_datapoints_and_posts_its_actions_signed_to_the_clc(clc):
    alarm = cpu_alarm()
    store([cpu(0, 95.0), cpu(1, 97.0), cpu(2, 10.0)])
    assert evaluate_alarms(at(2)) == {"evaluated": 1, "changed": 1}
    alarm.refresh_from_db()
    assert alarm.state == AlarmState.ALARM and alarm.state_changed == at(2)
    [change] = history(alarm)
    assert (change.old_state, change.new_state) == (AlarmState.INSUFFICIENT_DATA, AlarmState.ALARM)
    assert change.datapoints == [{"timestamp": T0, "value": 95.0}, {"timestamp": T0 + 60, "value": 97.0}]
    assert change.reason == "Threshold Crossed: 2 datapoints [95.0, 97.0] were greater than the threshold (90.0)."
    assert [(request["method"], request["path"]) for request in clc.requests] == [
        ("POST", "/clc/api/1.0/alarm-actions/")] * 2
    assert {request["sender"] for request in clc.requests} == {own_key().name}, "each post signed by this host"
    assert [request["body"] for request in clc.requests] == [
        {"alarm": "busy", "action": action, "instance_id": INS, "reason": change.reason, "state": "ALARM",
         "datapoints": change.datapoints, "time": at(2), "owner_group": ""} for action in ("notify", "stop")]
    assert [row.reason for row in history(alarm, AlarmHistoryKind.ACTION)] == [
        "notify: delivered to the CLC", "stop: delivered to the CLC"]
    assert alarm.pending_actions == []


def test_an_alarm_that_stays_in_alarm_posts_nothing_more_and_records_nothing_more(clc):
    alarm = cpu_alarm(actions=["notify"])
    store([cpu(0, 95.0), cpu(1, 97.0), cpu(2, 99.0), cpu(3, 99.0)])
    evaluate_alarms(at(2))
    assert evaluate_alarms(at(3)) == {"evaluated": 1, "changed": 0}
    assert evaluate_alarms(at(4)) == {"evaluated": 1, "changed": 0}
    assert len(clc.requests) == 1 and len(history(alarm)) == 1


def test_a_calm_period_brings_the_alarm_back_to_ok_and_missing_data_to_insufficient_data(clc):
    alarm = cpu_alarm(actions=[])
    store([cpu(0, 95.0), cpu(1, 97.0), cpu(2, 40.0)])
    evaluate_alarms(at(2))
    evaluate_alarms(at(3))
    evaluate_alarms(at(10))  # minutes 8 and 9 have no points
    states = [(row.old_state, row.new_state, row.time) for row in history(alarm)]
    assert states == [(AlarmState.INSUFFICIENT_DATA, AlarmState.ALARM, at(2)),
                      (AlarmState.ALARM, AlarmState.OK, at(3)),
                      (AlarmState.OK, AlarmState.INSUFFICIENT_DATA, at(10))]
    assert history(alarm)[1].datapoints == [{"timestamp": T0 + 60, "value": 97.0}, {"timestamp": T0 + 120,
                                                                                    "value": 40.0}]
    assert clc.requests == [], "only entering ALARM runs actions"


def test_the_alarm_aggregates_every_series_with_its_dimensions(clc):
    other_node = DIMENSIONS | {"NodeName": "nc-2"}  # the instance moved to another node: a second series
    alarm = cpu_alarm(statistic="Maximum", evaluation_periods=1, actions=[])
    store([cpu(0, 10.0), cpu(0, 99.0, other_node)])
    evaluate_alarms(at(1))
    alarm.refresh_from_db()
    assert alarm.state == AlarmState.ALARM


def test_a_period_of_five_minutes_reads_the_rollups_and_decides_the_same(clc):
    alarm = cpu_alarm(period=300, evaluation_periods=1, actions=[])
    store([cpu(minute, 80.0 + minute * 5) for minute in range(5)])  # 80..100: average 90, maximum 100
    evaluate_alarms(at(5))
    alarm.refresh_from_db()
    assert alarm.state == AlarmState.OK, "the average (90.0) is not greater than 90"
    assert history(alarm)[-1].datapoints == [{"timestamp": T0, "value": 90.0}]


def test_a_clc_that_does_not_answer_is_recorded_and_posted_to_again_while_the_alarm_stays_in_alarm(clc):
    alarm = cpu_alarm(actions=["notify"], evaluation_periods=1)
    clc.status = "503 Service Unavailable"
    store([cpu(0, 95.0), cpu(1, 96.0), cpu(2, 97.0)])
    evaluate_alarms(at(1))
    evaluate_alarms(at(2))
    alarm.refresh_from_db()
    assert len(clc.requests) == 2, "posted at each evaluation"
    [failure] = history(alarm, AlarmHistoryKind.ACTION)  # recorded once, not at every attempt
    assert failure.reason.startswith("notify: not delivered: the CLC did not take it") and "503" in failure.reason
    assert [entry["attempts"] for entry in alarm.pending_actions] == [2]
    clc.status = "202 Accepted"
    evaluate_alarms(at(3))
    alarm.refresh_from_db()
    assert alarm.pending_actions == []
    assert history(alarm, AlarmHistoryKind.ACTION)[-1].reason == "notify: delivered to the CLC (attempt 3)"
    assert [request["body"]["time"] for request in clc.requests] == [at(1)] * 3, "the same post each time"


def test_a_post_the_clc_refuses_as_wrong_is_recorded_and_not_posted_again(clc):
    alarm = cpu_alarm(actions=["stop"], evaluation_periods=1)
    clc.status = "404 Not Found"
    store([cpu(0, 95.0), cpu(1, 96.0)])
    evaluate_alarms(at(1))
    evaluate_alarms(at(2))
    alarm.refresh_from_db()
    assert len(clc.requests) == 1 and alarm.state == AlarmState.ALARM and alarm.pending_actions == []
    assert [row.reason for row in history(alarm, AlarmHistoryKind.ACTION)] == [
        "stop: the CLC refused it: 404: down for the test; not posted again"]


def test_a_clc_nobody_listens_on_is_recorded_like_one_that_does_not_answer(cloud_at):
    cloud_at("http://127.0.0.1:9")
    alarm = cpu_alarm(actions=["reboot"], evaluation_periods=1)
    store([cpu(0, 95.0)])
    evaluate_alarms(at(1))
    alarm.refresh_from_db()
    [failure] = history(alarm, AlarmHistoryKind.ACTION)
    assert failure.reason.startswith("reboot: not delivered") and alarm.pending_actions[0]["post"]["action"] == "reboot"


def test_actions_not_delivered_before_the_alarm_leaves_alarm_are_dropped_and_recorded(clc):
    alarm = cpu_alarm(actions=["notify"], evaluation_periods=1)
    clc.status = "503 Service Unavailable"
    store([cpu(0, 95.0), cpu(1, 10.0)])
    evaluate_alarms(at(1))
    evaluate_alarms(at(2))
    alarm.refresh_from_db()
    assert alarm.state == AlarmState.OK and alarm.pending_actions == []
    assert history(alarm, AlarmHistoryKind.ACTION)[-1].reason == (
        "notify: not delivered to the CLC before the alarm left ALARM (1 attempt); dropped")


def test_a_hook_runs_in_process_with_the_alarms_event_and_an_unknown_hook_is_recorded_not_raised(clc):
    seen = []
    alarm_hooks.register("scale-out", seen.append)
    try:
        alarm = cpu_alarm(actions=["hook:scale-out", "hook:nobody-registered"], evaluation_periods=1)
        store([cpu(0, 95.0)])
        assert evaluate_alarms(at(1)) == {"evaluated": 1, "changed": 1}
    finally:
        alarm_hooks.unregister("scale-out")
    [event] = seen
    assert (event.alarm, event.state, event.dimensions, event.time) == ("busy", "ALARM", {"InstanceId": INS}, at(1))
    assert event.datapoints == [{"timestamp": T0, "value": 95.0}]
    assert [row.reason for row in history(alarm, AlarmHistoryKind.ACTION)] == [
        "hook:scale-out: ran", "hook:nobody-registered: no hook 'nobody-registered' is registered in this watch "
                               "process"]
    assert clc.requests == [], "hooks are not posted to the CLC"


def test_a_hook_that_fails_is_recorded_and_the_other_alarms_are_still_evaluated(clc):
    def broken(event):
        raise RuntimeError("autoscaler out of capacity")

    alarm_hooks.register("broken", broken)
    try:
        first = cpu_alarm(name="a-first", actions=["hook:broken"], evaluation_periods=1)
        second = cpu_alarm(name="b-second", actions=["notify"], evaluation_periods=1)
        store([cpu(0, 95.0)])
        assert evaluate_alarms(at(1)) == {"evaluated": 2, "changed": 2}
    finally:
        alarm_hooks.unregister("broken")
    assert history(first, AlarmHistoryKind.ACTION)[0].reason == (
        "hook:broken: failed: RuntimeError: autoscaler out of capacity")
    assert history(second, AlarmHistoryKind.ACTION)[0].reason == "notify: delivered to the CLC"


def test_two_evaluators_of_one_alarm_change_it_once(clc):
    alarm = cpu_alarm(actions=["notify"], evaluation_periods=1)
    store([cpu(0, 95.0)])
    first, second = Alarm.objects.get(pk=alarm.pk), Alarm.objects.get(pk=alarm.pk)  # both read it in OK's stead
    start, values = read_window(first, at(1))
    decision = decide(rule_of(first), first.state, values, start)
    assert change_state(first, decision, at(1)) is True
    assert change_state(second, decision, at(1) + 0.5) is False, "the second saw a state that was no longer"
    assert len(history(alarm)) == 1
    assert len(Alarm.objects.get(pk=alarm.pk).pending_actions) == 1, "the actions queued once"


def test_a_disabled_alarm_is_not_evaluated(clc):
    alarm = cpu_alarm(enabled=False)
    store([cpu(0, 95.0), cpu(1, 97.0)])
    assert evaluate_alarms(at(2)) == {"evaluated": 0, "changed": 0}
    assert history(alarm) == []


def test_the_guest_watchdog_is_made_for_an_instance_sending_alive_and_fires_when_the_guest_stops(clc):
    store([alive(0, 1.0)])
    evaluate_alarms(at(1))
    watchdog = Alarm.objects.get(name=f"watchdog-{INS}")
    assert watchdog.builtin and watchdog.owner_group == "edu.s1.c1" and watchdog.state == AlarmState.OK
    assert (watchdog.metric, watchdog.statistic, watchdog.comparison, watchdog.threshold, watchdog.period,
            watchdog.evaluation_periods) == ("Alive", "Minimum", "LessThanThreshold", 1.0, 60, 1)
    store([alive(1, 0.0)])  # the guest powered itself off: the node still sees its VM, not alive
    evaluate_alarms(at(2))
    watchdog.refresh_from_db()
    assert watchdog.state == AlarmState.ALARM
    assert [request["body"] | {"reason": ""} for request in clc.requests] == [
        {"alarm": f"watchdog-{INS}", "action": "watchdog", "instance_id": INS, "reason": "", "state": "ALARM",
         "datapoints": [{"timestamp": T0 + 60, "value": 0.0}], "time": at(2), "owner_group": "edu.s1.c1"}]


def test_the_watchdogs_evidence_stored_after_its_period_was_evaluated_still_fires_it(clc):
    """The Alive 0 of a guest that powered itself off is the last point of its run: late for its own period's
    evaluation, it is found at the next one, and nothing comes after it."""
    store([alive(0, 1.0), alive(1, 1.0)])
    evaluate_alarms(at(2))  # minute 1 evaluated: alive
    store([alive(1, 0.0).model_copy(update={"timestamp": T0 + 60 + 50})])  # its last sample, of minute 1, arrives now
    evaluate_alarms(at(3))
    watchdog = Alarm.objects.get(name=f"watchdog-{INS}")
    assert watchdog.state == AlarmState.ALARM
    assert [request["body"]["action"] for request in clc.requests] == ["watchdog"]
    evaluate_alarms(at(9))  # stopped since: nothing more comes, the state stays
    watchdog.refresh_from_db()
    assert watchdog.state == AlarmState.ALARM and len(clc.requests) == 1


def test_the_watchdog_keeps_its_state_while_the_instance_sends_nothing(clc):
    store([alive(0, 1.0)])
    evaluate_alarms(at(1))
    evaluate_alarms(at(30))  # stopped: no points for half an hour
    watchdog = Alarm.objects.get(name=f"watchdog-{INS}")
    assert watchdog.state == AlarmState.OK and len(history(watchdog)) == 1
    assert clc.requests == []


def test_a_watchdog_goes_when_its_instance_has_sent_nothing_for_the_raw_days(clc, settings):
    store([alive(0, 1.0), alive(0, 1.0, "ins-0000beef")])
    evaluate_alarms(at(1))
    assert set(Alarm.objects.filter(builtin=True).values_list("name", flat=True)) == {
        f"watchdog-{INS}", "watchdog-ins-0000beef"}
    store([alive(int(settings.EDUCLOUD.watch_raw_days * 1440) + 5, 1.0)])  # only INS later on
    evaluate_alarms(at(int(settings.EDUCLOUD.watch_raw_days * 1440) + 6))
    assert set(Alarm.objects.filter(builtin=True).values_list("name", flat=True)) == {f"watchdog-{INS}"}


@pytest.mark.parametrize("seed", range(5))
def test_every_watchdogs_window_read_at_once_is_what_its_own_query_reads(clc, seed):
    """Random Alive points of 12 instances over 8 minutes, some instances with two series (their labels changed),
    some silent lately: at each minute, every watchdog's window from ``watchdog_windows`` (one query for all) is the
    window ``read_window`` reads for that alarm alone through the query API."""
    rng = random.Random(seed)
    instances = [f"ins-0000{n:04x}" for n in range(12)]
    samples = []
    for minute in range(8):
        for number, instance in enumerate(instances):
            if rng.random() < 0.7:
                extra = {"ImageId": "img-0000000b"} if number % 4 == 0 and rng.random() < 0.5 else {}
                samples.append(alive(minute, rng.choice([0.0, 1.0]), instance).model_copy(update={
                    "timestamp": T0 + minute * 60 + rng.uniform(0, 59.9),
                    "dimensions": DIMENSIONS | {"InstanceId": instance} | extra}))
    samples.append(cpu(3, 50.0))  # another metric of an instance: not the watchdog's
    store(samples)
    sync_watchdog_alarms(at(8))
    watchdogs = list(Alarm.objects.filter(builtin=True))
    assert len(watchdogs) == len({sample.dimensions["InstanceId"] for sample in samples if sample.name == "Alive"})
    for minute in range(1, 10):
        together = watchdog_windows(at(minute))
        for watchdog in watchdogs:
            assert read_window(watchdog, at(minute), together) == read_window(watchdog, at(minute)), (
                watchdog.name, minute)


def test_an_alarm_of_a_person_on_alive_is_read_alone_not_as_a_watchdog(clc):
    store([alive(0, 0.0), alive(0, 1.0, "ins-0000beef")])
    mine = cpu_alarm(name="any-dead", metric="Alive", dimensions={"Cluster": "c1"}, statistic="Minimum",
                     comparison="LessThanThreshold", threshold=1.0, evaluation_periods=1, actions=["notify"])
    evaluate_alarms(at(1))
    mine.refresh_from_db()
    assert mine.state == AlarmState.ALARM, "the cluster's minimum over both instances' series"
    assert Alarm.objects.get(name=f"watchdog-{INS}").state == AlarmState.ALARM
    assert Alarm.objects.get(name="watchdog-ins-0000beef").state == AlarmState.OK


def test_watchdogs_are_read_one_by_one_where_raw_points_are_not_kept_that_long(clc, settings):
    settings.EDUCLOUD = replace(settings.EDUCLOUD, watch_raw_days=0.001)  # 86 s: shorter than the window
    assert watchdog_windows(at(5)) is None


def test_evaluating_again_makes_no_second_watchdog(clc):
    store([alive(0, 1.0)])
    evaluate_alarms(at(1))
    evaluate_alarms(at(1))
    assert Alarm.objects.filter(builtin=True).count() == 1


@pytest.mark.django_db(transaction=True)
def test_two_workers_evaluating_at_once_record_one_change_and_post_each_action_once(clc):
    from django.db import connection

    alarm = cpu_alarm(actions=["notify"], evaluation_periods=1)
    store([cpu(0, 95.0)] + [cpu(0, 95.0, DIMENSIONS | {"InstanceId": f"ins-0000{n:04x}"}) for n in range(20)])
    for n in range(20):  # more alarms, so the two workers overlap
        cpu_alarm(name=f"other-{n}", dimensions={"InstanceId": f"ins-0000{n:04x}"}, actions=["notify"],
                  evaluation_periods=1)
    barrier, results = threading.Barrier(2), []

    def worker():
        try:
            barrier.wait()
            results.append(evaluate_alarms(at(1)))
        finally:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sum(result["changed"] for result in results) == 21 and len(results) == 2
    assert AlarmHistory.objects.filter(kind=AlarmHistoryKind.STATE).count() == 21
    assert len(history(alarm)) == 1
    assert sorted(request["body"]["alarm"] for request in clc.requests) == sorted(
        ["busy"] + [f"other-{n}" for n in range(20)]), "each action posted once"
