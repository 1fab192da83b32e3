"""Status fan-in benchmark: N simulated nodes heartbeat through real RabbitMQ into the real CLC status daemon.

For each N (default 100, 1,000 and 10,000) the script

1. makes a fresh data dir with a fresh SQLite database (copied from one template made once by ``manage.py
   init_cloud``) or, with ``--database mysql``, a fresh MariaDB database (dropped afterwards); purges
   ``clc.status``; empties the cache (one memcached that the script starts on a free port for the whole run);
2. starts the real daemon as its own process: ``manage.py run_daemons --only clc-status,clc-sweeper``;
3. starts publisher processes (``multiprocessing``, a few threads each, one RabbitMQ connection per thread) that
   simulate the N nodes: node ``bench-NNNNN`` (role ``nc``, cluster ``bench``, its key enrolled in the CLC's
   database, made from its name so that every process makes the same one) publishes a ``NodeStatus`` with
   ``seq`` 1, 2, 3 ... every ``--interval`` seconds, the N nodes spread evenly over the interval, through
   ``luhyaapi.bus.RabbitMQBus.publish`` sealed with its key (a publisher confirm per message, as a real node does;
   ``--publish-mode unconfirmed`` is a cheaper load generator for telling the daemon's limit from the load
   generator's), so the daemon checks every message's seal, sender and policy as it does in a cloud;
4. waits until the daemon has caught up (every node in the cache, under 0.5 s of heartbeats queued) and, by
   default, until the window can hold the daemon's database liveness pass (``db_touch_seconds`` after the first
   heartbeats), then measures ``--seconds``: every ``--sample-every`` seconds it reads the cache entries of an evenly
   spread subset of the nodes (``--sample-nodes``), and every node's entry at the start and end of the window, with
   the keys Django's cache uses (``cache.make_key`` of ``status:server:nc:<name>``);
5. stops everything it started (publishers, daemon, memcached), also on error, Ctrl-C or SIGTERM; children also
   get SIGTERM from the kernel if this process dies (PR_SET_PDEATHSIG).

What is measured in the window (the definitions are printed with the results):

- published/s: publishes (confirm included) that ended in the window; target = N / interval;
- folded/s: the sum over nodes of the advance of the cached ``seq`` across the window (a heartbeat superseded
  inside one batch counts as folded: its newer copy is in the cache);
- latency, the cache's staleness: ``folded_at - sent_at`` of every new (node, seq) seen by the sampler, i.e. how
  long a published heartbeat took to reach the cache (``visible`` = first sample that saw it - ``sent_at``);
- entry age: ``now - sent_at`` of the cached entries at every sample (healthy: at most interval + latency); stale =
  share older than interval + 2 s;
- CPU: ``psutil`` CPU time over the window / wall time, for the daemon, the publishers, RabbitMQ (``beam.smp``,
  read only), memcached, this process and everything else, in % of one core;
- publisher lag: how late publishes started against their schedule (tells whether the load generator kept up);
- the cost of the bus's signatures, measured in this process on one batch as the daemon takes it (500 heartbeats of
  500 nodes, their keys looked up in the template database): sealing one message, decoding one unsealed message
  (all the daemon did per message before messages were signed), and checking one (``luhyaapi.bus.admit``: envelope,
  the batch's one look-up of its senders, Ed25519 verification, decoding, the queue's policy).

Run from the repository root (RabbitMQ at 127.0.0.1:5672, memcached installed); the default run takes about
5 minutes (each N lasts about --db-touch + 2/3 --seconds):

    .venv/bin/python bench/status_fanin.py
    .venv/bin/python bench/status_fanin.py --nodes 10000 --seconds 45 --interval 5
    .venv/bin/python bench/status_fanin.py --nodes 10000 --publish-mode unconfirmed
    .venv/bin/python bench/status_fanin.py --nodes 1000 --database mysql --json /tmp/fanin.json
    .venv/bin/python bench/status_fanin.py --nodes 100 --seconds 10 --no-touch-in-window   # a quick check
"""

from __future__ import annotations

import argparse
import array
import hashlib
import json
import math
import multiprocessing as mp
import os
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from databases import run_mysql

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

QUEUE = "clc.status"  # replaced by luhyaapi.queues.CLC_STATUS once imported (kept here for the spawned children)
DEFAULT_BUS_URL = "amqp://guest:guest@127.0.0.1:5672/%2F"
DAEMONS = "clc-status,clc-sweeper"
STALE_MARGIN_SECONDS = 2.0
SLACK_SECONDS = 0.005
KEY_SEED = b"educloud-bench-node:"
VERIFY_BATCH = 500


def log(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", flush=True)


# --------------------------------------------------------------------------------------------------------------------
# Publisher processes (spawned: they import only luhyaapi.bus and luhyaapi.messages, not Django)
# --------------------------------------------------------------------------------------------------------------------


def node_name(index: int) -> str:
    return f"bench-{index:05d}"


def host_key(name: str):
    """A simulated host's key pair, made from its name: the publishers sign with it and the parent process enrols
    its public half, without passing keys between processes."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from luhyaapi.keys import HostKey

    return HostKey(name, Ed25519PrivateKey.from_private_bytes(hashlib.sha256(KEY_SEED + name.encode()).digest()))


def node_key(index: int):
    """Simulated node ``index``'s key pair."""
    return host_key(node_name(index))


def paced(items: list, offsets: list[float], interval: float, t_end: float, stop) -> Iterator[tuple]:
    """``items`` in turn, round after round, each at its due time (its offset plus a whole number of ``interval``),
    until ``t_end`` or ``stop``: (item, due time, round). What is due within ``SLACK_SECONDS`` comes at once: fewer
    wake-ups (each costs ~30 us of CPU) for a schedule still exact to a few milliseconds."""
    rounds = 0
    while not stop.is_set():
        for item, offset in zip(items, offsets, strict=True):
            due = offset + rounds * interval
            if due >= t_end or stop.is_set():
                return
            while (wait := due - time.time()) > SLACK_SECONDS:
                time.sleep(min(wait, 0.25))
                if stop.is_set():
                    return
            yield item, due, rounds
        rounds += 1


class UnconfirmedPublisher:
    """``--publish-mode unconfirmed``: the same bytes (``luhyaapi.signing.seal``), persistent, to the same durable
    queue, but on a channel without publisher confirms, so the load generator spends ~10x less CPU per message and
    leaves the machine's cores to the broker and the daemon. Not how a node publishes: use it to tell the daemon's
    limit from the load generator's on a machine too small to run both."""

    def __init__(self, url: str) -> None:
        import pika

        self.connection = pika.BlockingConnection(pika.URLParameters(url))
        self.channel = self.connection.channel()
        self.properties = pika.BasicProperties(delivery_mode=pika.DeliveryMode.Persistent,
                                               content_type="application/json")
        self.serviced = time.monotonic()

    def publish(self, queue: str, message, key) -> None:
        from luhyaapi.messages import encode
        from luhyaapi.signing import seal

        self.channel.basic_publish(exchange="", routing_key=queue, body=seal(key, queue, encode(message)),
                                   properties=self.properties)
        if time.monotonic() - self.serviced > 1.0:  # answer broker heartbeats, notice flow control
            self.connection.process_data_events(time_limit=0)
            self.serviced = time.monotonic()

    def close(self) -> None:
        try:
            self.connection.close()
        except Exception:
            pass


def _publish_thread(nodes: list[int], n_total: int, interval: float, t0: float, t_end: float, bus_url: str,
                    queue: str, mode: str, stop, out: list, errors: list) -> None:
    from luhyaapi.bus import RabbitMQBus
    from luhyaapi.messages import NodeStatus, Resources

    bus = RabbitMQBus(bus_url, publish_retry_seconds=10.0) if mode == "bus" else UnconfirmedPublisher(bus_url)
    keys = {index: node_key(index) for index in nodes}
    capacity = Resources(cpus=16, memory_mb=65536, disk_mb=1_000_000)
    free = Resources(cpus=12, memory_mb=49152, disk_mb=800_000)
    # One record per publish: scheduled time, start and end of the publish call (wall clock, as sent_at is).
    due_log, start_log, end_log = array.array("d"), array.array("d"), array.array("d")
    offsets = [t0 + interval * index / n_total for index in nodes]
    try:
        for index, due, rounds in paced(nodes, offsets, interval, t_end, stop):
            started = time.time()
            status = NodeStatus(role="nc", name=node_name(index), ip=f"10.{index >> 16 & 255}.{index >> 8 & 255}."
                                f"{index & 255}", cluster="bench", api_url="", interval=interval,
                                seq=rounds + 1, capacity=capacity, free=free, cpu_usage=25.0,
                                services={"daemon": "running"})
            bus.publish(queue, status, key=keys[index])
            due_log.append(due)
            start_log.append(started)
            end_log.append(time.time())
    except Exception as exc:  # reported to the parent, which prints it
        errors.append(f"{type(exc).__name__}: {exc}")
    finally:
        out.append((due_log.tobytes(), start_log.tobytes(), end_log.tobytes()))
        bus.close()


def publisher_main(nodes: list[int], n_total: int, interval: float, t0: float, t_end: float, bus_url: str,
                   queue: str, mode: str, threads: int, stop, results) -> None:
    """One publisher process: ``threads`` threads, each with its own connection, each owning a share of ``nodes``."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops us through ``stop``
    die_with_parent()
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    out: list = []
    errors: list = []
    shares = [nodes[k::threads] for k in range(threads)]
    workers = [threading.Thread(target=_publish_thread, daemon=True,
                                args=(share, n_total, interval, t0, t_end, bus_url, queue, mode, stop, out, errors))
               for share in shares if share]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=max(1.0, t_end - time.time() + 30))
    results.put({"pid": os.getpid(), "records": list(out), "errors": errors})


# --------------------------------------------------------------------------------------------------------------------
# Helpers of the parent process
# --------------------------------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def percentile(values, q: float) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))
    return ordered[rank]


def die_with_parent() -> None:
    """Ask Linux to SIGTERM this process when its parent dies (``preexec_fn`` of the children we start, and the
    first thing a publisher does), so nothing outlives the benchmark even if it is killed with SIGKILL."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


class Processes:
    """Everything this script started, stopped in reverse order whatever happens (a second Ctrl-C included)."""

    def __init__(self) -> None:
        self.items: list[tuple[str, object]] = []
        self.events: list = []  # set before stopping, so the publishers end on their own
        self.queues: list = []  # drained while stopping: a publisher exits only once its result is read

    def add(self, name: str, proc) -> None:
        self.items.append((name, proc))

    def stop(self, name_or_proc) -> None:
        for item in list(self.items):
            if item[0] == name_or_proc or item[1] is name_or_proc:
                _stop_one(*item)
                self.items.remove(item)

    def stop_all(self, keep: tuple[str, ...] = ()) -> None:
        # Finish the clean-up even if Ctrl-C or SIGTERM comes again.
        previous = {signum: signal.signal(signum, signal.SIG_IGN) for signum in (signal.SIGINT, signal.SIGTERM)}
        try:
            for event in self.events:
                event.set()
            children = [proc for _, proc in self.items if not isinstance(proc, subprocess.Popen)]
            deadline = time.monotonic() + 20
            while self.queues and any(child.is_alive() for child in children) and time.monotonic() < deadline:
                for results in self.queues:
                    try:
                        results.get(timeout=0.1)
                    except Exception:  # queue.Empty, or a broken queue: nothing to drain
                        pass
            for item in reversed(list(self.items)):
                if item[0] not in keep:
                    _stop_one(*item)
                    self.items.remove(item)
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)


def _stop_one(name: str, proc) -> None:
    try:
        if isinstance(proc, subprocess.Popen):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    log(f"{name} (pid {proc.pid}) did not stop on SIGTERM; killing it")
                    proc.kill()
                    proc.wait(timeout=10)
        else:  # multiprocessing.Process
            proc.join(timeout=15)
            if proc.is_alive():
                log(f"{name} (pid {proc.pid}) did not stop; terminating it")
                proc.terminate()
                proc.join(timeout=10)
                if proc.is_alive():
                    proc.kill()
                    proc.join(timeout=5)
    except Exception as exc:  # never let one stubborn process keep the others running
        log(f"could not stop {name}: {exc!r}")


def base_env(data_dir: Path, conf: Path, peer_dir: Path, args, cache_url: str, database_url: str) -> dict:
    env = {key: value for key, value in os.environ.items() if not key.startswith("EDUCLOUD_")}
    env.update({
        "EDUCLOUD_CONF": str(conf),
        "EDUCLOUD_HOST_NAME": "benchclc",
        "EDUCLOUD_ROLES": "clc",
        "EDUCLOUD_HOST_DATA_DIR": str(data_dir),
        "EDUCLOUD_HOST_PEER_CONFIG_DIR": str(peer_dir),
        "EDUCLOUD_BUS_URL": args.bus_url,
        "EDUCLOUD_CACHE_URL": cache_url,
        "EDUCLOUD_DATABASE_URL": database_url,
        "EDUCLOUD_CLOUD_HEARTBEAT_SECONDS": str(args.interval),
        "EDUCLOUD_CLOUD_DB_TOUCH_SECONDS": str(args.db_touch),
        "DJANGO_SETTINGS_MODULE": "educloud.settings",
        "PYTHONUNBUFFERED": "1",
    })
    return env


def run_manage(env: dict, *command: str, timeout: float = 300) -> None:
    result = subprocess.run([sys.executable, "manage.py", *command], cwd=ROOT, env=env, capture_output=True,
                            text=True, timeout=timeout)
    if result.returncode != 0:
        raise RuntimeError(f"manage.py {' '.join(command)} failed:\n{result.stdout}\n{result.stderr}")


ENROL_CODE = """
import json, os
from django.utils import timezone
from luhyaapi.keys import fingerprint
from luhyadb.models import HostCredential
now = timezone.now()
keys = json.loads(open(os.environ["BENCH_KEYS"]).read())
HostCredential.objects.bulk_create([
    HostCredential(name=name, kind="server", roles="nc", cluster="bench", public_key=key, fingerprint=fingerprint(key),
                   state="active", requested_at=now, approved_at=now, approved_by="bench")
    for name, key in keys.items()], batch_size=1000)
"""


def enrol_nodes(env: dict, count: int, workdir: Path) -> None:
    """Trust nodes 1 to ``count`` in the database ``env`` points at: approved keys of role nc in cluster bench."""
    path = workdir / f"keys-{count}.json"
    path.write_text(json.dumps({node_name(index): node_key(index).public_key for index in range(1, count + 1)}))
    run_manage(env | {"BENCH_KEYS": str(path)}, "shell", "-c", ENROL_CODE)


def measure_signatures(count: int = VERIFY_BATCH, rounds: int = 7) -> dict[str, float]:
    """What the bus's signatures cost per message, in microseconds of this process's CPU (the best of ``rounds``
    batches of ``count`` heartbeats from as many nodes, enrolled in the template database): sealing one (a node's
    side); decoding an unsealed one (all the daemon did per message before); Ed25519 verification alone; and
    checking one as the daemon does (``luhyaapi.bus.admit``: envelope, the batch's one look-up of its senders,
    verification, decoding, the policy), so that check - decode is what signing adds to the daemon's work."""
    from luhyaapi.bus import admit
    from luhyaapi.bus_trust import policy_for
    from luhyaapi.messages import NodeStatus, Resources, decode, encode
    from luhyaapi.queues import CLC_STATUS
    from luhyaapi.signing import seal, unseal, verify_sealed

    room = Resources(cpus=16, memory_mb=65536, disk_mb=1_000_000)
    keys = [node_key(index) for index in range(1, count + 1)]
    public = [key.public_key for key in keys]
    plain = [encode(NodeStatus(role="nc", name=key.name, ip="10.0.0.1", cluster="bench", interval=5, seq=1,
                               capacity=room, free=room, cpu_usage=25.0, services={"daemon": "running"}))
             for key in keys]
    sealed = [seal(key, CLC_STATUS, body) for key, body in zip(keys, plain, strict=True)]
    policy = policy_for(CLC_STATUS)

    def best(work) -> float:
        spent = []
        for _ in range(rounds):
            started = time.process_time()
            work()
            spent.append(time.process_time() - started)
        return min(spent) / count * 1e6

    def check() -> None:
        dead, taken = admit(CLC_STATUS, sealed, policy)
        if dead or len(taken) != count:
            raise RuntimeError(f"the bench's own heartbeats were refused: {dead[:1]}")

    figures = {
        "seal_us": best(lambda: [seal(key, CLC_STATUS, body) for key, body in zip(keys, plain, strict=True)]),
        "decode_us": best(lambda: [decode(body) for body in plain]),
        "verify_us": best(lambda: [verify_sealed(key, CLC_STATUS, unseal(body))
                                   for key, body in zip(public, sealed, strict=True)]),
        "check_us": best(check),
        "plain_bytes": statistics.mean(len(body) for body in plain),
        "sealed_bytes": statistics.mean(len(body) for body in sealed),
    }
    figures["added_us"] = figures["check_us"] - figures["decode_us"]
    return figures


def print_signatures(figures: dict[str, float]) -> None:
    print(f"Bus signatures, per message (best of batches of {VERIFY_BATCH} heartbeats of as many nodes, this "
          "process's CPU)")
    print(f"  seal (node): {figures['seal_us']:.1f} us; daemon before signing (decode): {figures['decode_us']:.1f} us;"
          f" daemon now (admit: envelope, senders looked up once a batch, verify, decode, policy): "
          f"{figures['check_us']:.1f} us, of which Ed25519 verify {figures['verify_us']:.1f} us; added by signing "
          f"{figures['added_us']:.1f} us/message")
    print(f"  size: {figures['plain_bytes']:.0f} bytes unsealed, {figures['sealed_bytes']:.0f} sealed "
          f"(+{figures['sealed_bytes'] / figures['plain_bytes'] - 1:.0%})")


def wait_for_line(path: Path, text: str, proc: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and text in path.read_text(errors="replace"):
            return
        if proc.poll() is not None:
            raise RuntimeError(f"the daemon exited with {proc.returncode}; its log:\n{path.read_text()[-3000:]}")
        time.sleep(0.1)
    raise RuntimeError(f"the daemon did not print {text!r} within {timeout:.0f}s; its log:\n{path.read_text()[-3000:]}")


def cpu_seconds(proc) -> float:
    try:
        times = proc.cpu_times()
        return times.user + times.system
    except Exception:
        return math.nan


def find_rabbitmq():
    import psutil

    for proc in psutil.process_iter(["name"]):
        if proc.info["name"] == "beam.smp":
            return proc
    return None


class QueueDepth:
    """Reads how many messages wait on the status queue (a passive declare; read only)."""

    def __init__(self, url: str, queue: str) -> None:
        import pika

        self.queue = queue
        self.connection = pika.BlockingConnection(pika.URLParameters(url))
        self.channel = self.connection.channel()

    def __call__(self) -> int:
        try:
            return self.channel.queue_declare(self.queue, passive=True).method.message_count
        except Exception:
            return -1

    def close(self) -> None:
        try:
            self.connection.close()
        except Exception:
            pass


class CacheReader:
    """Reads the daemon's cache entries: the keys are Django's own (``cache.make_key``, so prefix and version are
    the daemon's) and the values are decoded with the serde Django's PyMemcacheCache uses (pickle). A plain
    pymemcache client is used instead of ``cache.get_many`` because Django's path costs ~35 us per key (key
    validation and the pure-Python murmur3 of pymemcache's HashClient), which would steal CPU from the daemon."""

    def __init__(self, cache, keys: list[str], memcached_url: str) -> None:
        from urllib.parse import urlsplit

        from pymemcache import serde
        from pymemcache.client.base import Client

        parts = urlsplit(memcached_url)
        self.client = Client((parts.hostname, parts.port), serde=serde.pickle_serde, allow_unicode_keys=True,
                             connect_timeout=2, timeout=10, no_delay=True)
        self.real = {key: cache.make_key(key) for key in keys}
        self.back = {real: key for key, real in self.real.items()}

    def get(self, keys: list[str]) -> dict[str, dict]:
        found = self.client.get_many([self.real[key] for key in keys])
        return {self.back[real]: value for real, value in found.items()}

    def close(self) -> None:
        self.client.close()


@dataclass
class Result:
    nodes: int
    interval: float
    target_rate: float
    publishers: str = ""
    warmup_seconds: float = math.nan  # first heartbeat -> window start
    caught_up_seconds: float = math.nan  # first heartbeat -> every node cached and the queue drained
    warmed_up: bool = False
    db_touch_in_window: bool = False
    warmup_daemon_cpu: float = math.nan
    sampled_nodes: int = 0
    window_seconds: float = math.nan
    published_rate: float = math.nan
    folded_rate: float = math.nan
    folds_seen: int = 0
    latency_p50: float = math.nan
    latency_p99: float = math.nan
    latency_max: float = math.nan
    latency_by_second: dict = field(default_factory=dict)  # second of the window -> worst fold latency
    visible_p50: float = math.nan
    visible_p99: float = math.nan
    age_p50: float = math.nan
    age_p99: float = math.nan
    stale_share: float = math.nan
    missing_end: int = 0
    backlog_start: int = -1
    backlog_end: int = -1
    backlog_max: int = -1
    pub_lag_p50: float = math.nan
    pub_lag_p99: float = math.nan
    pub_late_share: float = math.nan
    publish_call_p50_ms: float = math.nan
    cpu: dict = field(default_factory=dict)
    machine_busy: float = math.nan
    background_busy: float = math.nan
    daemon_rss_mb: float = math.nan
    sample_cost_ms: float = math.nan
    samples: int = 0
    errors: list = field(default_factory=list)

    @property
    def published_ratio(self) -> float:
        return self.published_rate / self.target_rate

    @property
    def folded_ratio(self) -> float:
        return self.folded_rate / self.target_rate

    @property
    def kept_up_ratio(self) -> float:
        return self.folded_rate / self.published_rate if self.published_rate else math.nan

    @property
    def daemon_kept_up(self) -> bool:
        return self.warmed_up and self.kept_up_ratio >= 0.98 and self.latency_p99 < 2.0

    @property
    def goal_met(self) -> bool:
        return (self.warmed_up and self.folded_ratio >= 0.98 and self.latency_p99 < 2.0 and self.stale_share < 0.01
                and not self.errors)


# --------------------------------------------------------------------------------------------------------------------
# One run
# --------------------------------------------------------------------------------------------------------------------


def auto_publishers(rate: float, mode: str) -> tuple[int, int]:
    """Processes and threads per process. With confirms one publish costs ~0.35 ms of CPU in pika and one connection
    does at most ~900/s, so every ~500 msg/s gets its own process (at most 4), with 2 threads each; without
    confirms one thread does several thousand per second."""
    if mode == "unconfirmed":
        return max(1, min(4, math.ceil(rate / 2500))), 1
    processes = max(1, min(4, math.ceil(rate / 500)))
    threads = 1 if rate <= 200 else 2
    return processes, threads


def run_one(n_nodes: int, args, procs: Processes, workdir: Path, template_db: Path | None, memcached_url: str,
            conf: Path, peer_dir: Path) -> Result:
    import psutil
    from django.core.cache import cache

    from clc.services.status import server_key
    from luhyaapi.bus import RabbitMQBus

    interval = args.interval
    result = Result(nodes=n_nodes, interval=interval, target_rate=n_nodes / interval)
    run_dir = workdir / f"run-{n_nodes}"
    data_dir = run_dir / "data"
    data_dir.mkdir(parents=True)
    if args.database == "mysql":
        db_name = f"bench_fanin_{os.getpid()}_{n_nodes}"
        database_url = f"{args.mysql_url.rstrip('/')}/{db_name}"
        run_mysql(args.mysql_url, f"DROP DATABASE IF EXISTS `{db_name}`",
               f"CREATE DATABASE `{db_name}` CHARACTER SET utf8mb4")
    else:
        db_name = ""
        database_url = f"sqlite:///{data_dir / 'educloud.sqlite3'}"
        with sqlite3.connect(template_db) as source, sqlite3.connect(data_dir / "educloud.sqlite3") as target:
            source.backup(target)
    env = base_env(data_dir, conf, peer_dir, args, memcached_url, database_url)
    try:
        if args.database == "mysql":
            log(f"N={n_nodes}: creating tables in MariaDB database {db_name}, enrolling the nodes' keys")
            run_manage(env, "init_cloud")
            enrol_nodes(env, n_nodes, run_dir)

        bus = RabbitMQBus(args.bus_url)
        bus.purge(QUEUE)
        bus.close()
        cache.clear()
        # What the machine does without us, so a reader can tell a disturbed run.
        result.background_busy = psutil.cpu_percent(interval=1.0) / 100
        if result.background_busy > 0.2:
            log(f"N={n_nodes}: warning: the machine is {result.background_busy:.0%} busy before the run starts "
                f"(other jobs); the figures will be disturbed")

        daemon_log = run_dir / "daemon.log"
        with open(daemon_log, "wb") as out:
            daemon = subprocess.Popen([sys.executable, "manage.py", "run_daemons", "--only", DAEMONS], cwd=ROOT,
                                      env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                                      preexec_fn=die_with_parent)
        procs.add(f"daemon N={n_nodes}", daemon)
        wait_for_line(daemon_log, "daemons running", daemon, timeout=60)
        daemon_ps = psutil.Process(daemon.pid)

        processes, threads = (args.publishers, args.threads) if args.publishers else auto_publishers(
            result.target_rate, args.publish_mode)
        processes = min(processes, n_nodes)
        result.publishers = f"{processes}x{threads}{'' if args.publish_mode == 'bus' else ' unconf.'}"
        ctx = mp.get_context("spawn")
        stop = ctx.Event()
        procs.events.append(stop)
        results_queue = ctx.Queue()
        procs.queues.append(results_queue)
        t0 = time.time() + 2.0 + 0.3 * processes  # leaves the spawned children time to import
        t_end = t0 + args.warmup_max + args.seconds + 2 * interval
        publishers = []
        for k in range(processes):
            share = list(range(k + 1, n_nodes + 1, processes))  # node k+1, k+1+P, ... so every process spreads
            proc = ctx.Process(target=publisher_main, name=f"publisher-{k}", daemon=True,
                               args=(share, n_nodes, interval, t0, t_end, args.bus_url, QUEUE, args.publish_mode,
                                     threads, stop, results_queue))
            proc.start()
            procs.add(f"publisher-{k} N={n_nodes}", proc)
            publishers.append(proc)
        log(f"N={n_nodes}: daemon pid {daemon.pid}, {processes} publisher process(es) x {threads} thread(s), "
            f"target {result.target_rate:.0f} msg/s, heartbeat every {interval:g}s")

        names = [node_name(i) for i in range(1, n_nodes + 1)]
        keys = [server_key("nc", name) for name in names]
        reader = CacheReader(cache, keys, memcached_url)
        step = max(1, n_nodes // args.sample_nodes) if args.sample_nodes else 1
        sub_keys = keys[::step]
        result.sampled_nodes = len(sub_keys)
        depth = QueueDepth(args.bus_url, QUEUE)
        rabbit = find_rabbitmq()
        memcached_ps = psutil.Process(args._memcached_pid) if args._memcached_pid else None
        me = psutil.Process()
        daemon_cpu_t0 = cpu_seconds(daemon_ps)

        def snapshot():
            return {"daemon": cpu_seconds(daemon_ps),
                    "publishers": sum(cpu_seconds(psutil.Process(p.pid)) for p in publishers if p.is_alive()),
                    "rabbitmq": cpu_seconds(rabbit) if rabbit else math.nan,
                    "memcached": cpu_seconds(memcached_ps) if memcached_ps else math.nan,
                    "bench": cpu_seconds(me),
                    "machine": psutil.cpu_times(), "wall": time.monotonic()}

        # --- sampling loop: warm-up, then the window -----------------------------------------------------------
        # Every tick reads the sampled nodes; the whole set is read at the start and at the end of the window
        # (for the seq advance of every node) and when the sampled nodes suggest the warm-up is over.
        last_seq: dict[str, int] = {}
        latencies: list[float] = []
        folded_at: list[float] = []
        visible: list[float] = []
        ages: list[float] = []
        stale = present_total = 0
        sample_costs: list[float] = []
        depths: list[int] = []
        window_start = window_end = None
        start_seq: dict[str, int] = {}
        end_seq: dict[str, int] = {}
        start_snapshot = end_snapshot = None
        warmup_deadline = t0 + args.warmup_max
        # The daemon writes each server's liveness to the database every db_touch seconds after its first fold, and
        # the first folds all fall in the first interval: so the pass over all N rows comes at about t0 + db_touch.
        # Start the window early enough to hold it (a third into the window), or a steady state without it is
        # measured.
        touch_at = t0 + args.db_touch
        window_not_before = touch_at - args.seconds / 3 if args.touch_in_window else 0.0
        result.db_touch_in_window = False
        next_sample = t0 + args.sample_every
        hard_deadline = t0 + args.warmup_max + args.seconds + 30
        while time.time() < hard_deadline:
            delay = next_sample - time.time()
            if delay > 0:
                time.sleep(delay)
            next_sample = max(next_sample + args.sample_every, time.time())
            if daemon.poll() is not None:
                raise RuntimeError(f"the daemon exited with {daemon.returncode}; see {daemon_log}")
            asked = time.time()
            entries = reader.get(sub_keys)
            now = time.time()
            sample_costs.append(now - asked)
            in_window = window_start is not None
            for key, entry in entries.items():
                seq = entry["seq"]
                if seq != last_seq.get(key):
                    last_seq[key] = seq
                    if in_window:
                        latencies.append(entry["folded_at"] - entry["sent_at"])
                        folded_at.append(entry["folded_at"])
                        visible.append(now - entry["sent_at"])
                if in_window:
                    age = now - entry["sent_at"]
                    ages.append(age)
                    stale += age > interval + STALE_MARGIN_SECONDS
            if in_window:
                present_total += len(entries)
                depths.append(depth())
                result.samples += 1
                if now >= window_start + args.seconds:
                    result.db_touch_in_window = window_start < touch_at + interval < now
                    read_from = time.time()
                    everything = reader.get(keys)
                    window_end = (read_from + time.time()) / 2  # the read of every node takes a while
                    end_snapshot = snapshot()
                    result.missing_end = n_nodes - len(everything)
                    result.backlog_end = depths[-1]
                    end_seq = {key: entry["seq"] for key, entry in everything.items()}
                    break
            elif (len(entries) == len(sub_keys) and now >= t0 + interval + 1) or now >= warmup_deadline:
                # Warm-up: every node in the cache and the daemon caught up (less than half a second of heartbeats
                # waiting); then the window starts, but not before window_not_before; at --warmup-max in any case.
                caught_up = depth() <= max(50, result.target_rate / 2)
                if caught_up and len(entries) == len(sub_keys) and math.isnan(result.caught_up_seconds):
                    result.caught_up_seconds = now - t0
                    result.warmup_daemon_cpu = cpu_seconds(daemon_ps) - daemon_cpu_t0
                    log(f"N={n_nodes}: caught up {result.caught_up_seconds:.1f}s after the first heartbeat (daemon "
                        f"used {result.warmup_daemon_cpu:.1f} CPU s)")
                deadline_passed = now >= warmup_deadline
                if not deadline_passed and (not caught_up or now < window_not_before):
                    continue
                read_from = time.time()
                everything = reader.get(keys)
                window_start = (read_from + time.time()) / 2  # the read of every node takes a while
                if len(everything) < n_nodes and not deadline_passed:
                    continue
                start_snapshot = snapshot()
                result.warmed_up = len(everything) == n_nodes and caught_up
                result.warmup_seconds = window_start - t0
                start_seq = {key: entry["seq"] for key, entry in everything.items()}
                result.backlog_start = depth()
                log(f"N={n_nodes}: window starts {result.warmup_seconds:.1f}s after the first heartbeat "
                    f"({len(everything)}/{n_nodes} nodes in the cache, {result.backlog_start} waiting"
                    f"{'' if result.warmed_up else ', NOT caught up: warm-up cut at --warmup-max'}); "
                    f"measuring {args.seconds:g}s")
        else:
            raise RuntimeError("the sampling loop ran out of time")
        depth.close()
        reader.close()
        try:
            result.daemon_rss_mb = daemon_ps.memory_info().rss / 2**20
        except psutil.Error:
            pass

        # --- stop the publishers and collect their records --------------------------------------------------------
        stop.set()
        records, errors = [], []
        for _ in publishers:
            try:
                message = results_queue.get(timeout=30)
            except Exception:
                errors.append("a publisher sent no result")
                continue
            records.extend(message["records"])
            errors.extend(message["errors"])
        for proc in publishers:
            procs.stop(proc)
        procs.stop(daemon)
        result.errors = errors

        # --- figures ---------------------------------------------------------------------------------------------
        wall = window_end - window_start
        result.window_seconds = wall
        result.folded_rate = sum(end_seq.get(key, 0) - start_seq.get(key, 0) for key in keys) / wall
        result.folds_seen = len(latencies)
        lags, calls, published = [], [], 0
        for due_b, start_b, end_b in records:
            due, start, end = (array.array("d", b) for b in (due_b, start_b, end_b))
            for d, s, e in zip(due, start, end, strict=True):
                if window_start <= e < window_end:
                    published += 1
                if window_start <= s < window_end:
                    lags.append(s - d)
                    calls.append(e - s)
        result.published_rate = published / wall
        result.pub_lag_p50, result.pub_lag_p99 = percentile(lags, 50), percentile(lags, 99)
        result.pub_late_share = sum(lag > 1.0 for lag in lags) / len(lags) if lags else math.nan
        result.publish_call_p50_ms = percentile(calls, 50) * 1000
        result.latency_p50, result.latency_p99 = percentile(latencies, 50), percentile(latencies, 99)
        result.latency_max = max(latencies) if latencies else math.nan
        by_second: dict[int, list[float]] = {}
        for when, latency in zip(folded_at, latencies, strict=True):
            by_second.setdefault(int(when - window_start), []).append(latency)
        result.latency_by_second = {second: round(max(values), 3) for second, values in sorted(by_second.items())}
        result.visible_p50, result.visible_p99 = percentile(visible, 50), percentile(visible, 99)
        result.age_p50, result.age_p99 = percentile(ages, 50), percentile(ages, 99)
        result.stale_share = stale / present_total if present_total else math.nan
        result.backlog_max = max(depths) if depths else -1
        result.sample_cost_ms = statistics.median(sample_costs) * 1000
        cpu_wall = end_snapshot["wall"] - start_snapshot["wall"]
        for name in ("daemon", "publishers", "rabbitmq", "memcached", "bench"):
            result.cpu[name] = (end_snapshot[name] - start_snapshot[name]) / cpu_wall
        before, after = start_snapshot["machine"], end_snapshot["machine"]
        busy = sum(after) - sum(before) - (after.idle - before.idle) - (getattr(after, "iowait", 0)
                                                                          - getattr(before, "iowait", 0))
        result.machine_busy = busy / (sum(after) - sum(before))
        # CPU of everything else on the machine (other users' jobs, the kernel's own threads), in cores.
        known = sum(value for value in result.cpu.values() if not math.isnan(value))
        result.cpu["other"] = result.machine_busy * (os.cpu_count() or 1) - known
        return result
    finally:
        if args.database == "mysql" and db_name and not args.keep:
            try:
                run_mysql(args.mysql_url, f"DROP DATABASE IF EXISTS `{db_name}`")
            except Exception as exc:
                log(f"could not drop {db_name}: {exc!r}")


# --------------------------------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------------------------------

DEFINITIONS = f"""\
Definitions (window = the measured seconds after warm-up):
  target      N / interval: the heartbeats the nodes must send per second
  published   publishes (with broker confirm) that ended in the window, per second; ratio = published / target
  folded      sum over nodes of the advance of the cached seq across the window, per second; ratio = folded / target
  latency     "staleness": folded_at - sent_at of every new (node, seq) the sampler saw in the window, i.e. how long
              a heartbeat took from the node to the cache (visible = first sample that saw it - sent_at, <= latency
              + one sample period)
  age         now - sent_at of every cached entry at every sample; healthy: <= interval + latency
  stale       share of sampled entries older than interval + {STALE_MARGIN_SECONDS:g}s (a newer heartbeat was due)
  backlog     messages waiting on clc.status (start/max/end of the window)
  CPU         CPU seconds / wall seconds over the window: % of one core (machine has {os.cpu_count()} cores);
              machine = all cores busy share
  other       CPU of everything else on the machine (other jobs, kernel threads): if large, the figures are
              disturbed by load that is not the benchmark's
  sampled     latency, age and stale come from every sample of an evenly spread subset of the nodes
              (--sample-nodes); published and folded count every node
  pub lag     how late publishes started versus their schedule (p99); late = share more than 1 s late
  caught up   from the first heartbeat until every sampled node is in the cache and less than 0.5 s of heartbeats
              wait on the queue: the cold-start cost (the first round creates N Server rows), with the daemon's CPU
  window at   when the window started (s after the first heartbeat); "cut" = the daemon had not caught up by
              --warmup-max and the window started anyway; "+touch" = the window held the pass that writes every
              server's liveness to the database (db_touch_seconds after the first heartbeats, all N rows within
              about one interval: by default the window is placed to hold it)
  goal        folded >= 98% of target, latency p99 < 2 s, < 1% stale entries, warm-up completed"""


def fmt(value: float, spec: str = ".2f", suffix: str = "") -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:{spec}}{suffix}"


def print_report(results: list[Result]) -> None:
    cores = os.cpu_count() or 1
    print()
    print(DEFINITIONS)
    print()
    print("Fan-in (rates per second; ratios in brackets)")
    header = ("N", "target", "published (/target)", "folded (/target)", "folded/published", "latency p50/p99/max s",
              "age p50/p99 s", "stale", "backlog start/max/end", "caught up s (daemon CPU s)", "window at s", "goal")
    rows = []
    for r in results:
        rows.append((f"{r.nodes:,}", f"{r.target_rate:,.0f}",
                     f"{r.published_rate:,.0f} ({fmt(r.published_ratio)})",
                     f"{r.folded_rate:,.0f} ({fmt(r.folded_ratio)})",
                     fmt(r.kept_up_ratio),
                     f"{fmt(r.latency_p50, '.3f')}/{fmt(r.latency_p99, '.3f')}/{fmt(r.latency_max, '.2f')}",
                     f"{fmt(r.age_p50)}/{fmt(r.age_p99)}",
                     fmt(r.stale_share * 100, ".1f", "%"),
                     f"{r.backlog_start:,}/{r.backlog_max:,}/{r.backlog_end:,}",
                     f"{fmt(r.caught_up_seconds, '.1f')} ({fmt(r.warmup_daemon_cpu, '.1f')})",
                     f"{fmt(r.warmup_seconds, '.0f')}{'' if r.warmed_up else ' cut'}"
                     f"{' +touch' if r.db_touch_in_window else ''}",
                     "MET" if r.goal_met else "not met"))
    _table(header, rows)
    print()
    print(f"CPU over the window, % of one core ({cores} cores)")
    header = ("N", "daemon (% machine)", "publishers", "rabbitmq", "memcached", "bench", "other", "machine busy",
              "busy before run", "daemon RSS MB")
    rows = []
    for r in results:
        def core(name: str, result: Result = r) -> str:
            return fmt(result.cpu.get(name, math.nan) * 100, ".1f")

        rows.append((f"{r.nodes:,}", f"{core('daemon')} ({fmt(r.cpu.get('daemon', math.nan) * 100 / cores, '.1f')})",
                     core("publishers"), core("rabbitmq"), core("memcached"), core("bench"), core("other"),
                     fmt(r.machine_busy * 100, ".0f", "%"), fmt(r.background_busy * 100, ".0f", "%"),
                     fmt(r.daemon_rss_mb, ".0f")))
    _table(header, rows)
    print()
    print("Load generator and sampler")
    header = ("N", "publishers", "pub lag p50/p99 s", "late", "publish call p50 ms", "visible p50/p99 s",
              "sample ms (nodes)", "samples")
    rows = []
    for r in results:
        rows.append((f"{r.nodes:,}", r.publishers, f"{fmt(r.pub_lag_p50, '.3f')}/{fmt(r.pub_lag_p99, '.3f')}",
                     fmt(r.pub_late_share * 100, ".1f", "%"), fmt(r.publish_call_p50_ms, ".2f"),
                     f"{fmt(r.visible_p50)}/{fmt(r.visible_p99)}",
                     f"{fmt(r.sample_cost_ms, '.0f')} ({r.sampled_nodes:,})", str(r.samples)))
    _table(header, rows)
    print()
    for r in results:
        slow = sorted(r.latency_by_second.items(), key=lambda item: -item[1])[:5]
        if slow and slow[0][1] > 0.5:
            print(f"N={r.nodes}: slowest seconds of the window (second: worst latency s): "
                  + ", ".join(f"{second}: {latency:.2f}" for second, latency in sorted(slow)))
        for error in r.errors:
            print(f"N={r.nodes}: publisher error: {error}")
        verdict = (f"N={r.nodes}: the daemon {'kept' if r.daemon_kept_up else 'did NOT keep'} up with what was "
                   f"published (folded/published {fmt(r.kept_up_ratio)}, latency p99 {fmt(r.latency_p99)} s)")
        if r.published_ratio < 0.98:
            verdict += (f"; the publishers reached only {r.published_ratio:.0%} of the target, so the load generator "
                        f"(it shares the machine) was a limit too")
        print(verdict)


def _table(header, rows) -> None:
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows, strict=True)]
    line = "  ".join(f"{{:>{w}}}" for w in widths)
    print(line.format(*header))
    print("  ".join("-" * w for w in widths))
    for row in rows:
        print(line.format(*row))


# --------------------------------------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------------------------------------


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nodes", default="100,1000,10000", help="comma list of node counts (default 100,1000,10000)")
    parser.add_argument("--seconds", type=float, default=30, help="measured seconds per N after warm-up (default 30)")
    parser.add_argument("--interval", type=float, default=5, help="heartbeat interval of every node (default 5)")
    parser.add_argument("--warmup-max", type=float, default=90,
                        help="longest warm-up: the window starts then even if not every node is cached (default 90)")
    parser.add_argument("--sample-every", type=float, default=1.0, help="cache sampling period, s (default 1)")
    parser.add_argument("--sample-nodes", type=int, default=2000,
                        help="nodes read at every sample, evenly spread (0 = all; every node is read at the start "
                             "and end of the window anyway; default 2000)")
    parser.add_argument("--publishers", type=int, default=0, help="publisher processes (default: by rate, at most 4)")
    parser.add_argument("--publish-mode", choices=("bus", "unconfirmed"), default="bus",
                        help="bus: luhyaapi.bus.RabbitMQBus.publish, confirm per message, as nodes do (default); "
                             "unconfirmed: same messages without confirms, a cheaper load generator")
    parser.add_argument("--threads", type=int, default=2, help="threads per publisher process with --publishers")
    parser.add_argument("--db-touch", type=float, default=60,
                        help="EDUCLOUD_CLOUD_DB_TOUCH_SECONDS of the daemon (default 60, the product default)")
    parser.add_argument("--no-touch-in-window", dest="touch_in_window", action="store_false",
                        help="start the window as soon as the daemon has caught up, even if the database liveness "
                             "pass (at about --db-touch seconds) then falls outside it; by default the window is "
                             "placed to hold it, which makes each N last about --db-touch + 2/3 --seconds")
    parser.add_argument("--database", choices=("sqlite", "mysql"), default="sqlite")
    parser.add_argument("--mysql-url", default="mysql://root@127.0.0.1:3306")
    parser.add_argument("--bus-url", default=DEFAULT_BUS_URL)
    parser.add_argument("--memcached", default=shutil.which("memcached") or "/usr/bin/memcached")
    parser.add_argument("--memcached-port", type=int, default=0, help="default: a free port")
    parser.add_argument("--json", help="also write the results to this JSON file")
    parser.add_argument("--keep", action="store_true", help="keep the work dir (daemon logs, databases)")
    args = parser.parse_args(argv)
    args.node_counts = [int(n.replace("_", "")) for n in args.nodes.split(",") if n.strip()]
    if not args.node_counts or min(args.node_counts) < 1 or max(args.node_counts) > 99_999:
        parser.error("--nodes: counts from 1 to 99999")
    if args.seconds <= 0 or args.interval <= 0 or args.sample_every <= 0:
        parser.error("--seconds, --interval and --sample-every must be positive")
    if args.touch_in_window and args.db_touch + args.interval > args.warmup_max + args.seconds:
        parser.error("--db-touch is beyond the end of the window: raise --warmup-max or pass --no-touch-in-window")
    if args.sample_every >= args.interval:
        parser.error("--sample-every must be shorter than --interval (or folds go unseen)")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    procs = Processes()
    workdir = Path(tempfile.mkdtemp(prefix="educloud-fanin-"))
    conf = workdir / "educloud.conf"
    conf.write_text("# empty: the benchmark configures everything through EDUCLOUD_* variables\n")
    peer_dir = workdir / "no-peers"
    peer_dir.mkdir()
    args._memcached_pid = None

    def on_term(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # also when started in the background (SIG_IGN)
    results: list[Result] = []
    try:
        port = args.memcached_port or free_port()
        command = [args.memcached, "-p", str(port), "-l", "127.0.0.1", "-m", "512", "-U", "0"]
        if os.geteuid() == 0:
            command[1:1] = ["-u", "root"]
        memcached = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     start_new_session=True, preexec_fn=die_with_parent)
        procs.add("memcached", memcached)
        args._memcached_pid = memcached.pid
        memcached_url = f"memcached://127.0.0.1:{port}"
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or memcached.poll() is not None:
                    raise RuntimeError(f"memcached did not start on port {port}") from None
                time.sleep(0.05)
        log(f"memcached pid {memcached.pid} on 127.0.0.1:{port}; work dir {workdir}")

        template_dir = workdir / "template"
        template_db = None
        env = base_env(template_dir, conf, peer_dir, args, memcached_url,
                       f"sqlite:///{template_dir / 'educloud.sqlite3'}")
        # The template always has the nodes' keys for measuring the signatures' cost; SQLite runs copy it.
        enrolled = max(max(args.node_counts), VERIFY_BATCH)
        log(f"creating the template database (manage.py init_cloud), enrolling {enrolled:,} nodes' keys")
        run_manage(env, "init_cloud")
        template_dir.mkdir(exist_ok=True)
        enrol_nodes(env, enrolled, template_dir)
        if args.database == "sqlite":
            template_db = template_dir / "educloud.sqlite3"
        # This process reads the cache through Django, configured like the daemon.
        os.environ.update({key: value for key, value in env.items() if key.startswith(("EDUCLOUD_", "DJANGO_"))})
        import django

        django.setup()
        global QUEUE
        from luhyaapi.queues import CLC_STATUS

        QUEUE = CLC_STATUS
        signatures = measure_signatures()
        log(f"signatures: seal {signatures['seal_us']:.1f} us, check {signatures['check_us']:.1f} us "
            f"(decode alone {signatures['decode_us']:.1f} us) per message")

        for n_nodes in args.node_counts:
            try:
                result = run_one(n_nodes, args, procs, workdir, template_db, memcached_url, conf, peer_dir)
            finally:
                procs.stop_all(keep=("memcached",))
            results.append(result)
            log(f"N={n_nodes}: published {result.published_rate:,.0f}/s, folded {result.folded_rate:,.0f}/s of "
                f"{result.target_rate:,.0f}/s; latency p50 {fmt(result.latency_p50, '.3f')}s p99 "
                f"{fmt(result.latency_p99, '.3f')}s; daemon CPU {result.cpu['daemon'] * 100:.0f}% of a core")
        print_report(results)
        print()
        print_signatures(signatures)
        if args.json:
            Path(args.json).write_text(json.dumps({"runs": [r.__dict__ | {"goal_met": r.goal_met} for r in results],
                                                   "signatures": signatures}, indent=2, default=str))
        return 0
    except KeyboardInterrupt:
        log("interrupted; stopping everything started")
        if results:
            print_report(results)
        return 130
    finally:
        procs.stop_all()
        try:
            from luhyaapi.bus import RabbitMQBus

            RabbitMQBus(args.bus_url, publish_retry_seconds=1).purge(QUEUE)
        except Exception:
            pass
        if args.keep:
            log(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
