"""The commands this CC sends its nodes, as Celery tasks, and their live state read from Celery's task events.

``queue_command`` is how the CC sends a command: the task is queued on the node's queue (``luhyaapi.commands``) and
recorded here as ``queued``. The node's worker sends Celery's task events on the same broker (received, started,
retried, succeeded, failed; and ``task-progress`` with the command's phase and percent, ``nc.tasks``); the CC's
``cc-task-events`` daemon folds them into the record (``TaskEventFold``), so the CC's API and the CLC's Tasks page
show where each command is, on which worker, and why it failed, without a result backend (docs/architecture.md).

Events may come twice or late (a redelivered task starts again): an event older than the newest folded one changes
nothing, and a command done stays done.
"""

from __future__ import annotations

import logging
import re
import threading
from datetime import UTC, datetime, timedelta

from django.db import transaction

from cc.models import CommandTask
from luhyaapi.bus import Bus, BusUnavailable
from luhyaapi.commands import KINDS, WORKER_PREFIX, op_of_task, send_command
from luhyaapi.messages import Command, InsStatus
from luhyaapi.queues import CLC_STATUS

logger = logging.getLogger(__name__)

# The instance a command is about, when its paras name one (anything else is not recorded as one).
INSTANCE_ID = re.compile(r"^ins-[0-9a-f]{8}$")
DAY = 24 * 3600.0


def queue_command(broker_url: str, node: str, command: Command, *, expires: float | None = None) -> CommandTask:
    """Record ``command`` queued and send it to ``node`` (returns once the broker holds it). Recorded first: the
    node's worker may take it, and its events arrive, before the broker's confirm does. A command the broker could
    not take is not recorded (BusUnavailable); one sent again keeps its record and its state."""
    insid = command.paras.get("insid", "")
    task, created = CommandTask.objects.get_or_create(task_id=command.msg_id, defaults={
        "node": node, "op": command.op, "tid": command.tid, "queued_at": datetime.now(UTC),
        "instance_id": insid if isinstance(insid, str) and INSTANCE_ID.match(insid) else "", "seq": command.seq})
    try:
        send_command(broker_url, node, command, expires=expires)
    except BusUnavailable:
        if created:
            task.delete()
        raise
    return task


class TaskEventFold:
    """Folds one Celery event at a time into the CommandTask it is about (events of other tasks are skipped)."""

    def __call__(self, event: dict) -> None:
        kind = event.get("type", "")
        if not kind.startswith("task-") or "uuid" not in event:
            return
        changes = self._changes(kind, event)
        if changes is None:
            return
        with transaction.atomic():
            task = CommandTask.objects.select_for_update().filter(task_id=event["uuid"]).first()
            if task is None:
                task = self._unrecorded(kind, event)
                if task is None:
                    return
            at = float(event.get("timestamp") or 0)
            if task.state == "done" or (at and at < task.event_at):
                return
            if task.state == "failed" and kind in ("task-revoked", "task-rejected"):
                return  # failed already, with the CC's own reason (expire_commands)
            for field, value in changes.items():
                setattr(task, field, value)
            task.event_at = max(task.event_at, at)
            task.save()

    @staticmethod
    def _changes(kind: str, event: dict) -> dict | None:
        worker = str(event.get("hostname", ""))[:128]
        match kind:
            case "task-received":
                return {"state": "received", "worker": worker, "retries": int(event.get("retries") or 0)}
            case "task-started":
                return {"state": "started", "worker": worker}
            case "task-progress":
                return {"state": "progress", "phase": str(event.get("phase", ""))[:32],
                        "progress": max(0, min(100, int(event.get("progress") or 0)))}
            case "task-retried":
                return {"state": "retrying", "reason": str(event.get("exception", ""))}
            case "task-succeeded":
                return {"state": "done", "progress": 100, "reason": ""}
            case "task-failed":
                return {"state": "failed", "reason": str(event.get("exception", "")), "worker": worker}
            case "task-rejected" | "task-revoked":
                why = "expired before a worker took it" if event.get("expired") else kind.removeprefix("task-")
                return {"state": "failed", "reason": why}
        return None

    @staticmethod
    def _unrecorded(kind: str, event: dict) -> CommandTask | None:
        """A node command this CC has no record of (sent by another process of the cluster's CC, or before a loss of
        its database): recorded from the event that names it."""
        op = op_of_task(event.get("name", ""))
        worker = event.get("hostname", "")
        if op is None or kind != "task-received" or not worker.startswith(WORKER_PREFIX):
            return None
        return CommandTask(task_id=event["uuid"], node=worker.removeprefix(WORKER_PREFIX), op=op,
                           queued_at=datetime.now(UTC))


def expire_commands(upstream: Bus, now: datetime | None = None) -> list[CommandTask]:
    """Fail the commands no worker took within their kind's expiry (their node is offline or stuck): the node will
    not run them if it comes back (Celery drops an expired task it receives), and an instance they were to run is
    failed with a reason a person understands, sent up to the CLC as its node would (its ports are given back).
    Returns the commands failed."""
    from cc.services.instances import note_instance_status  # which sends through queue_command, above

    now = now or datetime.now(UTC)
    failed = []
    for kind in KINDS.values():
        if kind.expires is None:
            continue
        waited_too_long = CommandTask.objects.filter(op=kind.op, state="queued",
                                                     queued_at__lt=now - timedelta(seconds=kind.expires))
        for task in waited_too_long:
            reason = (f"node {task.node} did not take the command within {kind.expires // 60} minutes "
                      f"(it is offline or too busy); it will not run there. Start it again to place it anew.")
            if not CommandTask.objects.filter(pk=task.pk, state="queued").update(state="failed", reason=reason):
                continue  # a worker took it meanwhile
            logger.warning("command tasks: %s of %s for %s expired unrun", task.op, task.task_id, task.node)
            task.state, task.reason = "failed", reason
            failed.append(task)
            if task.instance_id:
                report = note_instance_status(InsStatus(insid=task.instance_id, node=task.node, seq=task.seq,
                                                        state="failed", errormsg=reason))
                upstream.publish(CLC_STATUS, report)
    return failed


def follow_task_events(broker_url: str, node_id: str):
    """A loop for ``daemons.worker.Worker``: folds the task events on ``broker_url`` until ``stop`` is set. The
    events' queue is named after this CC (``node_id``), so a restarted CC takes up the same one."""
    fold = TaskEventFold()

    def loop(stop: threading.Event) -> None:
        from educloud.celery import app

        with app.connection_for_read(broker_url) as connection:
            # Task events only (not the workers' heartbeats), on a queue that outlives a restart of this CC (not
            # Celery's exclusive one, whose events die with the connection) and goes away a day after the CC did.
            receiver = app.events.Receiver(connection, handlers={"*": _logged(fold)}, routing_key="task.#",
                                           node_id=node_id, queue_prefix="educloud.events", queue_durable=True,
                                           queue_exclusive=False, queue_ttl=DAY, queue_expires=DAY)

            def stop_when_asked() -> None:
                stop.wait()
                receiver.should_stop = True

            threading.Thread(target=stop_when_asked, name=f"{node_id}-events-stopper", daemon=True).start()
            logger.info("command tasks: following the task events on the cluster's broker as %s", node_id)
            receiver.capture(limit=None, timeout=None, wakeup=False)

    return loop


def _logged(fold: TaskEventFold):
    def handle(event: dict) -> None:
        try:
            fold(event)
        except Exception:  # one event that cannot be folded must not stop the others
            logger.exception("command tasks: could not fold %s of %s", event.get("type"), event.get("uuid"))

    return handle
