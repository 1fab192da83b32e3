"""Command throughput benchmark: how many stop/start commands per second a cluster's nodes take and run, from the
CC's first send to the last command run, for the Celery path (this tree) against the hand-made command path it
replaced (the tree at ``--reference``, the last commit before issue 14 by default), interleaved in rounds in the
same minute on the same RabbitMQ.

Each round runs each path in a child process of its own, on a scratch virtual host of RabbitMQ at ``--amqp``:
``--commands`` commands (instance/stop and instance/run in turn, each for an instance of its own) spread over
``--nodes`` simulated node queues (``cmd.bench-nNNN``), sent by a CC one after another as fast as it can while the
nodes take them:

- before (``bus``): the CC publishes each sealed command on the node's queue (``Bus.publish``); each node is a
  consumer thread of its own on that queue taking one command at a time (the old ``nc-commands`` daemon);
- after (``celery``): the CC sends each command as the node's Celery task (``luhyaapi.commands.send_command``,
  publisher confirms on); one Celery worker (``daemons.celery_worker``, a thread pool of ``--slots``) consumes every
  node queue, and each task is checked as the node of the queue it came from would check it.

A simulated node does all of a real node's work on a command (the seal and its sender checked against the trust
records, the command recorded once by its key in the node's database, the handler called) except the hypervisor's:
the stop/start handler only notes the time. One process stands in for every node, so all the nodes' records share
one SQLite file (a real node has its own); it holds the CLC's trust records too, so a sender is looked up in its own
database (a real node asks the CLC once and caches the answer).

Prints, per path: commands sent/s, commands run/s (first send to last run), send-to-run latency p50/p99 in ms, and
the ratio of after to before, with the median of the rounds. Run from the repository root:

    .venv/bin/python bench/command_throughput.py
    .venv/bin/python bench/command_throughput.py --commands 1000 --nodes 100 --rounds 3 --reference 62b8af0
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# The last commit with the hand-made command path (commands on cmd.<node> and the nc-commands consumer).
REFERENCE = "62b8af0"
OPS = ("instance/stop", "instance/run")


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


# --- the child: one path, in the tree it is given ---------------------------------------------------------------

def child(mode: str, tree: Path, url: str, data: Path, nodes: int, count: int, slots: int) -> dict:
    sys.path.insert(0, str(tree))
    os.environ.update({"EDUCLOUD_HOST_NAME": "bench-nc", "EDUCLOUD_ROLES": "clc,nc",
                       "EDUCLOUD_HOST_DATA_DIR": str(data), "EDUCLOUD_CLOUD_CLC_URL": "http://127.0.0.1:9/",
                       "EDUCLOUD_CLOUD_CC_URL": "http://127.0.0.1:9/", "DJANGO_SETTINGS_MODULE": "educloud.settings"})
    import logging

    import django

    django.setup()
    logging.disable(logging.WARNING)  # a line per command otherwise
    from dataclasses import replace

    from django.core.management import call_command

    from luhyaapi.ids import new_id
    from luhyaapi.messages import Command
    from luhyaapi.queues import node_commands
    from nc.services import commands as node
    from tests.keys import enrolled_key

    call_command("migrate", verbosity=0)
    key = enrolled_key("bench-cc", "cc")
    ran: dict[str, float] = {}
    lock = threading.Lock()

    def noted(command, reporter) -> None:
        with lock:
            ran[command.msg_id] = time.monotonic()

    for op in OPS:
        node.HANDLERS[op] = replace(node.HANDLERS[op], run=noted)
    names = [f"bench-n{index:03d}" for index in range(nodes)]
    batch = [(names[n % nodes], Command(op=OPS[n % 2], paras={"insid": new_id("instance")})) for n in range(count)]
    send, stop = (_bus_path if mode == "bus" else _celery_path)(url, names, slots, node, node_commands)

    sent: dict[str, float] = {}
    started = time.monotonic()
    for name, command in batch:
        sent[command.msg_id] = time.monotonic()
        send(name, command, key)
    all_sent = time.monotonic()
    deadline = all_sent + 600
    while len(ran) < count and time.monotonic() < deadline:
        time.sleep(0.01)
    stop()
    if len(ran) < count:
        raise SystemExit(f"{mode}: only {len(ran)} of {count} commands ran within 10 minutes")
    latencies = [(ran[msg_id] - at) * 1000 for msg_id, at in sent.items()]
    return {"mode": mode, "sent_per_s": count / (all_sent - started),
            "run_per_s": count / (max(ran.values()) - started),
            "p50_ms": percentile(latencies, 0.5), "p99_ms": percentile(latencies, 0.99)}


class _NoReports:
    """The simulated nodes' status reporter: the stop/start handler reports nothing."""

    def report_now(self, last_command: str = "") -> None:
        pass

    def publish(self, message) -> None:
        pass


def _bus_path(url: str, names: list[str], slots: int, node, node_commands):
    from luhyaapi.bus import RabbitMQBus
    from nc.consumers.nc_cmd import NcCommandConsumer

    publisher = RabbitMQBus(url)
    stop = threading.Event()
    consumers = [threading.Thread(target=RabbitMQBus(url).consume, daemon=True,
                                  args=(node_commands(name), NcCommandConsumer(_NoReports()).consume, stop),
                                  kwargs={"max_batch": 1}) for name in names]
    for consumer in consumers:
        consumer.start()

    def send(name: str, command, key) -> None:
        publisher.publish(node_commands(name), command, key=key)

    def halt() -> None:
        stop.set()
        for consumer in consumers:
            consumer.join(timeout=30)
        publisher.close()

    return send, halt


def _celery_path(url: str, names: list[str], slots: int, node, node_commands):
    from celery.signals import task_prerun

    from daemons.celery_worker import celery_worker
    from educloud.celery import app
    from luhyaapi.commands import send_command
    from nc import tasks

    app.conf.broker_url = url
    tasks.use_reporter(_NoReports())
    # A task is checked as sealed for the queue it came from: the node of that queue, though one worker takes all.
    current = threading.local()
    task_prerun.connect(lambda task=None, **_: setattr(current, "queue", task.request.delivery_info["routing_key"]),
                        weak=False)
    node.node_commands = lambda name: current.queue
    stop = threading.Event()
    worker = threading.Thread(target=celery_worker("nc@bench", [node_commands(name) for name in names], slots),
                              args=(stop,), daemon=True)
    worker.start()

    def send(name: str, command, key) -> None:
        send_command(url, name, command, key=key)

    def halt() -> None:
        stop.set()
        worker.join(timeout=60)

    return send, halt


# --- the parent: rounds of both paths -----------------------------------------------------------------------------

def run_child(mode: str, tree: Path, url: str, args) -> dict:
    result = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--child", mode, "--tree", str(tree),
                             "--url", url, "--nodes", str(args.nodes), "--commands", str(args.commands),
                             "--slots", str(args.slots)],
                            cwd=tree, capture_output=True, text=True, timeout=900)
    if result.returncode != 0:
        raise SystemExit(f"the {mode} run failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--commands", type=int, default=1000)
    parser.add_argument("--nodes", type=int, default=100)
    parser.add_argument("--slots", type=int, default=100, help="the Celery worker's threads (default: one per node, "
                        "as the old path had a consumer thread per node)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--reference", default=REFERENCE, help="the commit with the path to compare with")
    parser.add_argument("--child", choices=("bus", "celery"), help=argparse.SUPPRESS)
    parser.add_argument("--tree", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        with tempfile.TemporaryDirectory(prefix="educloud-bench-nc-") as data:
            figures = child(args.child, args.tree, args.url, Path(data), args.nodes, args.commands, args.slots)
        print(json.dumps(figures), flush=True)
        return

    sys.path.insert(0, str(ROOT))
    from reference import reference_tree

    from tests.rabbitmq import scratch_vhost

    print(f"{args.commands} stop/start commands over {args.nodes} node queues on RabbitMQ, {args.rounds} rounds; "
          f"before: the hand-made path at {args.reference}, after: Celery ({args.slots} worker threads)", flush=True)
    figures: dict[str, list[dict]] = {"bus": [], "celery": []}
    with reference_tree(args.reference) as before:
        for round_ in range(1, args.rounds + 1):
            for mode, tree in (("bus", before), ("celery", ROOT)):
                with scratch_vhost("educloud-bench") as url:
                    result = run_child(mode, tree, url, args)
                figures[mode].append(result)
                print(f"  round {round_} {mode:6}: {result['run_per_s']:7.0f} run/s, {result['sent_per_s']:7.0f} "
                      f"sent/s, p50 {result['p50_ms']:7.1f} ms, p99 {result['p99_ms']:7.1f} ms", flush=True)

    def median(mode: str, name: str) -> float:
        return statistics.median(result[name] for result in figures[mode])

    print("\nmedian of the rounds      before (bus)   after (Celery)   after/before")
    for name, label in (("run_per_s", "commands run/s"), ("sent_per_s", "commands sent/s"),
                        ("p50_ms", "send-to-run p50 (ms)"), ("p99_ms", "send-to-run p99 (ms)")):
        old, new = median("bus", name), median("celery", name)
        print(f"  {label:22} {old:13.1f} {new:16.1f} {new / old:14.2f}")


if __name__ == "__main__":
    main()
