"""What the CLC does when a watch alarm enters ALARM (issue 17; docs/watch.md "What an alarm does"): the watch posts
each action of the alarm (``POST /clc/api/1.0/alarm-actions/``) and this module carries it out and records it.

- ``notify``: a notification, nothing else.
- ``stop``: the CLC's own stop of the instance (``clc.services.instances.stop_instance``).
- ``reboot``: stop now, start again once the node reports the run stopped (``reboot_instance``; the status fold
  calls ``run_stopped`` and, after its commit, the start again happens).
- ``watchdog`` (the built-in alarm on ``Alive``): the instance should be running and its VM's process went away
  (shut down from inside the guest, or died). If the CLC still has it booting or running, the node's watcher is
  about to end the run; if the CLC has it stopped, the fold saw that run end without anybody having asked
  (``Instance.died_run``). Either way it is recorded, and with ``Instance.restart_when_dead`` the instance starts
  again: at once when it is stopped already, else once the node reports it stopped. An instance stopped by someone,
  being stopped, or not running gets "nothing to do".

Every action leaves one notification saying what happened (an instance's page lists them), including "nothing to
do" and a refusal of its cluster; a start again adds one more. The watch may post an action again (a retry after a
lost answer): the same alarm, action, instance and time make one notification and one action (``event_key``)."""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field

from django.db import IntegrityError, transaction

from clc.services.instances import (
    STOPPABLE_STATES,
    InstanceError,
    reboot_instance,
    restart_stopped,
    run_instance,
    stop_instance,
)
from clc.services.notifications import notify
from luhyadb.choices import InstanceStateChoices as State
from luhyadb.models import Instance, Notification
from luhyadb.models import NotificationLevelChoices as Level

logger = logging.getLogger(__name__)

ACTIONS = ("notify", "stop", "reboot", "watchdog")
INSTANCE_ACTIONS = frozenset({"stop", "reboot", "watchdog"})
# The states in which the CLC still believes a run is up: the watchdog's evidence then means the run is ending.
UP_STATES = (State.BOOTING, State.RUNNING)

DONE, NOTHING, FAILED = "done", "nothing to do", "failed"


class AlarmActionError(Exception):
    """The action cannot be taken as asked; ``status`` (404: no such instance) and the field it is about."""

    def __init__(self, status: int, field_name: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.field = field_name


@dataclass(frozen=True)
class AlarmAction:
    """An action of an alarm that entered ALARM, as the watch posts it (``time``: epoch seconds of the change)."""

    alarm: str
    action: str
    time: float
    instance_id: str = ""
    reason: str = ""
    state: str = "ALARM"
    owner_group: str = ""
    datapoints: tuple = field(default=(), compare=False)

    @property
    def event_key(self) -> str:
        """What makes a post the same as an earlier one: the alarm, action, instance and time (not the reason or
        datapoints, which the watch may word differently when it posts again)."""
        return hashlib.sha256(f"{self.alarm}\n{self.action}\n{self.instance_id}\n{self.time!r}".encode()).hexdigest()


@dataclass(frozen=True)
class Outcome:
    """What was done: ``result`` DONE, NOTHING or FAILED, the notification that says so, and ``repeated`` when the
    watch had posted this action before (nothing was done again)."""

    result: str
    notification: Notification
    repeated: bool = False


def take_alarm_action(event: AlarmAction) -> Outcome:
    """Carry out one action of an alarm (the module's docstring). AlarmActionError 400 when a stop, reboot or
    watchdog names no instance, 404 when the instance is unknown. A refusal of the instance's cluster is not an
    error here: it is recorded (FAILED) and answered, since posting again would not change it."""
    instance = None
    if event.action in INSTANCE_ACTIONS and not event.instance_id:
        raise AlarmActionError(400, "instance_id", f"the action {event.action} needs an instance")
    if event.instance_id:
        instance = Instance.objects.select_related("owner_group").filter(instance_id=event.instance_id).first()
        if instance is None:
            raise AlarmActionError(404, "instance_id", f"no instance {event.instance_id}")
    claimed = _claim(event, instance)
    if claimed.repeated:
        return claimed
    result, level, title, message = _carry_out(event, instance)
    note = claimed.notification
    note.level, note.title, note.message = level, title[:200], _with_reason(message, event)
    note.save(update_fields=["level", "title", "message"])
    logger.info("alarm actions: %s %s %s: %s", event.alarm, event.action, event.instance_id or "-", result)
    return Outcome(result, note)


def _claim(event: AlarmAction, instance: Instance | None) -> Outcome:
    """The event's notification, made first (its key unique), so that two posts of one event, even at once, do the
    action once: the second finds the first's record and does nothing."""
    try:
        with transaction.atomic():
            note = notify(title=f"Alarm {event.alarm}: {event.action}", message="being carried out",
                          instance=instance, owner_group=event.owner_group, alarm=event.alarm, action=event.action,
                          event_key=event.event_key)
    except IntegrityError:
        return Outcome(DONE, Notification.objects.get(event_key=event.event_key), repeated=True)
    return Outcome(DONE, note)


def _with_reason(message: str, event: AlarmAction) -> str:
    return f"{message}\nWhy: {event.reason}" if event.reason else message


def _carry_out(event: AlarmAction, instance: Instance | None) -> tuple[str, str, str, str]:
    """(result, level, title, message) of the action."""
    what = f"{instance.name} ({instance.instance_id})" if instance is not None else "the cloud"
    if event.action == "notify":
        return DONE, Level.WARNING, f"Alarm {event.alarm} on {what}", f"The alarm {event.alarm} is in ALARM."
    if event.action == "watchdog":
        return _watchdog(event, instance)
    if instance.state not in STOPPABLE_STATES:
        return (NOTHING, Level.INFO, f"Alarm {event.alarm}: {what} not {_done(event.action)}",
                f"It is {instance.state}, not running: nothing to {event.action}.")
    act = stop_instance if event.action == "stop" else reboot_instance
    try:
        act(instance)
    except InstanceError as exc:
        return (FAILED, Level.ERROR, f"Alarm {event.alarm}: {what} could not be {_done(event.action)}",
                f"The {event.action} was refused: {exc}")
    if event.action == "stop":
        return DONE, Level.WARNING, f"Alarm {event.alarm} stopped {what}", "The alarm stopped it."
    return (DONE, Level.WARNING, f"Alarm {event.alarm} rebooted {what}",
            "The alarm stops it now; it starts again once its node reports it stopped.")


def _done(action: str) -> str:
    return {"stop": "stopped", "reboot": "rebooted"}[action]


def _watchdog(event: AlarmAction, instance: Instance) -> tuple[str, str, str, str]:
    what = f"{instance.name} ({instance.instance_id})"
    title = f"{what}: the guest stopped or hung from inside"
    seq = instance.runs
    if instance.state in UP_STATES:
        # Its VM's process is gone and the node's watcher ends the run within seconds: start again after that. A
        # conditional update: if the fold has recorded the stop meanwhile, the stopped case below applies.
        if not instance.restart_when_dead:
            return (DONE, Level.ERROR, title, "Its VM stopped without anyone asking (liveness 0); it is not started "
                                              "again (the instance's \"restart when dead\" is off).")
        if Instance.objects.filter(pk=instance.pk, runs=seq, state__in=UP_STATES).update(restart_after_run=seq):
            return (DONE, Level.ERROR, title, "Its VM stopped without anyone asking (liveness 0); it starts again "
                                              "once its node reports the run ended.")
        instance.refresh_from_db()
        seq = instance.runs
    if instance.state == State.STOPPED and seq and instance.died_run == seq:
        if not instance.restart_when_dead:
            return (DONE, Level.ERROR, title, "Its run ended without anyone asking (shut down or died inside the "
                                              "guest); it is not started again (\"restart when dead\" is off).")
        try:
            run_instance(instance)
        except InstanceError as exc:
            return (FAILED, Level.ERROR, title, f"Its run ended without anyone asking; starting it again was "
                                                f"refused: {exc}")
        return (DONE, Level.ERROR, title, "Its run ended without anyone asking (shut down or died inside the "
                                          "guest); it was started again.")
    return (NOTHING, Level.INFO, f"{what}: the guest watchdog fired, nothing to do",
            f"It is {instance.state}{' (stopped by someone)' if instance.state == State.STOPPED else ''}: it is not "
            "meant to be running.")


def run_stopped(instance_id: str, seq: int) -> None:
    """The status fold's hook, in its transaction, before it records a report of run ``seq`` stopped: a run the
    CLC still had booting or running ended without anybody asking (the guest shut down, or its VM died), which
    the watchdog's action looks for (``died_run``); and, after the fold's commit, a run that was to start again
    (a reboot, the watchdog) starts (``start_again``)."""
    Instance.objects.filter(instance_id=instance_id, runs=seq, state__in=UP_STATES).update(died_run=seq)
    # Asked after the commit, not read here: a watchdog's "start again" committed meanwhile is then seen too (a
    # read in this transaction may be of its snapshot on MariaDB). One conditional update per stopped run.
    transaction.on_commit(lambda: start_again(instance_id, seq))


def start_again(instance_id: str, seq: int) -> None:
    """Start again an instance whose run ``seq`` was stopped to be restarted, and record it: the start, or why its
    cluster refused it (it then stays stopped). Called after the fold's commit, so it sees the run stopped."""
    try:
        instance = restart_stopped(instance_id, seq)
    except InstanceError as exc:
        instance = Instance.objects.select_related("owner_group").filter(instance_id=instance_id).first()
        if instance is not None:
            notify(title=f"{instance.name} ({instance_id}) was not started again", message=str(exc),
                   level=Level.ERROR, instance=instance, action="restart")
        logger.warning("alarm actions: %s not started again: %s", instance_id, exc)
        return
    if instance is not None:
        notify(title=f"{instance.name} ({instance_id}) started again", message=f"Run {instance.runs}: "
               f"{instance.message}", instance=instance, action="restart")
