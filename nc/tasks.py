"""The node's Celery tasks, one per command (``luhyaapi.commands.KINDS``): each opens its sealed command and runs it
(``nc.services.commands``). Sent to this node's own queue by its CC, run by this node's worker."""

from __future__ import annotations

import logging

from celery import Task, shared_task

from luhyaapi.bus import BusUnavailable, RetryLater
from luhyaapi.commands import KINDS, CommandKind
from luhyaapi.messages import Message, TaskStatus
from nc.services.commands import StatusReporter, execute_command, open_sealed

logger = logging.getLogger(__name__)

_reporter: StatusReporter | None = None


def use_reporter(reporter: StatusReporter | None) -> None:
    """Where the tasks report (the host's nc heartbeat publisher; ``daemons.roles`` sets it before its worker runs)."""
    global _reporter
    _reporter = reporter


def node_reporter() -> StatusReporter:
    """The reporter of this process; a worker of its own (``celery -A educloud worker``) makes one on first use."""
    global _reporter
    if _reporter is None:
        from daemons.roles import node_heartbeat

        _reporter = node_heartbeat()
    return _reporter


class ProgressEvents:
    """The node's reporter for one task: what the command reports goes up the status queue as ever, and its progress
    is also the task's ``task-progress`` event (phase, state, percent), which the CC folds into the task's live state
    (``cc.services.command_tasks``). An event that cannot be sent is logged; the command goes on."""

    def __init__(self, task: Task, reporter: StatusReporter) -> None:
        self.task = task
        self.reporter = reporter

    def __getattr__(self, name: str):
        # Everything else a command asks of the node's reporter (the power-off's own ``status``) is the reporter's.
        return getattr(self.reporter, name)

    def report_now(self, last_command: str = "") -> None:
        self.reporter.report_now(last_command)

    def publish(self, message: Message) -> None:
        self.reporter.publish(message)
        if isinstance(message, TaskStatus) and not self.task.request.is_eager:
            try:
                self.task.send_event("task-progress", retry=False, phase=message.phase, state=message.state,
                                     progress=message.progress)
            except Exception as exc:  # the broker away: the status queue still carries the progress
                logger.warning("commands: progress event of %s not sent: %s", self.task.request.id, exc)


def _task_of(kind: CommandKind) -> Task:
    @shared_task(name=kind.task, bind=True, time_limit=kind.time_limit, soft_time_limit=kind.time_limit - 30,
                 # Transient: the trust records or the status bus away. A refused or malformed command is not.
                 autoretry_for=(RetryLater, BusUnavailable), retry_backoff=2, retry_backoff_max=60, max_retries=30)
    def command(self: Task, envelope: str) -> dict:
        sealed = open_sealed(kind.op, envelope)
        ran = execute_command(sealed, ProgressEvents(self, node_reporter()))
        return {"op": sealed.op, "key": sealed.key, "ran": ran}

    command.__doc__ = f"Run the node command {kind.op} (at most once per key)."
    return command


TASKS: dict[str, Task] = {op: _task_of(kind) for op, kind in KINDS.items()}
