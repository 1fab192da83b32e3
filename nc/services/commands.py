"""Running the commands that arrive on this node's queue, each at most once."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Protocol

from luhyaapi.messages import Command
from nc.models import CommandRecord

logger = logging.getLogger(__name__)


class StatusReporter(Protocol):
    def report_now(self, last_command: str = "") -> None:
        """Publish this node's status at once."""


class UnknownCommand(ValueError):
    """The op is not one this node knows; the message is parked on the dead-letter queue."""


def _report_status(command: Command, reporter: StatusReporter) -> None:
    reporter.report_now(last_command=command.msg_id)


HANDLERS: dict[str, Callable[[Command, StatusReporter], None]] = {
    "status/report": _report_status,
}


def execute_command(command: Command, reporter: StatusReporter) -> bool:
    """Run ``command`` unless a command with the same key already ran; return whether it ran."""
    handler = HANDLERS.get(command.op)
    if handler is None:
        raise UnknownCommand(f"unknown command {command.op!r}; known: {', '.join(sorted(HANDLERS))}")
    record, created = CommandRecord.objects.get_or_create(key=command.key,
                                                          defaults={"op": command.op, "msg_id": command.msg_id})
    if not created and record.done_at is not None:
        logger.info("commands: %s (%s) already done at %s; skipped", command.op, command.key, record.done_at)
        return False
    handler(command, reporter)
    record.done_at = datetime.now(tz=UTC)
    record.save(update_fields=["done_at"])
    logger.info("commands: %s (%s) done", command.op, command.msg_id)
    return True
