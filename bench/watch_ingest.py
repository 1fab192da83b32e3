"""Metric ingest benchmark: simulated nodes' ``metrics`` reports, relayed sealed by their CCs, through real RabbitMQ
into the real watch daemon (``watch-metrics``) and its store; then, with ``--query``, the two queries the issue sets a
goal for (under 200 ms each on MariaDB) with 10,000 instances' rollups stored.

The script

1. makes a RabbitMQ vhost of its own on the machine's broker (``tests.rabbitmq.scratch_vhost``: deleted afterwards),
   a fresh data dir and database (SQLite, or with ``--database mysql`` a MariaDB database of its own, dropped
   afterwards) made by ``manage.py init_cloud``, and enrols the simulated hosts' keys: ``CLUSTERS`` clusters
   ``c0``..``c3``, each with its CC ``bench-cc<c>`` and nodes ``bench-nc<k>``, keys made from the names so that every
   process makes the same ones;
2. lays ``--instances`` instances (default 10,000) over ``--per-node`` instances a node (default 100, so 100 nodes):
   instance ``n`` (``ins-<n as 8 hex digits>``) is in cluster ``c<n % 4>``, as ``bench/watch_store.py`` lays them,
   so its rollup fill answers the same;
3. stores one minute of every node's report in this process with ``watch.services.store.store`` (it makes the
   series) and times the next minute the same way, one call per report as the daemon makes them: the **reference**,
   what the store alone does on this machine and database in the same minute as the run (again after the window);
4. starts the real daemon as its own process (``manage.py run_daemons --only watch-metrics`` on a host of roles
   clc and watch, so the trust records are the database's own, as on an all-in-one host) and a publisher process
   whose threads act as the CCs: every ``--interval`` seconds (default 60, the product's sample) each node's report
   (a ``MetricsReport`` of the node, the seven metrics a node sends of each of its instances, timestamped when
   due) is published on ``watch.metrics`` through ``luhyaapi.bus.RabbitMQBus.publish`` sealed with its cluster's
   CC key, the nodes spread evenly over the interval, so the daemon checks every seal and the relay clause;
5. after a warm-up (one interval, and the queue drained) measures ``--seconds``: points offered (samples in
   publishes that ended in the window) against points stored (rows added to the raw points), the lag from a
   sample's time to the moment its point could be read (polling every ``--poll`` seconds the newest point of the
   CPU series of one instance per node), the queue's backlog, and CPU by ``psutil`` (daemon, publishers, RabbitMQ,
   this process, the machine);
6. with ``--query``: fills a day of 5-minute CPU rollups for every instance and the clusters
   (``bench/watch_store.py``'s fill, which also times the cluster average its way) and 7 days of 1-hour ones, then
   times (median and 90th percentile of ``--repeat``) one instance's 7-day 1-hour statistics
   (``get_statistics``) and the cluster-wide 24-hour 5-minute average (``get_aggregate_statistics``
   ``Cluster=c1``: 2,500 instances);
7. stops everything it started, also on error, Ctrl-C or SIGTERM.

Run from the repository root (RabbitMQ at 127.0.0.1:5672 with rabbitmqctl; MariaDB at 127.0.0.1:3306 for mysql):

    .venv/bin/python bench/watch_ingest.py --instances 1000 --interval 10 --seconds 20     # a quick check
    .venv/bin/python bench/watch_ingest.py --query                                          # 10,000 at 60 s
    .venv/bin/python bench/watch_ingest.py --database mysql --query --json /tmp/ingest.json
"""

from __future__ import annotations

import argparse
import array
import contextlib
import json
import math
import multiprocessing as mp
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from databases import database_server_process, scratch_mysql_database
from status_fanin import (
    Processes,
    QueueDepth,
    base_env,
    cpu_seconds,
    die_with_parent,
    find_rabbitmq,
    host_key,
    log,
    paced,
    percentile,
    run_manage,
    wait_for_line,
)
from watch_store import cluster_average_timings, fill_rollups

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

CLUSTERS = 4  # bench/watch_store.py's fill counts instance n in cluster c<n % 4>
DAEMONS = "watch-metrics"
HOST_NAME = "benchwatch"
GOAL_MS = 200.0
# What a node sends of each instance: the instance metrics but the operation counts, which the VirtualBox driver does
# not read (a QEMU node sends those two too: 9/7 of these points; docs/watch.md, "Sampling"). The figures in
# docs/watch.md were measured with these seven.
SENT_METRICS = ("CPUUtilization", "MemoryUsed", "DiskReadBytes", "DiskWriteBytes", "NetworkIn", "NetworkOut", "Alive")


# --------------------------------------------------------------------------------------------------------------------
# The simulated cloud (also used by the spawned publishers, which do not set Django up)
# --------------------------------------------------------------------------------------------------------------------


def cc_name(cluster: int) -> str:
    return f"bench-cc{cluster}"


def node_name(node: int) -> str:
    return f"bench-nc{node:04d}"


@dataclass(frozen=True)
class Layout:
    """Which node of which cluster runs which instance: node ``k`` is in cluster ``k % CLUSTERS``; instance ``n`` is
    in cluster ``n % CLUSTERS``, spread over that cluster's nodes."""

    instances: int
    nodes: int  # a multiple of CLUSTERS

    @classmethod
    def of(cls, instances: int, per_node: int) -> Layout:
        nodes = math.ceil(instances / per_node)
        return cls(instances, CLUSTERS * math.ceil(nodes / CLUSTERS))

    def instances_of(self, node: int) -> range:
        cluster, slot = node % CLUSTERS, node // CLUSTERS
        return range(CLUSTERS * slot + cluster, self.instances, self.nodes)

    def samples(self, node: int, when: float, rng: random.Random) -> list:
        """The node's samples of its instances at ``when``, as ``nc.services.metrics`` would give them."""
        from luhyaapi.metrics import INSTANCE_METRICS, INSTANCE_NAMESPACE, MetricSample

        base = {"NodeName": node_name(node), "Cluster": f"c{node % CLUSTERS}"}
        values = {"CPUUtilization": lambda: rng.uniform(0, 100), "MemoryUsed": lambda: rng.uniform(2e8, 2e9),
                  "Alive": lambda: 1.0}
        return [MetricSample(namespace=INSTANCE_NAMESPACE, name=name, unit=INSTANCE_METRICS[name], timestamp=when,
                             value=values.get(name, lambda: float(rng.randrange(0, 10_000_000)))(),
                             dimensions=base | {"InstanceId": f"ins-{n:08x}", "ImageId": f"img-{n % 20:08x}",
                                                "OwnerGroup": f"edu.s{n % 50}.c{n % 7}"})
                for n in self.instances_of(node) for name in SENT_METRICS]


# --------------------------------------------------------------------------------------------------------------------
# Publisher processes: the CCs relaying their nodes' reports
# --------------------------------------------------------------------------------------------------------------------


def _publish_thread(nodes: list[int], layout: Layout, interval: float, t0: float, t_end: float, bus_url: str,
                    queue: str, stop, out: list, errors: list) -> None:
    from luhyaapi.bus import RabbitMQBus
    from luhyaapi.messages import MetricsReport

    bus = RabbitMQBus(bus_url, publish_retry_seconds=10.0)
    keys = {cluster: host_key(cc_name(cluster)) for cluster in range(CLUSTERS)}
    rng = random.Random(nodes[0])
    # One record per publish: when it was due (its samples' time), when the publish returned, how many samples.
    due_log, end_log, count_log = array.array("d"), array.array("d"), array.array("q")
    offsets = [t0 + interval * node / layout.nodes for node in nodes]
    try:
        for node, due, _round in paced(nodes, offsets, interval, t_end, stop):
            samples = layout.samples(node, due, rng)
            bus.publish(queue, MetricsReport(host=node_name(node), samples=tuple(samples)), key=keys[node % CLUSTERS])
            due_log.append(due)
            end_log.append(time.time())
            count_log.append(len(samples))
    except Exception as exc:  # reported to the parent, which prints it
        errors.append(f"{type(exc).__name__}: {exc}")
    finally:
        out.append((due_log.tobytes(), end_log.tobytes(), count_log.tobytes()))
        bus.close()


def publisher_main(nodes: list[int], layout: Layout, interval: float, t0: float, t_end: float, bus_url: str,
                   queue: str, threads: int, stop, results) -> None:
    """One publisher process: ``threads`` threads, each with its own connection and a share of ``nodes``."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops us through ``stop``
    die_with_parent()
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    out: list = []
    errors: list = []
    workers = [threading.Thread(target=_publish_thread, daemon=True,
                                args=(share, layout, interval, t0, t_end, bus_url, queue, stop, out, errors))
               for share in (nodes[k::threads] for k in range(threads)) if share]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=max(1.0, t_end - time.time() + 30))
    results.put({"records": list(out), "errors": errors})


# --------------------------------------------------------------------------------------------------------------------
# This process: the database, the reference, the window, the queries
# --------------------------------------------------------------------------------------------------------------------


def enrol_hosts(layout: Layout) -> None:
    """Trust the CCs (role cc) and the nodes (role nc) of every cluster, as approved enrolments would."""
    from django.utils import timezone

    from luhyaapi.keys import fingerprint
    from luhyadb.models import HostCredential

    now = timezone.now()
    hosts = [(cc_name(c), "cc", f"c{c}") for c in range(CLUSTERS)]
    hosts += [(node_name(k), "nc", f"c{k % CLUSTERS}") for k in range(layout.nodes)]
    rows = []
    for name, role, cluster in hosts:
        key = host_key(name).public_key
        rows.append(HostCredential(name=name, kind="server", roles=role, cluster=cluster, public_key=key,
                                   fingerprint=fingerprint(key), state="active", requested_at=now, approved_at=now,
                                   approved_by="bench"))
    HostCredential.objects.bulk_create(rows, batch_size=1000)


def store_minute(layout: Layout, minute_start: float) -> dict:
    """Every node's report of one minute stored in this process, one ``store`` call per report (as the daemon
    gets them): points/s and the time of a report's call."""
    from watch.services.store import store

    rng = random.Random(int(minute_start))
    spent, cpu, points = [], 0.0, 0
    for node in range(layout.nodes):
        samples = layout.samples(node, minute_start + 60 * node / layout.nodes, rng)
        started, cpu_started = time.perf_counter(), time.process_time()
        points += store(samples)
        spent.append(time.perf_counter() - started)
        cpu += time.process_time() - cpu_started
    return {"points": points, "points_per_s": points / sum(spent), "call_ms_p50": 1000 * statistics.median(spent),
            "call_ms_p90": 1000 * percentile(spent, 90), "calls": len(spent), "cpu_ms_per_1000": 1e6 * cpu / points}


def count_points() -> int:
    from watch.models import MetricPoint

    return MetricPoint.objects.count()


def lag_series(layout: Layout) -> dict[int, int]:
    """Series id -> node of the CPU series of each node's first instance: what the lag poller reads."""
    from watch.models import SeriesDimension

    wanted = {f"ins-{layout.instances_of(node)[0]:08x}": node for node in range(layout.nodes)
              if len(layout.instances_of(node))}
    rows = SeriesDimension.objects.filter(name="InstanceId", value__in=wanted,
                                          series__name="CPUUtilization").values_list("series_id", "value")
    return {series_id: wanted[value] for series_id, value in rows}


def newest_points(series: list[int], since: float) -> dict[int, float]:
    from django.db.models import Max

    from watch.models import MetricPoint

    rows = (MetricPoint.objects.filter(series_id__in=series, time__gte=since).values("series_id")
            .annotate(newest=Max("time")).values_list("series_id", "newest"))
    return dict(rows)


@dataclass
class Result:
    database: str
    instances: int
    nodes: int
    interval: float
    offered_target: float  # points/s the layout offers
    window_seconds: float = math.nan
    warmup_seconds: float = math.nan
    caught_up: bool = False
    messages_rate: float = math.nan
    offered_rate: float = math.nan
    stored_rate: float = math.nan
    lags: list = field(default_factory=list)
    backlog_start: int = -1
    backlog_max: int = -1
    backlog_end: int = -1
    dead_letters: int = 0
    dead_reason: str = ""
    cpu: dict = field(default_factory=dict)
    machine_busy: float = math.nan
    background_busy: float = math.nan
    daemon_log_errors: int = 0
    daemon_rss_mb: float = math.nan
    reference_create: dict = field(default_factory=dict)
    reference_before: dict = field(default_factory=dict)
    reference_after: dict = field(default_factory=dict)
    pub_lag_p99: float = math.nan
    errors: list = field(default_factory=list)
    queries: dict = field(default_factory=dict)

    @property
    def stored_ratio(self) -> float:
        return self.stored_rate / self.offered_rate if self.offered_rate else math.nan

    @property
    def lag_p50(self) -> float:
        return percentile(self.lags, 50)

    @property
    def lag_p99(self) -> float:
        return percentile(self.lags, 99)

    @property
    def kept_up(self) -> bool:
        return (self.caught_up and self.stored_ratio >= 0.98 and self.backlog_end <= max(2, self.nodes // 10)
                and not self.dead_letters and not self.errors and not self.daemon_log_errors)


def ingest(args, layout: Layout, result: Result, procs: Processes, run_dir: Path, env: dict, queue: str) -> None:
    """Steps 3 to 5 of the module's description, into ``result``."""
    import psutil
    from django.db import connections

    from luhyaapi.bus import RabbitMQBus
    from luhyaapi.queues import dead_letters

    minute = 60 * math.floor(time.time() / 60) - 240  # minutes before the run's samples, each its own
    log(f"reference: storing a minute of {layout.nodes} reports in this process (makes the series)")
    result.reference_create = store_minute(layout, minute)
    result.reference_before = store_minute(layout, minute + 60)
    log(f"reference: {result.reference_before['points_per_s']:,.0f} points/s, a report of "
        f"{len(SENT_METRICS) * args.per_node} samples {result.reference_before['call_ms_p50']:.0f} ms")
    sampled = lag_series(layout)
    connections.close_all()
    # What the machine does without us, so a reader can tell a disturbed run.
    result.background_busy = psutil.cpu_percent(interval=1.0) / 100

    bus = RabbitMQBus(args.bus_url)
    bus.purge(queue)
    bus.close()
    daemon_log = run_dir / "daemon.log"
    with open(daemon_log, "wb") as out:
        daemon = subprocess.Popen([sys.executable, "manage.py", "run_daemons", "--only", DAEMONS], cwd=ROOT, env=env,
                                  stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                                  preexec_fn=die_with_parent)
    procs.add("daemon", daemon)
    wait_for_line(daemon_log, "daemons running", daemon, timeout=60)
    daemon_ps = psutil.Process(daemon.pid)

    interval = args.interval
    ctx = mp.get_context("spawn")
    stop = ctx.Event()
    procs.events.append(stop)
    results_queue = ctx.Queue()
    procs.queues.append(results_queue)
    t0 = time.time() + 3.0  # leaves the spawned children time to import
    t_end = t0 + args.warmup_max + args.seconds + 2 * interval
    publishers = []
    for k in range(args.publishers):
        proc = ctx.Process(target=publisher_main, name=f"publisher-{k}", daemon=True,
                           args=(list(range(k, layout.nodes, args.publishers)), layout, interval, t0, t_end,
                                 args.bus_url, queue, args.threads, stop, results_queue))
        proc.start()
        procs.add(f"publisher-{k}", proc)
        publishers.append(proc)
    log(f"daemon pid {daemon.pid}; {args.publishers} publisher process(es) x {args.threads} thread(s); "
        f"{layout.nodes} reports every {interval:g}s, {result.offered_target:,.0f} points/s")

    depth = QueueDepth(args.bus_url, queue)
    rabbit, me = find_rabbitmq(), psutil.Process()
    server = database_server_process() if args.database == "mysql" else None

    def snapshot() -> dict:
        return {"daemon": cpu_seconds(daemon_ps),
                "publishers": sum(cpu_seconds(psutil.Process(p.pid)) for p in publishers if p.is_alive()),
                "rabbitmq": cpu_seconds(rabbit) if rabbit else math.nan, "bench": cpu_seconds(me),
                "mariadb": cpu_seconds(server) if server else math.nan,
                "machine": psutil.cpu_times(), "wall": time.monotonic()}

    # Warm-up: a whole interval of reports, then the backlog down to a tenth of an interval's reports.
    while True:
        time.sleep(0.5)
        if daemon.poll() is not None:
            raise RuntimeError(f"the daemon exited with {daemon.returncode}; see {daemon_log}")
        now = time.time()
        result.caught_up = depth() <= max(1, layout.nodes // 10)
        if (now >= t0 + interval + 1 and result.caught_up) or now >= t0 + args.warmup_max:
            break
    window_start = time.time()
    result.warmup_seconds = window_start - t0
    start_count, start_snapshot = count_points(), snapshot()
    result.backlog_start = depth()
    log(f"window starts {result.warmup_seconds:.1f}s after the first report ({result.backlog_start} waiting"
        f"{'' if result.caught_up else ', NOT caught up: warm-up cut at --warmup-max'}); measuring {args.seconds:g}s")
    series = list(sampled)
    newest = newest_points(series, window_start - 2 * interval)
    depths = []
    while time.time() < window_start + args.seconds:
        time.sleep(args.poll)
        if daemon.poll() is not None:
            raise RuntimeError(f"the daemon exited with {daemon.returncode}; see {daemon_log}")
        seen = newest_points(series, window_start - 2 * interval)
        now = time.time()
        for series_id, when in seen.items():
            if when > newest.get(series_id, 0) and when >= window_start:
                result.lags.append(now - when)
        newest.update(seen)
        depths.append(depth())
    end_count, end_snapshot = count_points(), snapshot()
    window_end = time.time()
    connections.close_all()
    result.window_seconds = wall = window_end - window_start
    result.stored_rate = (end_count - start_count) / wall
    result.backlog_end = depth()
    result.backlog_max = max(depths, default=-1)
    try:
        result.daemon_rss_mb = daemon_ps.memory_info().rss / 2**20
    except psutil.Error:
        pass

    stop.set()
    records = []
    for _ in publishers:
        try:
            message = results_queue.get(timeout=30)
        except Exception:
            result.errors.append("a publisher sent no result")
            continue
        records.extend(message["records"])
        result.errors.extend(message["errors"])
    for proc in publishers:
        procs.stop(proc)
    procs.stop(daemon)
    result.daemon_log_errors = sum(line.startswith("Traceback") or " ERROR " in line
                                   for line in daemon_log.read_text(errors="replace").splitlines())
    dead = QueueDepth(args.bus_url, dead_letters(queue))  # a connection of its own now: an idle one is dropped
    result.dead_letters = dead()
    if result.dead_letters:
        parked = RabbitMQBus(args.bus_url).take_dead_letters(queue, limit=1)
        result.dead_reason = parked[0].reason if parked else ""
    depth.close()
    dead.close()

    offered = messages = 0
    pub_lags = []
    for due_b, end_b, count_b in records:
        for due, end, count in zip(array.array("d", due_b), array.array("d", end_b), array.array("q", count_b),
                                   strict=True):
            if window_start <= end < window_end:
                offered += count
                messages += 1
                pub_lags.append(end - due)
    result.offered_rate, result.messages_rate = offered / wall, messages / wall
    result.pub_lag_p99 = percentile(pub_lags, 99)
    cpu_wall = end_snapshot["wall"] - start_snapshot["wall"]
    for name in ("daemon", "publishers", "rabbitmq", "bench", "mariadb"):
        result.cpu[name] = (end_snapshot[name] - start_snapshot[name]) / cpu_wall
    before, after = start_snapshot["machine"], end_snapshot["machine"]
    idle = (after.idle - before.idle) + (getattr(after, "iowait", 0) - getattr(before, "iowait", 0))
    result.machine_busy = 1 - idle / (sum(after) - sum(before))

    log("reference again, after the window (daemon stopped)")
    result.reference_after = store_minute(layout, minute + 120)


def fill_hours(series_ids: list[int], end: int, hours: int) -> float:
    """``hours`` 1-hour rollups before ``end`` for each of ``series_ids``, written directly (as the store would have
    merged them); returns the seconds it took."""
    from django.db import transaction

    from watch.models import MetricRollup, RollupPeriod

    started = time.perf_counter()
    for at in range(0, len(series_ids), 500):
        rows = [MetricRollup(series_id=series_id, period=RollupPeriod.ONE_HOUR, start=end - 3600 * (hour + 1),
                             minimum=1.0, maximum=2.0, total=3.0, count=120)
                for series_id in series_ids[at:at + 500] for hour in range(hours)]
        with transaction.atomic():  # one commit per 500 series: MariaDB syncs its log at each
            MetricRollup.objects.bulk_create(rows, batch_size=5000)
    return time.perf_counter() - started


def timed(repeat: int, call) -> dict:
    timings = []
    for _ in range(repeat):
        started = time.perf_counter()
        call()
        timings.append(1000 * (time.perf_counter() - started))
    return {"ms_median": statistics.median(timings), "ms_p90": percentile(timings, 90), "ms_min": min(timings)}


def queries(layout: Layout, repeat: int) -> dict:
    """Step 6: the rollups of 10,000 instances filled, then the two queries timed."""
    from luhyaapi.metrics import INSTANCE_NAMESPACE
    from watch.models import MetricSeries
    from watch.services.query import get_aggregate_statistics, get_statistics

    ids = {(name, dims["InstanceId"]): series_id for series_id, name, dims in
           MetricSeries.objects.filter(namespace=INSTANCE_NAMESPACE).values_list("id", "name", "dimensions")}
    log(f"query: filling a day of 5-minute rollups of {layout.instances:,} instances' CPU series and the clusters' "
        "(bench/watch_store.py's fill)")
    day, found = fill_rollups(ids, layout.instances)
    found |= cluster_average_timings(day, layout.instances)
    cpu = sorted(series_id for (name, _), series_id in ids.items() if name == "CPUUtilization")
    log(f"query: filling 7 days of 1-hour rollups of the {len(cpu):,} CPU series")
    found["hour_fill_s"] = fill_hours(cpu, day + 86400, 7 * 24)
    found["hour_rows_filled"] = len(cpu) * 7 * 24
    one = MetricSeries.objects.get(id=cpu[len(cpu) // 2])
    end = day + 86400

    def instance_week() -> None:
        points = get_statistics(INSTANCE_NAMESPACE, "CPUUtilization", one.dimensions, end - 7 * 86400, end, 3600,
                                ["Average", "Minimum", "Maximum"], now=end)
        assert len(points) == 168, len(points)

    def cluster_day() -> None:
        points = get_aggregate_statistics(INSTANCE_NAMESPACE, "CPUUtilization", {"Cluster": "c1"}, day, end, 300,
                                          ["Average"], now=end)
        assert len(points) == 288, len(points)

    found["instance_week"] = timed(repeat, instance_week)
    found["cluster_day"] = timed(repeat, cluster_day)
    found["repeat"] = repeat
    return found


# --------------------------------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------------------------------


def fmt(value, spec: str = ".2f") -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:{spec}}"


def print_report(r: Result, args) -> None:
    cores = os.cpu_count() or 1
    print()
    print(f"{r.database}: {r.instances:,} instances on {r.nodes} nodes of {CLUSTERS} clusters, "
          f"{len(SENT_METRICS)} metrics each, a report per node every {r.interval:g}s "
          f"({r.offered_target:,.0f} points/s, {r.nodes / r.interval:.1f} messages/s)")
    if r.reference_before:
        ref = r.reference_before
        print(f"  reference, store() in this process, one call per report: first minute (makes the series) "
              f"{r.reference_create['points_per_s']:,.0f} points/s; next {ref['points_per_s']:,.0f} points/s "
              f"(a report {ref['call_ms_p50']:.0f} ms, p90 {ref['call_ms_p90']:.0f} ms)"
              + (f"; after the window {r.reference_after['points_per_s']:,.0f} points/s" if r.reference_after
                 else ""))
    if not math.isnan(r.offered_rate):
        print(f"  window {r.window_seconds:.0f}s, {r.warmup_seconds:.0f}s after the first report"
              f"{'' if r.caught_up else ' (warm-up cut: NOT caught up)'}")
        print(f"  offered  {r.offered_rate:8,.0f} points/s ({r.messages_rate:.2f} messages/s; publish lag p99 "
              f"{fmt(r.pub_lag_p99, '.3f')} s)")
        print(f"  stored   {r.stored_rate:8,.0f} points/s: stored/offered {fmt(r.stored_ratio)}; reference/stored "
              f"{fmt(r.reference_before['points_per_s'] / r.stored_rate if r.stored_rate else math.nan, '.1f')} "
              "(the store's headroom at this load)")
        print(f"  lag (sample time -> point readable, polled every {args.poll:g}s; {len(r.lags)} points of "
              f"{r.nodes} series): p50 {fmt(r.lag_p50)} s, p99 {fmt(r.lag_p99)} s, max "
              f"{fmt(max(r.lags) if r.lags else math.nan)} s")
        print(f"  backlog (messages ready on the queue, not those the daemon took ahead: up to twice its batch) "
              f"start/max/end {r.backlog_start}/{r.backlog_max}/{r.backlog_end}; "
              f"parked (dead letters) {r.dead_letters}{': ' + r.dead_reason if r.dead_reason else ''}")
        daemon_cpu, server_cpu = r.cpu.get("daemon", math.nan), r.cpu.get("mariadb", math.nan)
        per_k = daemon_cpu / r.stored_rate * 1e6 if r.stored_rate else math.nan
        ref_per_k = r.reference_before["cpu_ms_per_1000"]
        print(f"  CPU, % of one core ({cores} cores): daemon {fmt(daemon_cpu * 100, '.1f')} "
              f"(RSS {fmt(r.daemon_rss_mb, '.0f')} MB), publishers "
              f"{fmt(r.cpu.get('publishers', math.nan) * 100, '.1f')}"
              f", rabbitmq {fmt(r.cpu.get('rabbitmq', math.nan) * 100, '.1f')}, this process "
              f"{fmt(r.cpu.get('bench', math.nan) * 100, '.1f')}"
              + (f", mariadb {fmt(server_cpu * 100, '.1f')}" if not math.isnan(server_cpu) else "")
              + f"; machine busy {fmt(r.machine_busy * 100, '.0f')}% (before the run "
              f"{fmt(r.background_busy * 100, '.0f')}%)")
        print(f"  daemon CPU per 1,000 points stored {fmt(per_k, '.0f')} ms against the reference's "
              f"{ref_per_k:.0f} ms (this process's CPU in store()): ratio {fmt(per_k / ref_per_k)}, what the bus "
              "(seals, decoding, the relay clause) adds to the store"
              + ("; MariaDB's own CPU is apart, in mariadb" if r.database == "mysql" else ""))
        if r.daemon_log_errors:
            print(f"  the daemon's log has {r.daemon_log_errors} error line(s): run with --keep and read daemon.log")
        for error in r.errors:
            print(f"  publisher error: {error}")
        print(f"  verdict: the daemon {'kept' if r.kept_up else 'did NOT keep'} up")
    if r.queries:
        q = r.queries
        print(f"  queries ({q['rollup_rows_filled']:,} 5-minute rows filled in {q['fill_s']:.0f}s, "
              f"{q['hour_rows_filled']:,} 1-hour rows in {q['hour_fill_s']:.0f}s; median / p90 of {q['repeat']}; "
              f"goal < {GOAL_MS:.0f} ms):")
        in_c1 = len(range(1, r.instances, CLUSTERS))
        for key, label in (("instance_week", "one instance, 7 days, period 3600 (get_statistics)"),
                           ("cluster_day", f"Cluster=c1 ({in_c1:,} instances), 24 h, period 300")):
            t = q[key]
            print(f"    {label:55s} {t['ms_median']:7.1f} / {t['ms_p90']:7.1f} ms  "
                  f"{'MET' if t['ms_p90'] < GOAL_MS else 'NOT met'}")
        print(f"    watch_store's own timing of the cluster average: from the cluster's rollups "
              f"{q['cluster_rollups_ms_median']:.1f} ms, grouping every instance's {q['every_series_ms_median']:.0f}"
              " ms (median of 5)")


# --------------------------------------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------------------------------------


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--instances", type=int, default=10_000)
    parser.add_argument("--per-node", type=int, default=100, help="instances a node (one report each; default 100)")
    parser.add_argument("--interval", type=float, default=60, help="every node's report period, s (default 60)")
    parser.add_argument("--seconds", type=float, default=0, help="measured seconds (default: two intervals)")
    parser.add_argument("--warmup-max", type=float, default=0, help="longest warm-up, s (default: three intervals)")
    parser.add_argument("--poll", type=float, default=0.5, help="lag polling period, s (default 0.5)")
    parser.add_argument("--publishers", type=int, default=1, help="publisher processes (default 1)")
    parser.add_argument("--threads", type=int, default=4, help="threads per publisher process (default 4)")
    parser.add_argument("--database", choices=("sqlite", "mysql"), default="sqlite")
    parser.add_argument("--mysql-url", default="mysql://root@127.0.0.1:3306")
    parser.add_argument("--query", action="store_true", help="also fill the rollups and time the two queries")
    parser.add_argument("--no-ingest", dest="ingest", action="store_false",
                        help="skip the daemon and RabbitMQ (with --query: store two minutes in-process, then query)")
    parser.add_argument("--repeat", type=int, default=20, help="timings of each query (default 20)")
    parser.add_argument("--json", help="also write the results to this JSON file")
    parser.add_argument("--keep", action="store_true", help="keep the work dir (daemon log, SQLite database)")
    args = parser.parse_args(argv)
    from luhyaapi.metrics import MAX_SAMPLES

    if not 1 <= args.per_node <= MAX_SAMPLES // len(SENT_METRICS):
        parser.error(f"--per-node: 1 to {MAX_SAMPLES // len(SENT_METRICS)} (a node's report is one message of at "
                     f"most {MAX_SAMPLES} samples)")
    if args.instances < CLUSTERS or args.interval < 1 or args.poll <= 0:
        parser.error(f"--instances at least {CLUSTERS}, --interval at least 1, --poll positive")
    args.seconds = args.seconds or 2 * args.interval
    args.warmup_max = args.warmup_max or 3 * args.interval
    return args


def close_connections() -> None:
    from django.db import connections

    connections.close_all()


def main(argv=None) -> int:
    args = parse_args(argv)
    from tests.rabbitmq import scratch_vhost

    layout = Layout.of(args.instances, args.per_node)
    result = Result(database=args.database, instances=layout.instances, nodes=layout.nodes, interval=args.interval,
                    offered_target=layout.instances * len(SENT_METRICS) / args.interval)
    procs = Processes()
    workdir = Path(tempfile.mkdtemp(prefix="educloud-ingest-"))
    conf = workdir / "educloud.conf"
    conf.write_text("# empty: the benchmark configures everything through EDUCLOUD_* variables\n")
    peer_dir = workdir / "no-peers"
    peer_dir.mkdir()
    data_dir = workdir / "data"
    data_dir.mkdir()

    def on_term(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with contextlib.ExitStack() as stack:
            bus_url = stack.enter_context(scratch_vhost("educloud-bench-ingest"))
            args.bus_url, args.db_touch = bus_url, 60
            if args.database == "mysql":
                database_url = stack.enter_context(scratch_mysql_database(args.mysql_url,
                                                                          f"bench_ingest_{os.getpid()}"))
                stack.callback(close_connections)  # before the database is dropped
            else:
                database_url = f"sqlite:///{data_dir / 'educloud.sqlite3'}"
            stack.callback(procs.stop_all)  # first thing on the way out: nothing runs on a dropped vhost or database
            env = base_env(data_dir, conf, peer_dir, args, "locmem://", database_url) | {
                "EDUCLOUD_HOST_NAME": HOST_NAME, "EDUCLOUD_ROLES": "clc,watch",
                "EDUCLOUD_WATCH_SAMPLE_SECONDS": str(max(10, round(args.interval)))}
            log(f"work dir {workdir}; vhost {bus_url.rsplit('/', 1)[1]}; creating the {args.database} database "
                "(manage.py init_cloud)")
            run_manage(env, "init_cloud")
            os.environ.update({key: value for key, value in env.items() if key.startswith(("EDUCLOUD_", "DJANGO_"))})
            import django

            django.setup()
            enrol_hosts(layout)
            if args.ingest:
                from luhyaapi.queues import WATCH_METRICS

                ingest(args, layout, result, procs, workdir, env, WATCH_METRICS)
            else:
                minute = 60 * math.floor(time.time() / 60) - 120
                result.reference_create = store_minute(layout, minute)
                result.reference_before = store_minute(layout, minute + 60)
            if args.query:
                result.queries = queries(layout, args.repeat)
        print_report(result, args)
        if args.json:
            Path(args.json).write_text(json.dumps(result.__dict__ | {"kept_up": result.kept_up}, indent=2,
                                                  default=str))
        return 0
    except KeyboardInterrupt:
        log("interrupted; stopping everything started")
        return 130
    finally:
        procs.stop_all()
        if args.keep:
            log(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
