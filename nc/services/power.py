"""``host/poweroff``: the node powers its own machine off when the console asks, after telling its cluster
controller that it stops."""

from __future__ import annotations

import logging
import subprocess
import time
from typing import Protocol

from django.conf import settings

from luhyaapi.messages import Command, Message, NodeStatus

logger = logging.getLogger(__name__)

POWEROFF_OP = "host/poweroff"
# A power-off waiting longer than this on the node's queue (the node was down when it was sent) is refused, so that
# a machine switched on again hours later does not go straight back off. The cloud's roles keep their clocks within
# 300 s of each other (signed calls are refused otherwise), which this leaves room for.
MAX_AGE_SECONDS = 600.0
COMMAND_TIMEOUT_SECONDS = 60.0


class PowerReporter(Protocol):
    """What the power-off needs of the node's heartbeat (``daemons.heartbeat.HeartbeatPublisher``)."""

    def status(self, state: str = "online") -> NodeStatus:
        """This node's status now, in ``state``."""

    def publish(self, message: Message) -> None:
        """Send a report up to the cluster controller."""

    def report_now(self, last_command: str = "") -> None:
        """Publish this node's status at once."""


class StalePowerOff(ValueError):
    """The power-off was sent too long ago; the message is parked on the dead-letter queue with this reason."""


class PowerOffFailed(RuntimeError):
    """The configured power-off command failed; the node stays up and says so."""


def check_power_off(command: Command) -> Command:
    """Refuse a power-off older than ``MAX_AGE_SECONDS`` (``StalePowerOff``) before anything runs."""
    age = time.time() - command.sent_at
    if age > MAX_AGE_SECONDS:
        raise StalePowerOff(f"power-off {command.msg_id} was sent {age:.0f} s ago (more than {MAX_AGE_SECONDS:.0f} s):"
                            " not run, so a machine switched on again does not go straight back off")
    return command


def power_off(command: Command, reporter: PowerReporter) -> None:
    """Report this node ``stopping``, then run ``nc.poweroff_command`` (an argv, no shell) once.

    The status goes first because a machine that powers off may not get to say goodbye. If the command fails or
    does not finish within ``COMMAND_TIMEOUT_SECONDS``, the node reports itself online again at once and
    ``PowerOffFailed`` says why (the command is not retried: its record is taken)."""
    argv = list(settings.EDUCLOUD.poweroff_argv)
    reporter.publish(reporter.status(state="stopping"))
    logger.warning("power: powering this machine off as asked (%s): %s", command.msg_id, argv)
    try:
        result = subprocess.run(argv, capture_output=True, text=True, timeout=COMMAND_TIMEOUT_SECONDS, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        reporter.report_now(last_command=command.msg_id)
        raise PowerOffFailed(f"power-off command {argv} could not be run: {exc}") from exc
    if result.returncode != 0:
        reporter.report_now(last_command=command.msg_id)
        raise PowerOffFailed(f"power-off command {argv} failed with exit status {result.returncode}: "
                             f"{result.stderr.strip()[-500:]}")
