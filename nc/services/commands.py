"""Running the commands that arrive as tasks on this node's queue (``nc.tasks``), each at most once.

A command runs inside its task, so the task is acknowledged only when the command is done: a worker killed under it
leaves it on the queue, and the next worker (this node restarted) takes it again. The record of its key tells what
that second delivery is: a command done already is skipped; one that this process runs now (the broker handed the
same command twice) is skipped; one that was taken and never finished (the node died under it) runs again, and a
long one resumes from what it left (a download goes on from its partial file).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from django.conf import settings

from luhyaapi.bus import admit
from luhyaapi.bus_trust import policy_for
from luhyaapi.commands import UnknownCommand, kind_of
from luhyaapi.messages import Command, Message
from luhyaapi.queues import node_commands
from luhyaapi.wording import with_article
from nc.models import CommandRecord
from nc.services import metrics, power, volumes

logger = logging.getLogger(__name__)


class StatusReporter(Protocol):
    def report_now(self, last_command: str = "") -> None:
        """Publish this node's status at once."""

    def publish(self, message: Message) -> None:
        """Send a report (task progress) up to the cluster controller."""


class RefusedCommand(ValueError):
    """The task's argument is not a command this node may run: not sealed for its queue by a host allowed to command
    it, not a command, or not the command of this task. Never retried."""


@dataclass(frozen=True)
class Handler:
    run: Callable[[Command, StatusReporter], None]
    # Checks the command before anything runs or is recorded; what it raises fails the task with the reason (a
    # hostile name never reaches a hypervisor, and is never retried).
    validate: Callable[[Command], object] | None = None


def _report_status(command: Command, reporter: StatusReporter) -> None:
    reporter.report_now(last_command=command.msg_id)


def _prepare_image(command: Command, reporter: StatusReporter) -> None:
    from nc.services.images import prepare_image

    prepare_image(command, reporter.publish)


def _instance_id_of(command: Command) -> str:
    from nc.drivers.base import check_instance_id

    return check_instance_id(str(command.paras.get("insid", "")))


def _instance_op(name: str) -> Callable[[Command, StatusReporter], None]:
    def run(command: Command, reporter: StatusReporter) -> None:
        from nc.services import instances

        getattr(instances, name)(command, reporter)

    return run


def _volume_command(parse: Callable[[dict], object]) -> Callable[[Command], object]:
    def validate(command: Command) -> object:
        if not command.tid:
            raise volumes.InvalidVolumeCommand(f"{command.op} needs the tid of its task, which the node reports on")
        return parse(command.paras)

    return validate


HANDLERS: dict[str, Handler] = {
    "status/report": Handler(_report_status),
    "image/prepare": Handler(_prepare_image),
    # The instances service runs one operation per instance at a time.
    "instance/run": Handler(_instance_op("run_instance"), validate=_instance_id_of),
    "instance/stop": Handler(_instance_op("stop_instance"), validate=_instance_id_of),
    "instance/delete": Handler(_instance_op("delete_instance"), validate=_instance_id_of),
    "instance/submit": Handler(_instance_op("submit_instance"), validate=_instance_id_of),
    "instance/monitoring": Handler(metrics.switch_monitoring, validate=metrics.parse_switch),
    "host/poweroff": Handler(power.power_off, validate=power.check_power_off),
    "volume/attach": Handler(_instance_op("attach_volume"), validate=_volume_command(volumes.parse_attach)),
    "volume/detach": Handler(_instance_op("detach_volume"), validate=_volume_command(volumes.parse_detach)),
}

_running: set[str] = set()
_running_guard = threading.Lock()


@contextmanager
def _claimed(key: str) -> Iterator[bool]:
    """Whether this process may run the command ``key`` now (no other thread of it runs the same command)."""
    with _running_guard:
        claimed = key not in _running
        _running.add(key)
    try:
        yield claimed
    finally:
        if claimed:
            with _running_guard:
                _running.discard(key)


def execute_command(command: Command, reporter: StatusReporter) -> bool:
    """Run ``command`` unless it ran already or runs now; return whether it ran. UnknownCommand for an op nodes do not
    know, and what the op's check raises for a command it refuses."""
    handler = HANDLERS.get(command.op)
    if handler is None:
        kind_of(command.op)  # raises UnknownCommand, naming the known ops
        raise UnknownCommand(f"{command.op} has no handler on this node")
    if handler.validate is not None:
        handler.validate(command)
    record, created = CommandRecord.objects.get_or_create(
        key=command.key, defaults={"op": command.op, "msg_id": command.msg_id, "body": command.model_dump(mode="json")})
    if not created and record.done_at is not None:
        logger.info("commands: %s (%s) already done at %s; skipped", command.op, command.key, record.done_at)
        return False
    with _claimed(command.key) as claimed:
        if not claimed:
            logger.info("commands: %s (%s) is running already; skipped", command.op, command.key)
            return False
        if not created:
            logger.info("commands: %s (%s) taken at %s and never finished; running it again", command.op,
                        command.key, record.received_at)
        handler.run(command, reporter)
        record.done_at = datetime.now(tz=UTC)
        record.save(update_fields=["done_at"])
    logger.info("commands: %s (%s) done", command.op, command.msg_id)
    return True


def open_sealed(op: str, envelope: object) -> Command:
    """The command a task of ``op`` carries, checked as every message on this node's queue is; RefusedCommand with
    the reason otherwise (and a refusal of the sender on ``educloud.security``)."""
    if not isinstance(envelope, str):
        raise RefusedCommand(f"the task's argument is {with_article(type(envelope).__name__)}, not a sealed command")
    queue = node_commands(settings.EDUCLOUD.name)
    parked, taken = admit(queue, [envelope.encode()], policy_for(queue))
    if parked:
        raise RefusedCommand(parked[0].reason)
    command = taken[0][1]
    if not isinstance(command, Command):
        raise RefusedCommand(f"{with_article(command.type)} message is not a command")
    if command.op != op:
        raise RefusedCommand(f"the task of {op} carries {with_article(command.op)} command")
    return command
