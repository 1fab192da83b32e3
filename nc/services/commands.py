"""Running the commands that arrive on this node's queue, each at most once, long ones in the background and
resumed after a restart of the node."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from django.db import close_old_connections

from luhyaapi.messages import Command, Message
from nc.models import CommandRecord
from nc.services import power

logger = logging.getLogger(__name__)


class StatusReporter(Protocol):
    def report_now(self, last_command: str = "") -> None:
        """Publish this node's status at once."""

    def publish(self, message: Message) -> None:
        """Send a report (task progress) up to the cluster controller."""


class UnknownCommand(ValueError):
    """The op is not one this node knows; the message is parked on the dead-letter queue."""


@dataclass(frozen=True)
class Handler:
    run: Callable[[Command, StatusReporter], None]
    background: bool = False
    # Checks the command before anything runs or is recorded; what it raises parks the message on the dead-letter
    # queue with the reason (a hostile name never reaches a hypervisor, and is never retried after a restart).
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


HANDLERS: dict[str, Handler] = {
    "status/report": Handler(_report_status),
    "image/prepare": Handler(_prepare_image, background=True),
    # In the background so a long download or a slow guest shutdown does not hold up the node's other commands;
    # the instances service runs one operation per instance at a time.
    "instance/run": Handler(_instance_op("run_instance"), background=True, validate=_instance_id_of),
    "instance/stop": Handler(_instance_op("stop_instance"), background=True, validate=_instance_id_of),
    "instance/delete": Handler(_instance_op("delete_instance"), background=True, validate=_instance_id_of),
    "instance/submit": Handler(_instance_op("submit_instance"), background=True, validate=_instance_id_of),
    "host/poweroff": Handler(power.power_off, validate=power.check_power_off),
}


def _finish(record: CommandRecord) -> None:
    record.done_at = datetime.now(tz=UTC)
    record.save(update_fields=["done_at"])


def _run(handler: Handler, command: Command, reporter: StatusReporter, record: CommandRecord) -> None:
    if not handler.background:
        handler.run(command, reporter)
        _finish(record)
        return

    def in_background() -> None:
        try:
            handler.run(command, reporter)
            _finish(record)
        except Exception:
            # The handler reports its own failure as task status; the record stays open so a restart retries it.
            logger.exception("commands: %s (%s) failed", command.op, command.key)
        finally:
            close_old_connections()

    threading.Thread(target=in_background, name=f"cmd-{command.op}-{command.msg_id[:8]}", daemon=True).start()


def execute_command(command: Command, reporter: StatusReporter) -> bool:
    """Run ``command`` unless a command with the same key already ran or runs; return whether it was started."""
    handler = HANDLERS.get(command.op)
    if handler is None:
        raise UnknownCommand(f"unknown command {command.op!r}; known: {', '.join(sorted(HANDLERS))}")
    if handler.validate is not None:
        handler.validate(command)
    record, created = CommandRecord.objects.get_or_create(
        key=command.key, defaults={"op": command.op, "msg_id": command.msg_id, "body": command.model_dump(mode="json")})
    if not created:
        logger.info("commands: %s (%s) already taken at %s; skipped", command.op, command.key, record.received_at)
        return False
    _run(handler, command, reporter, record)
    logger.info("commands: %s (%s) %s", command.op, command.msg_id, "started" if handler.background else "done")
    return True


def resume_unfinished(reporter: StatusReporter) -> int:
    """Start again the background commands a previous run of this node took but did not finish."""
    resumed = 0
    for record in CommandRecord.objects.filter(done_at__isnull=True):
        handler = HANDLERS.get(record.op)
        if handler is None or not handler.background:
            continue
        command = Command.model_validate(record.body)
        logger.info("commands: resuming %s (%s) after a restart", command.op, command.key)
        _run(handler, command, reporter, record)
        resumed += 1
    return resumed
