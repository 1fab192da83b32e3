"""Which background loops each role runs, wired to this host's bus and configuration."""

from __future__ import annotations

import threading
import time

from daemons.celery_worker import celery_beat, celery_worker
from daemons.heartbeat import HeartbeatPublisher
from daemons.worker import Worker
from luhyaapi.bus import get_bus
from luhyaapi.commands import worker_name
from luhyaapi.config import Config, celery_broker_url
from luhyaapi.jobs import ROLES_WITH_JOBS
from luhyaapi.queues import CLC_STATUS, WATCH_METRICS, cc_status, jobs_queue, node_commands

SWEEP_FRACTION = 0.5
REFRESH_SECONDS = 30.0
NETWORK_SECONDS = 60.0
PLACER_SECONDS = 2.0
EXPIRY_SECONDS = 30.0


def _consume(bus, queue: str, consumer, **options):
    def loop(stop: threading.Event) -> None:
        bus.consume(queue, consumer.consume, stop, **options)

    return loop


def _clc_workers(config: Config, stop: threading.Event) -> list[Worker]:
    from clc.consumers.clc_status import ClcStatusConsumer
    from clc.services.console_proxy import ConsoleProxy
    from clc.services.instances import place_pending
    from clc.services.status import StatusFolder

    folder = StatusFolder(missed_heartbeats=config.missed_heartbeats, db_touch_seconds=config.db_touch_seconds)

    def sweep(stop: threading.Event) -> None:
        # Sweep several times per heartbeat so an offline server is noticed soon after its last missed beat.
        period = max(0.2, config.heartbeat_seconds * SWEEP_FRACTION)
        last_refresh = time.monotonic()
        while not stop.wait(period):
            if time.monotonic() - last_refresh >= REFRESH_SECONDS:
                folder.refresh()
                last_refresh = time.monotonic()
            folder.sweep()

    def placer(stop: threading.Event) -> None:
        # Runs no request placed at once wait here; so do runs whose cluster did not answer (asked again).
        while not stop.wait(PLACER_SECONDS):
            place_pending()

    bus = get_bus(config.cloud_bus_url)
    workers = [Worker("clc-status", _consume(bus, CLC_STATUS, ClcStatusConsumer(folder), max_batch=500), stop),
               Worker("clc-sweeper", sweep, stop), Worker("clc-placer", placer, stop)]
    if config.console_port:
        workers.append(Worker("clc-console-proxy", ConsoleProxy(config.console_listen, config.console_port).run, stop))
    # The cloud's periodic jobs (luhyaapi.jobs), on the schedules in this CLC's database.
    workers.append(Worker("clc-beat", celery_beat(), stop))
    return workers


def _cc_workers(config: Config, stop: threading.Event) -> list[Worker]:
    from cc.consumers.cc_status import CcStatusConsumer
    from cc.services.command_tasks import expire_commands, follow_task_events
    from cc.services.network import apply_network, refresh_network
    from cc.services.nodes import NodeStatusRelay

    relay = NodeStatusRelay(get_bus(config.cloud_bus_url), touch_seconds=config.db_touch_seconds)

    def expiry(stop: threading.Event) -> None:
        # Commands an offline node never took fail, and the instances they were to run with them (told to the CLC
        # on the cloud's bus, as the relay tells it).
        while not stop.wait(EXPIRY_SECONDS):
            expire_commands(relay.upstream)

    def network(stop: threading.Event) -> None:
        # Re-applied at start (a restarted CC puts its rules back, once) and then now and again, which also picks
        # up changed network settings on the CLC. Only here does the CC ask the CLC for them: never in a request.
        while True:
            refresh_network()
            apply_network()
            if stop.wait(NETWORK_SECONDS):
                return

    return [Worker("cc-status", _consume(get_bus(config.bus_url), cc_status(config.cluster),
                                         CcStatusConsumer(relay), max_batch=200), stop),
            Worker("cc-network", network, stop),
            Worker("cc-task-events", follow_task_events(celery_broker_url(config), f"cc.{config.name}"), stop),
            Worker("cc-command-expiry", expiry, stop)]


def _nc_workers(config: Config, stop: threading.Event, heartbeat: HeartbeatPublisher) -> list[Worker]:
    from daemons.metrics import sample_loop
    from luhyaapi.hostmetrics import HostSampler
    from nc.services.instances import watch_loop
    from nc.services.kiosk import LocalRunReports
    from nc.services.metrics import InstanceSampler, node_sweep
    from nc.tasks import use_reporter

    # The node's commands run in the host's Celery worker (host_worker) and report through the node's heartbeat.
    use_reporter(heartbeat)
    # On a classroom PC, what the watcher sees of the kiosk's own desktops stays on the PC (nc/services/kiosk.py).
    watcher_reports = LocalRunReports(heartbeat) if config.host_mode else heartbeat
    # The node's metrics (its instances' and its own) go where its heartbeat goes: its CC relays them to the watch.
    # A VM the watcher finds stopped on its own gets its Alive 0 in the next sample (the guest watchdog).
    sampler, host = InstanceSampler(), HostSampler(config.data_dir, config.name, config.cluster, role="nc")
    metrics = sample_loop(config.watch_sample_seconds, lambda: node_sweep(sampler, host), heartbeat.bus,
                          heartbeat.queue)
    return [Worker("nc-vm-watch", watch_loop(watcher_reports, on_ended=sampler.note_ended), stop),
            Worker("nc-metrics", metrics, stop)]


def _host_metrics_worker(config: Config, stop: threading.Event) -> Worker:
    """A host without a node controller samples itself: an SC host for its CC to relay, any other for the watch."""
    from daemons.metrics import host_role, host_sweep, metrics_queue, sample_loop
    from luhyaapi.hostmetrics import HostSampler

    sampler = HostSampler(config.data_dir, config.name, config.cluster, role=host_role(config))
    queue = metrics_queue(config)
    bus = get_bus(config.bus_url if queue != WATCH_METRICS else config.cloud_bus_url)
    return Worker("host-metrics", sample_loop(config.watch_sample_seconds, lambda: host_sweep(sampler, config.name),
                                              bus, queue), stop)


def _watch_workers(config: Config, stop: threading.Event) -> list[Worker]:
    from watch.consumers.watch_metrics import MAX_BATCH, WatchMetricsConsumer

    return [Worker("watch-metrics", _consume(get_bus(config.cloud_bus_url), WATCH_METRICS, WatchMetricsConsumer(),
                                             max_batch=MAX_BATCH), stop)]


def _sc_workers(config: Config, stop: threading.Event) -> list[Worker]:
    from sc.services.targets import watch_targets

    # The SC's tgtd, made to serve exactly the recorded exports at start (a restarted SC adopts its tgtd, or starts
    # one and re-exports) and again whenever tgtd is found gone.
    return [Worker("sc-targets", watch_targets, stop)]


def host_worker(config: Config, stop: threading.Event) -> Worker | None:
    """The host's one Celery worker (``celery-worker``): its node's commands (a command a killed node had taken is
    delivered again, and resumes) and the periodic jobs of its roles; None for a host with neither."""
    queues = [node_commands(config.name)] if config.has_role("nc") else []
    queues += [jobs_queue(role) for role in sorted(ROLES_WITH_JOBS) if config.has_role(role)]
    if not queues:
        return None
    # A node's worker is named after the node, as its CC inspects it.
    name = worker_name(config.name) if config.has_role("nc") else f"jobs@{config.name}"
    return Worker("celery-worker", celery_worker(name, queues, config.command_slots), stop)


def node_heartbeat() -> HeartbeatPublisher:
    """The node's heartbeat publisher, for a worker process of its own (``celery -A educloud worker``): what its
    tasks report goes up as the host's ``run_cloud`` would send it."""
    from django.conf import settings

    config = settings.EDUCLOUD
    return HeartbeatPublisher("nc", config, get_bus(status_bus_url("nc", config)), vms=_vms_of("nc"),
                              console=_console_of("nc"))


def _vms_of(role: str):
    if role != "nc":
        return None
    from nc.services.instances import vm_infos

    return vm_infos


def _console_of(role: str):
    if role != "nc":
        return None
    from nc.services.instances import console_protocol

    return console_protocol


def _disk_of(role: str):
    if role != "sc":
        return None
    from sc.services.store import volume_store_mb

    return volume_store_mb


def status_bus_url(role: str, config: Config) -> str:
    """The bus a role heartbeats on: nc and sc on their cluster's bus, other roles on the cloud's."""
    return config.bus_url if role in ("nc", "sc") else config.cloud_bus_url


def build_workers(config: Config, stop: threading.Event) -> tuple[list[Worker], dict[str, HeartbeatPublisher]]:
    """Every loop of every role this host runs (consumers first, so nothing heartbeats into an unread queue)."""
    workers: list[Worker] = []
    heartbeats = {role: HeartbeatPublisher(role, config, get_bus(status_bus_url(role, config)), vms=_vms_of(role),
                                           console=_console_of(role), disk=_disk_of(role))
                  for role in config.roles}
    if config.has_role("clc"):
        workers += _clc_workers(config, stop)
    if config.has_role("cc"):
        workers += _cc_workers(config, stop)
    if config.has_role("nc"):
        workers += _nc_workers(config, stop, heartbeats["nc"])
    if config.has_role("sc"):
        workers += _sc_workers(config, stop)
    if config.has_role("watch"):
        workers += _watch_workers(config, stop)
    if not config.has_role("nc"):
        workers.append(_host_metrics_worker(config, stop))
    worker = host_worker(config, stop)
    if worker is not None:
        workers.append(worker)
    workers += [Worker(f"{role}-heartbeat", heartbeat.run, stop) for role, heartbeat in heartbeats.items()]
    return workers, heartbeats
