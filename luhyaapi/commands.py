"""Commands for nodes as Celery tasks: the task of each command, its time limit, and the one way to send one.

A command goes to its node's own queue (``luhyaapi.queues.node_commands``) on the cluster's broker as the task named
here, with one argument: the command sealed by the sender for that queue (``luhyaapi.signing.seal``). The node's
worker (``nc.tasks``) opens the seal and checks it as every queue's messages are checked (``luhyaapi.bus.admit``:
a trusted host, allowed to command this node, and the task is the command's own), so holding the broker's password
is not enough to command a node. The task's id is the command's ``msg_id``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import kombu.exceptions
from kombu.pools import producers

from luhyaapi.bus import BusUnavailable
from luhyaapi.keys import HostKey
from luhyaapi.messages import Command, encode
from luhyaapi.queues import node_commands
from luhyaapi.signing import seal
from luhyaapi.trust import own_key

logger = logging.getLogger(__name__)

MINUTE = 60
HOUR = 60 * MINUTE


@dataclass(frozen=True)
class CommandKind:
    op: str
    task: str
    # Seconds the node's worker gives one run of it (the image transfers are the long ones).
    time_limit: int
    # Seconds it may wait for its node's worker (an offline node); after that it is not run, and the CC fails it
    # (cc.services.command_tasks.expire_commands). None: it waits as long as it takes.
    expires: int | None = None


KINDS: dict[str, CommandKind] = {kind.op: kind for kind in (
    CommandKind("status/report", "nc.status_report", MINUTE),
    CommandKind("image/prepare", "nc.image_prepare", 6 * HOUR),
    # A desktop nobody got within ten minutes is not wanted any more: its student asks again.
    CommandKind("instance/run", "nc.instance_run", 2 * HOUR, expires=10 * MINUTE),
    CommandKind("instance/stop", "nc.instance_stop", 15 * MINUTE),
    CommandKind("instance/delete", "nc.instance_delete", 15 * MINUTE),
    CommandKind("instance/submit", "nc.instance_submit", 6 * HOUR),
    CommandKind("instance/monitoring", "nc.instance_monitoring", MINUTE),
    CommandKind("host/poweroff", "nc.host_poweroff", 5 * MINUTE),
    # A hot-plug logs in to the SC's target within seconds; a detach waits up to a minute for the guest.
    CommandKind("volume/attach", "nc.volume_attach", 5 * MINUTE),
    CommandKind("volume/detach", "nc.volume_detach", 5 * MINUTE),
)}

_OPS = {kind.task: kind.op for kind in KINDS.values()}

# A node's Celery worker is named after the node (``celery -A educloud worker -n nc@<node>``).
WORKER_PREFIX = "nc@"


def worker_name(node: str) -> str:
    """The Celery worker name of node ``node``, under which it answers inspection and sends its events."""
    return f"{WORKER_PREFIX}{node}"


# How long a publish may retry while the broker is away before the sender is told (BusUnavailable).
PUBLISH_RETRY = {"max_retries": 8, "interval_start": 0.2, "interval_step": 0.5, "interval_max": 5.0}


class UnknownCommand(ValueError):
    """The op is not a command nodes know."""


def op_of_task(task: str) -> str | None:
    """The command op a Celery task name runs, None for a task that is not a node command."""
    return _OPS.get(task)


def kind_of(op: str) -> CommandKind:
    try:
        return KINDS[op]
    except KeyError:
        raise UnknownCommand(f"unknown command {op!r}; known: {', '.join(sorted(KINDS))}") from None


def sealed(node: str, command: Command, key: HostKey | None = None) -> str:
    """``command`` sealed for ``node``'s queue by ``key`` (this host's own by default), as the task's argument."""
    return seal(key or own_key(), node_commands(node), encode(command)).decode()


def send_command(broker_url: str, node: str, command: Command, *, key: HostKey | None = None,
                 expires: float | None = None) -> str:
    """Queue ``command`` for ``node``; returns once the broker holds it (the task id, the command's msg_id).
    ``expires``: seconds after which a node that had not taken it drops it (the kind's own by default).
    BusUnavailable when the broker could not take it within the publish retries."""
    from educloud.celery import app

    kind = kind_of(command.op)
    queue = node_commands(node)
    expires = kind.expires if expires is None else expires
    try:
        # The app's connection carries its transport options: publisher confirms, without which a broker killed
        # right after the publish loses what it had not yet written.
        with producers[app.connection_for_write(broker_url)].acquire(block=True, timeout=30) as producer:
            app.send_task(kind.task, args=[sealed(node, command, key)], task_id=command.msg_id, queue=queue,
                          routing_key=queue, expires=expires, producer=producer, retry=True,
                          retry_policy=PUBLISH_RETRY)
    except (kombu.exceptions.OperationalError, OSError) as exc:
        raise BusUnavailable(f"could not queue {command.op} for {node}: {exc}") from exc
    logger.info("commands: %s (%s) queued for %s", command.op, command.msg_id, node)
    return command.msg_id
