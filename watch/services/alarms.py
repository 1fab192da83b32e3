"""The watch role's alarms (issue 17): the state machine, its evaluation every minute, the actions an alarm that
enters ALARM runs, and the guest watchdog's built-in alarms.

- ``decide`` is the state machine, a pure function: an alarm's rule, its current state and the statistic of each of
  its last ``evaluation_periods`` periods that had data give its new state and the reason, in CloudWatch's words.
  ALARM when every one of those periods has a datapoint that breaches the threshold; OK when some period has a
  datapoint and not all of them breach (a period without one counts as not breaching); INSUFFICIENT_DATA when no
  period has one. The guest watchdog's alarms keep their state instead: an instance that is stopped sends nothing,
  and that is no news about its guest.
- ``evaluate_alarms(now)`` reads each enabled alarm's window from the store (every series that has the alarm's
  dimensions, as the query API's filter), decides, and records a change in ``AlarmHistory`` with the datapoints.
  The guest watchdog's alarms, one per instance and all of one shape, have their windows read together, in one
  query (``watchdog_windows``): a cloud of 10,000 instances is not 10,000 queries a pass.
  Two evaluators at once (two watch workers) change an alarm once: the change is a compare-and-set on the state it
  read, and only the evaluator whose update took records it and starts the actions.
- Actions start when an alarm ENTERS ALARM: ``hook:<name>`` runs in this process (``alarm_hooks``), every other
  one is posted to the CLC (``alarm_actions``). A post the CLC did not take stays in the alarm's
  ``pending_actions`` and is posted again at each evaluation while the alarm stays in ALARM; its first failure,
  its delivery and its being dropped (the alarm left ALARM first) are each a row of the history. A post the CLC
  refuses as wrong (400, 404: an instance it does not have) is recorded and not posted again.
"""

from __future__ import annotations

import logging
import operator
from collections.abc import Mapping
from dataclasses import dataclass

from django.conf import settings
from django.db import transaction
from django.db.models import Exists, F, OuterRef

from luhyaapi.metrics import INSTANCE_NAMESPACE
from watch.models import (
    Alarm,
    AlarmComparison,
    AlarmHistory,
    AlarmHistoryKind,
    AlarmState,
    MetricPoint,
    SeriesDimension,
)
from watch.services import alarm_hooks
from watch.services.alarm_actions import ActionNotDelivered, post_action
from watch.services.query import QueryError, get_aggregate_statistics
from watch.services.store import DAY

logger = logging.getLogger(__name__)

HOOK_PREFIX = "hook:"
# The actions people may give an alarm; the guest watchdog's own alarms post "watchdog".
ACTIONS = ("notify", "stop", "reboot")
WATCHDOG_ACTION = "watchdog"
WATCHDOG_PREFIX = "watchdog-"
WATCHDOG_METRIC = "Alive"
EVALUATION_CHUNK = 500

_COMPARE = {
    AlarmComparison.GREATER: operator.gt,
    AlarmComparison.GREATER_OR_EQUAL: operator.ge,
    AlarmComparison.LESS: operator.lt,
    AlarmComparison.LESS_OR_EQUAL: operator.le,
}


@dataclass(frozen=True)
class Rule:
    """What an alarm compares: ``statistic`` of each ``period`` (seconds) against ``threshold`` by ``comparison``
    over the last ``evaluation_periods`` periods; ``missing_keeps_state``: no datapoint at all leaves the state as
    it is (the guest watchdog) instead of INSUFFICIENT_DATA."""

    statistic: str
    comparison: str
    threshold: float
    period: int
    evaluation_periods: int
    missing_keeps_state: bool = False


@dataclass(frozen=True)
class Decision:
    """The state an alarm should be in, why, and the datapoints (``{"timestamp", "value"}``, oldest first) that
    decided it."""

    state: str
    reason: str
    datapoints: tuple[dict, ...] = ()


def window(rule: Rule, now: float) -> tuple[int, int]:
    """The ``[start, end)`` of the last ``evaluation_periods`` whole periods before ``now``: the period ``now``
    falls in is not over, and its statistic would still change."""
    end = int(now // rule.period) * rule.period
    return end - rule.period * rule.evaluation_periods, end


def decide(rule: Rule, state: str, values: Mapping[int, float], start: int) -> Decision:
    """The state machine (see the module): ``values`` maps the start of each period of the window that has data
    (the window starts at ``start``) to its statistic; periods outside the window are not looked at."""
    periods = [start + number * rule.period for number in range(rule.evaluation_periods)]
    present = [(period, values[period]) for period in periods if period in values]
    points = tuple({"timestamp": period, "value": value} for period, value in present)
    count = rule.evaluation_periods
    if not present:
        if rule.missing_keeps_state:
            return Decision(state, "no datapoint: the state is kept (missing data does not fire the watchdog)")
        return Decision(AlarmState.INSUFFICIENT_DATA,
                        f"Insufficient Data: no datapoint in the last {_periods(count)} of {rule.period} s")
    compare = _COMPARE[AlarmComparison(rule.comparison)]
    breaching = [value for _, value in present if compare(value, rule.threshold)]
    words = AlarmComparison(rule.comparison).label
    threshold = _number(rule.threshold)
    listed = "[" + ", ".join(_number(value) for _, value in present) + "]"
    if len(breaching) == count:
        return Decision(AlarmState.ALARM, f"Threshold Crossed: {_datapoints(count)} {listed} "
                                          f"{_were(count)} {words} the threshold ({threshold}).", points)
    calm = len(present) - len(breaching)
    missing = count - len(present)
    parts = []
    if calm:
        parts.append(f"{calm} of {_datapoints(len(present))} {listed} {_were(calm)} not {words} the threshold "
                     f"({threshold})")
    else:
        parts.append(f"{_datapoints(len(present))} {listed} {_were(len(present))} {words} the threshold "
                     f"({threshold})")
    if missing:
        parts.append(f"{missing} of the last {_periods(count)} had no datapoint")
    return Decision(AlarmState.OK, "Threshold Crossed: " + "; ".join(parts) + ".", points)


def _number(value: float) -> str:
    return repr(round(float(value), 4))


def _datapoints(count: int) -> str:
    return f"{count} datapoint" if count == 1 else f"{count} datapoints"


def _periods(count: int) -> str:
    return "period" if count == 1 else f"{count} periods"


def _attempts(count: int) -> str:
    return "1 attempt" if count == 1 else f"{count} attempts"


def _were(count: int) -> str:
    return "was" if count == 1 else "were"


def rule_of(alarm: Alarm) -> Rule:
    return Rule(alarm.statistic, alarm.comparison, alarm.threshold, alarm.period, alarm.evaluation_periods,
                missing_keeps_state=alarm.builtin)


# The rule of every guest watchdog's alarm (``sync_watchdog_alarms``): the instance's Alive below 1 in a minute.
WATCHDOG_RULE = Rule("Minimum", AlarmComparison.LESS, 1.0, 60, 1, missing_keeps_state=True)

# How many periods before its window the guest watchdog looks back for the newest ones with data: its evidence, an
# Alive 0, comes once as the last point of a run, and may reach the store just after its period was evaluated.
WATCHDOG_LOOKBACK_PERIODS = 3


def read_window(alarm: Alarm, now: float,
                watchdogs: Mapping[str, Mapping[int, float]] | None = None) -> tuple[int, dict[int, float]]:
    """The start of the alarm's window and the statistic of each of its periods that has data, from every series
    that has the alarm's dimensions. The watchdog's window (``missing_keeps_state``) is its newest periods with
    data within ``WATCHDOG_LOOKBACK_PERIODS`` more; ``watchdogs`` (``watchdog_windows``), when given, holds every
    watchdog's periods read at once. Raises QueryError when the store cannot answer (a range past retention)."""
    rule = rule_of(alarm)
    start, end = window(rule, now)
    if rule.missing_keeps_state:
        start -= rule.period * WATCHDOG_LOOKBACK_PERIODS
    if watchdogs is not None and _is_watchdog(alarm):
        values = dict(watchdogs.get(alarm.dimensions["InstanceId"], {}))
    else:
        datapoints = get_aggregate_statistics(alarm.namespace, alarm.metric, dict(alarm.dimensions), start, end,
                                              rule.period, [rule.statistic], now=now)
        values = {int(point["timestamp"]): point[rule.statistic] for point in datapoints}
    if rule.missing_keeps_state and values:
        start = max(values) - rule.period * (rule.evaluation_periods - 1)
    return start, values


def _is_watchdog(alarm: Alarm) -> bool:
    """Whether the alarm has the shape ``sync_watchdog_alarms`` gives every watchdog (what ``watchdog_windows``
    reads for)."""
    return (alarm.builtin and rule_of(alarm) == WATCHDOG_RULE and alarm.namespace == INSTANCE_NAMESPACE
            and alarm.metric == WATCHDOG_METRIC and list(alarm.dimensions) == ["InstanceId"])


def watchdog_windows(now: float) -> dict[str, dict[int, float]] | None:
    """Every guest watchdog's periods with data at ``now``, read in one query: per ``InstanceId``, the minimum
    ``Alive`` of each 60-s period of the watchdog's window and its lookback, over every ``Alive`` series with that
    instance id (as ``read_window`` reads one alarm's through the query API). None when raw points are not kept
    that long (each alarm's own read then says why)."""
    start, end = window(WATCHDOG_RULE, now)
    start -= WATCHDOG_RULE.period * WATCHDOG_LOOKBACK_PERIODS
    if start < now - settings.EDUCLOUD.watch_raw_days * DAY:
        return None
    instance_of = dict(SeriesDimension.objects.filter(
        series__namespace=INSTANCE_NAMESPACE, series__name=WATCHDOG_METRIC, name="InstanceId")
        .values_list("series_id", "value"))
    points = MetricPoint.objects.filter(series__namespace=INSTANCE_NAMESPACE, series__name=WATCHDOG_METRIC,
                                        time__gte=start, time__lt=end).values_list("series_id", "time", "value")
    windows: dict[str, dict[int, float]] = {}
    for series_id, moment, value in points.iterator(chunk_size=10_000):
        instance = instance_of.get(series_id)
        if instance is None:
            continue
        period = start + int((moment - start) // WATCHDOG_RULE.period) * WATCHDOG_RULE.period
        periods = windows.setdefault(instance, {})
        periods[period] = min(value, periods.get(period, value))
    return windows


def evaluate(alarm: Alarm, now: float, watchdogs: Mapping[str, Mapping[int, float]] | None = None) -> Decision:
    """The decision for one alarm at ``now`` (``watchdogs``: see ``read_window``); a window the store cannot answer
    is INSUFFICIENT_DATA, saying why."""
    try:
        start, values = read_window(alarm, now, watchdogs)
    except QueryError as exc:
        return Decision(AlarmState.INSUFFICIENT_DATA, f"Insufficient Data: the store cannot answer: {exc}")
    return decide(rule_of(alarm), alarm.state, values, start)


def evaluate_alarms(now: float) -> dict[str, int]:
    """Evaluate every enabled alarm at ``now`` (epoch seconds), after keeping the guest watchdog's alarms in step
    with the instances that send ``Alive``; record each change and start its actions; post again what the CLC did
    not take before. ``{"evaluated": n, "changed": m}``: m counts the changes this evaluator made."""
    sync_watchdog_alarms(now)
    watchdogs = watchdog_windows(now)
    evaluated = changed = 0
    # The ids first, then the rows a chunk at a time: SQLite does not isolate a cursor left open from the writes of
    # its own connection, and each alarm's change is written while the others are still to be read.
    ids = list(Alarm.objects.filter(enabled=True).order_by("pk").values_list("pk", flat=True))
    for offset in range(0, len(ids), EVALUATION_CHUNK):
        for alarm in Alarm.objects.filter(pk__in=ids[offset:offset + EVALUATION_CHUNK], enabled=True).order_by("pk"):
            decision = evaluate(alarm, now, watchdogs)
            evaluated += 1
            moved = decision.state != alarm.state and change_state(alarm, decision, now)
            changed += moved
            # Only an alarm in ALARM has actions queued: those it had as read, or those it queued entering it now.
            if (alarm.state == AlarmState.ALARM and alarm.pending_actions) or (
                    moved and decision.state == AlarmState.ALARM):
                deliver_pending(alarm.pk, now)
    return {"evaluated": evaluated, "changed": changed}


def action_post(alarm: Alarm, action: str, decision: Decision, now: float) -> dict:
    """The body of ``POST /clc/api/1.0/alarm-actions/`` for one action of an alarm that entered ALARM
    (``owner_group``: whom the CLC's notification is for when the alarm names no instance)."""
    return {"alarm": alarm.name, "action": action, "instance_id": alarm.dimensions.get("InstanceId", ""),
            "reason": decision.reason, "state": AlarmState.ALARM, "datapoints": list(decision.datapoints),
            "time": now, "owner_group": alarm.owner_group}


def change_state(alarm: Alarm, decision: Decision, now: float) -> bool:
    """Move the alarm from the state it was read in to ``decision.state``, recording it; False if another
    evaluator changed it first (nothing is recorded then). Entering ALARM queues its CLC actions and runs its
    hooks (after the change is committed, so a hook sees it); leaving ALARM drops what was still queued, recorded."""
    entering = decision.state == AlarmState.ALARM
    posts = [{"post": action_post(alarm, action, decision, now), "attempts": 0}
             for action in alarm.actions if entering and not action.startswith(HOOK_PREFIX)]
    with transaction.atomic():
        # The compare-and-set takes the row (MariaDB) or the database (SQLite) for the rest of the transaction.
        taken = Alarm.objects.filter(pk=alarm.pk, state=alarm.state).update(
            state=decision.state, state_reason=decision.reason, state_changed=now)
        if not taken:
            return False
        dropped = Alarm.objects.filter(pk=alarm.pk).values_list("pending_actions", flat=True).get()
        Alarm.objects.filter(pk=alarm.pk).update(pending_actions=posts, pending_version=F("pending_version") + 1)
        AlarmHistory.objects.create(alarm_id=alarm.pk, time=now, old_state=alarm.state, new_state=decision.state,
                                    reason=decision.reason, datapoints=list(decision.datapoints))
        for entry in dropped:
            _record_action(alarm, now, f"{entry['post']['action']}: not delivered to the CLC before the alarm left "
                                       f"ALARM ({_attempts(entry['attempts'])}); dropped")
    logger.info("alarm %s: %s -> %s: %s", alarm.name, alarm.state, decision.state, decision.reason)
    if entering:
        _run_hooks(alarm, decision, now)
    alarm.state, alarm.state_reason, alarm.state_changed = decision.state, decision.reason, now
    return True


def _run_hooks(alarm: Alarm, decision: Decision, now: float) -> None:
    """Run the alarm's ``hook:`` actions; each outcome is a row of its history (an unknown or failing hook too)."""
    event = alarm_hooks.AlarmEvent(alarm=alarm.name, dimensions=dict(alarm.dimensions), state=decision.state,
                                   reason=decision.reason, datapoints=list(decision.datapoints), time=now)
    for action in alarm.actions:
        if not action.startswith(HOOK_PREFIX):
            continue
        name = action.removeprefix(HOOK_PREFIX)
        try:
            alarm_hooks.run(name, event)
        except alarm_hooks.UnknownHook as exc:
            _record_action(alarm, now, f"{action}: {exc}")
        except Exception as exc:  # a hook is other code: its failure is the alarm's news, not the evaluation's end
            logger.exception("alarm %s: hook %s failed", alarm.name, name)
            _record_action(alarm, now, f"{action}: failed: {type(exc).__name__}: {exc}")
        else:
            _record_action(alarm, now, f"{action}: ran")


def deliver_pending(alarm_pk: int, now: float) -> None:
    """Post the alarm's queued actions to the CLC while it is in ALARM. One evaluator takes the queue (a
    compare-and-set on its version), posts each entry, and puts back what the CLC did not take, unless the alarm
    left ALARM meanwhile (then each is recorded as dropped)."""
    row = Alarm.objects.filter(pk=alarm_pk, state=AlarmState.ALARM).values(
        "name", "pending_actions", "pending_version").first()
    if row is None or not row["pending_actions"]:
        return
    version = row["pending_version"]
    if not Alarm.objects.filter(pk=alarm_pk, state=AlarmState.ALARM, pending_version=version).update(
            pending_actions=[], pending_version=version + 1):
        return
    alarm = Alarm(pk=alarm_pk, name=row["name"])
    failed = []
    for entry in row["pending_actions"]:
        action, attempts = entry["post"]["action"], entry["attempts"] + 1
        try:
            post_action(entry["post"])
        except ActionNotDelivered as exc:
            logger.warning("alarm %s: action %s not delivered (attempt %d): %s", alarm.name, action, attempts, exc)
            if exc.refused:
                _record_action(alarm, now, f"{action}: {exc}; not posted again")
                continue
            if attempts == 1:
                _record_action(alarm, now, f"{action}: not delivered: {exc}; posted again at each evaluation while "
                                           "the alarm stays in ALARM")
            failed.append({"post": entry["post"], "attempts": attempts})
        else:
            _record_action(alarm, now, f"{action}: delivered to the CLC" +
                           (f" (attempt {attempts})" if attempts > 1 else ""))
    if failed and not Alarm.objects.filter(pk=alarm_pk, state=AlarmState.ALARM, pending_version=version + 1).update(
            pending_actions=failed, pending_version=version + 2):
        for entry in failed:
            _record_action(alarm, now, f"{entry['post']['action']}: not delivered to the CLC before the alarm left "
                                       f"ALARM ({_attempts(entry['attempts'])}); dropped")


def _record_action(alarm: Alarm, now: float, reason: str) -> None:
    AlarmHistory.objects.create(alarm_id=alarm.pk, time=now, kind=AlarmHistoryKind.ACTION,
                                old_state=AlarmState.ALARM, new_state=AlarmState.ALARM, reason=reason)


def watchdog_name(instance_id: str) -> str:
    return f"{WATCHDOG_PREFIX}{instance_id}"


def sync_watchdog_alarms(now: float) -> dict[str, int]:
    """Keep one built-in alarm ``watchdog-<instance id>`` per instance whose ``Alive`` series has a point in the
    last ``watch.raw_days`` (Alive, Minimum, less than 1, one period of 60 s; action "watchdog"), owned by the
    series' OwnerGroup; remove the built-in alarms of instances with no such point. Safe to run twice at once (a
    name made twice is made once). ``{"made": n, "removed": m}``."""
    cutoff = now - settings.EDUCLOUD.watch_raw_days * DAY
    recent = MetricPoint.objects.filter(series=OuterRef("series_id"), time__gte=cutoff)
    alive = SeriesDimension.objects.filter(series__namespace=INSTANCE_NAMESPACE, series__name=WATCHDOG_METRIC,
                                           name__in=("InstanceId", "OwnerGroup")).filter(Exists(recent))
    by_series: dict[int, dict[str, str]] = {}
    for series_id, name, value in alive.values_list("series_id", "name", "value"):
        by_series.setdefault(series_id, {})[name] = value
    wanted = {watchdog_name(dims["InstanceId"]): dims for dims in by_series.values() if "InstanceId" in dims}
    existing = set(Alarm.objects.filter(builtin=True).values_list("name", flat=True))
    made = [Alarm(name=name, namespace=INSTANCE_NAMESPACE, metric=WATCHDOG_METRIC,
                  dimensions={"InstanceId": dims["InstanceId"]}, statistic=WATCHDOG_RULE.statistic,
                  comparison=WATCHDOG_RULE.comparison, threshold=WATCHDOG_RULE.threshold,
                  period=WATCHDOG_RULE.period, evaluation_periods=WATCHDOG_RULE.evaluation_periods,
                  actions=[WATCHDOG_ACTION], builtin=True, owner_group=dims.get("OwnerGroup", ""),
                  created_by="watch")
            for name, dims in sorted(wanted.items()) if name not in existing]
    Alarm.objects.bulk_create(made, ignore_conflicts=True)
    gone = existing - wanted.keys()
    removed = Alarm.objects.filter(builtin=True, name__in=gone).delete()[1].get(Alarm._meta.label, 0) if gone else 0
    return {"made": len(made), "removed": removed}

