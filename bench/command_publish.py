"""Command publish benchmark: how fast a CC queues commands for its nodes as Celery tasks, against plain confirmed
publishes of the same bytes on the same broker in the same minute.

For each transport (RabbitMQ at ``--amqp``, a scratch virtual host made and deleted by the script; and the
all-in-one's SQLite broker file in a temporary directory) the script sends ``--commands`` commands spread over
``--nodes`` node queues (``cmd.bench-NNN``), three ways, interleaved in rounds so that both see the same machine:

- ``send_command``: what the CC does (``luhyaapi.commands.send_command``): the command sealed with an Ed25519 key
  for its node's queue, sent as the node's Celery task through the app's pooled producer, publisher confirms on;
- ``raw``: the reference, kombu publishing the same sealed bytes to the same queues, confirms on, no Celery;
- ``seal``: sealing alone (no broker), to tell the signature's share from Celery's and the broker's.

It prints per way: commands/s, per-command latency p50/p99 (ms), and the ratio of ``send_command`` to ``raw``.
The queues are purged and deleted afterwards. Run from the repository root:

    .venv/bin/python bench/command_publish.py
    .venv/bin/python bench/command_publish.py --commands 5000 --nodes 100 --transport sqlite
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DATA = Path(tempfile.mkdtemp(prefix="educloud-bench-"))
os.environ.update({"EDUCLOUD_HOST_NAME": "bench-cc", "EDUCLOUD_HOST_ROLES": "cc", "EDUCLOUD_HOST_DATA_DIR": str(DATA),
                   "EDUCLOUD_CLOUD_CLC_URL": "http://127.0.0.1:9/", "DJANGO_SETTINGS_MODULE": "educloud.settings"})

import django  # noqa: E402

django.setup()
logging.getLogger("luhyaapi.commands").setLevel(logging.WARNING)  # a line per command otherwise

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey  # noqa: E402
from kombu import Connection, Exchange, Queue  # noqa: E402

from educloud.celery import app  # noqa: E402
from luhyaapi.commands import sealed, send_command  # noqa: E402
from luhyaapi.keys import HostKey  # noqa: E402
from luhyaapi.messages import Command  # noqa: E402
from luhyaapi.queues import node_commands  # noqa: E402
from tests.rabbitmq import scratch_vhost  # noqa: E402


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def run(url: str, commands: int, nodes: int, rounds: int) -> dict[str, list[float]]:
    key = HostKey("bench-cc", Ed25519PrivateKey.generate())
    names = [f"bench-{n:03d}" for n in range(nodes)]
    queues = [Queue(node_commands(name), Exchange(node_commands(name), "direct"), routing_key=node_commands(name))
              for name in names]
    with Connection(url) as connection:
        for queue in queues:
            queue(connection.default_channel).declare()
    timings: dict[str, list[float]] = {"send_command": [], "raw": [], "seal": []}
    per_round = commands // rounds
    with app.connection_for_write(url) as raw_connection:
        producer = raw_connection.Producer()
        for round_ in range(rounds):
            batch = [(names[i % nodes], Command(op="status/report", paras={"n": round_ * per_round + i}))
                     for i in range(per_round)]
            for node, command in batch:
                started = time.perf_counter()
                sealed(node, command, key)
                timings["seal"].append(time.perf_counter() - started)
            for node, command in batch:
                started = time.perf_counter()
                send_command(url, node, command, key=key)
                timings["send_command"].append(time.perf_counter() - started)
            for node, command in batch:
                body = sealed(node, command, key)
                queue = node_commands(node)
                started = time.perf_counter()
                producer.publish([[body], {}, {}], exchange=queue, routing_key=queue, serializer="json",
                                 delivery_mode=2, headers={"id": uuid.uuid4().hex})
                timings["raw"].append(time.perf_counter() - started)
    with Connection(url) as connection:
        for queue in queues:
            queue(connection.default_channel).delete()
    return timings


def report(transport: str, timings: dict[str, list[float]]) -> None:
    print(f"\n{transport}: {len(timings['send_command'])} commands each way")
    print(f"  {'way':<14}{'per s':>10}{'p50 ms':>10}{'p99 ms':>10}")
    for way, values in timings.items():
        print(f"  {way:<14}{len(values) / sum(values):>10.0f}{percentile(values, 0.5) * 1e3:>10.3f}"
              f"{percentile(values, 0.99) * 1e3:>10.3f}")
    ratio = statistics.fmean(timings["send_command"]) / statistics.fmean(timings["raw"])
    print(f"  send_command costs {ratio:.2f}x a plain confirmed publish of the same bytes")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--commands", type=int, default=2000)
    parser.add_argument("--nodes", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=4, help="rounds the ways alternate in")
    parser.add_argument("--transport", choices=("both", "rabbitmq", "sqlite"), default="both")
    options = parser.parse_args()
    if options.transport in ("both", "rabbitmq"):
        with scratch_vhost("educloud-bench") as url:
            report("RabbitMQ", run(url, options.commands, options.nodes, options.rounds))
    if options.transport in ("both", "sqlite"):
        url = f"sqlite-broker://{DATA}/broker.sqlite3"
        report("SQLite broker (all-in-one)", run(url, options.commands, options.nodes, options.rounds))


if __name__ == "__main__":
    main()
