"""A node's samples of its running instances (issue 17, collection): the driver's since-start counters turned into
per-sample amounts and CPU seconds into a percentage of the instance's vCPUs, as ``eduCloud/Instance`` metric samples.
The node's worker ``nc-metrics`` (``daemons.roles``) runs a sweep every ``watch.sample_seconds`` and publishes it with
the host's own samples as ``metrics`` messages on the cluster's status queue; see docs/watch.md, "Collection".
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace

from django.conf import settings
from pydantic import ValidationError

from luhyaapi.bus import RetryLater
from luhyaapi.hostmetrics import HostSampler, ProcFormatError
from luhyaapi.messages import Command, MetricsReport, MonitoringSwitch
from luhyaapi.metrics import (
    DIMENSION_VALUE_ADAPTER,
    INSTANCE_METRICS,
    INSTANCE_NAMESPACE,
    MAX_SAMPLES,
    MetricSample,
    conforms,
)
from nc.drivers.base import DriverError, VMMetrics, VMNotFound
from nc.models import NodeInstance
from nc.services import instances
from nc.services.kiosk import TID_PREFIX as KIOSK_TID_PREFIX

logger = logging.getLogger(__name__)

# The counters of VMMetrics sent as per-sample amounts, by metric name.
COUNTERS: dict[str, str] = {
    "DiskReadBytes": "disk_read_bytes",
    "DiskWriteBytes": "disk_write_bytes",
    "DiskReadOps": "disk_read_ops",
    "DiskWriteOps": "disk_write_ops",
    "NetworkIn": "net_rx_bytes",
    "NetworkOut": "net_tx_bytes",
}


@dataclass(frozen=True)
class InstanceLabels:
    """What the node knows of an instance only from the cloud: its image and owner group (dimensions ``ImageId``
    and ``OwnerGroup``, left out while empty) and whether monitoring is on. Its run command carries them and the
    node keeps them on the instance's record (``NodeInstance.labels``); a record without them (run by a CC that
    sent none) has no such dimensions and is monitored."""

    image_id: str = ""
    owner_group: str = ""
    monitoring: bool = True

    @classmethod
    def of(cls, record: NodeInstance) -> InstanceLabels:
        """The labels kept on ``record``. A value no dimension may hold (an owner-group path longer than a
        dimension's 128 characters, say) is left out and logged, so that the instance's other samples still go."""
        kept = record.labels if isinstance(record.labels, dict) else {}
        values = {}
        for key in ("image_id", "owner_group"):
            value = kept.get(key)
            if isinstance(value, str) and conforms(DIMENSION_VALUE_ADAPTER, value):
                values[key] = value
            elif value:
                logger.warning("metrics: %s of %s is no dimension value, left out: %r", key, record.instance_id,
                               value)
        return cls(**values, monitoring=kept.get("monitoring") is not False)


NO_LABELS = InstanceLabels()

# Switches are read, compared and written one at a time (the node's worker runs commands in threads of one process).
_switching = threading.Lock()


def parse_switch(command: Command) -> MonitoringSwitch:
    """The ``instance/monitoring`` command's switch; ValidationError naming the field otherwise."""
    return MonitoringSwitch.model_validate(command.paras)


def switch_monitoring(command: Command, _reporter: object) -> None:
    """``instance/monitoring``: the CLC switched monitoring of a run of an instance; from the next sweep on its
    samples go or stop (``sample_instances`` reads the switch from the instance's labels each time). The switch
    names its run: a run this node has not got yet (no record, or an earlier run's) is RetryLater, as its run
    command may be on its way or at work; a later run's record took the CLC's switch in its own command, so this
    one is stale and skipped; of two switches of one run the later ``at`` wins whatever order they arrive in."""
    switch = parse_switch(command)
    with _switching:
        record = NodeInstance.objects.filter(instance_id=switch.insid).first()
        if record is None or record.seq < switch.run:
            raise RetryLater(f"{switch.insid}: its run {switch.run} is not on this node yet")
        labels = dict(record.labels) if isinstance(record.labels, dict) else {}
        if record.seq > switch.run or labels.get("monitoring_at", -1) >= switch.at:
            logger.info("metrics: monitoring switch of %s run %s at %s is stale; skipped", switch.insid, switch.run,
                        switch.at)
            return
        labels |= {"monitoring": switch.monitoring, "monitoring_at": switch.at}
        NodeInstance.objects.filter(pk=record.pk, seq=switch.run).update(labels=labels)
    logger.info("metrics: monitoring of %s %s", switch.insid, "on" if switch.monitoring else "off")


@dataclass(frozen=True)
class SampledInstance:
    """One instance as the sampler names it: its id, how many vCPUs its CPU seconds are shared by, where it runs."""

    instance_id: str
    vcpus: int
    node: str
    cluster: str
    labels: InstanceLabels = NO_LABELS

    def dimensions(self) -> dict[str, str]:
        dimensions = {"InstanceId": self.instance_id, "NodeName": self.node, "Cluster": self.cluster}
        if self.labels.image_id:
            dimensions["ImageId"] = self.labels.image_id
        if self.labels.owner_group:
            dimensions["OwnerGroup"] = self.labels.owner_group
        return dimensions


class InstanceSampler:
    """Keeps each instance's previous reading, so that the next one gives the amounts of the time between.

    What a reading gives (``sample``):
    - alive, the first reading since the sampler started, since the instance was forgotten or since it was last
      seen dead: ``MemoryUsed`` and ``Alive`` 1 only. Its counters count everything since the VM started, which
      no sample period holds; they become the base of the next reading's amounts.
    - alive, with a previous reading: also ``CPUUtilization`` (CPU seconds used / (seconds passed * vCPUs) * 100,
      clamped to 0..100) and each counter's increase; a counter lower than before means the VM started again in
      between, and counts 0 for that sample. A counter the reading lacks (None: not read this time, or not counted
      by the driver) sends nothing and its previous value is kept as the base of the next increase, which then
      spans both periods.
    - not alive (the instance should run, its VM does not): ``Alive`` 0 only, and the previous reading is dropped.
    A reading not later than the previous one is taken as a first reading (no time passed to divide by).
    """

    def __init__(self) -> None:
        self._previous: dict[str, tuple[float, VMMetrics]] = {}
        # How each instance was last sampled (its dimensions and vCPUs): the watchdog's Alive 0 of a run the
        # watcher ended goes with them, as the node's record of a temporary instance ends with its run.
        self._seen: dict[str, SampledInstance] = {}
        self._ended: set[str] = set()
        self._ended_lock = threading.Lock()

    def note_ended(self, insids: Iterable[str]) -> None:
        """The node's watcher ended the runs of ``insids``, whose VMs stopped without being asked (from inside the
        guest, or killed). It looks every 5 s and a sample period is longer, so a sweep would rarely see such a VM
        gone while its record still says started: the next sweep sends their ``Alive`` 0 instead (of those sampled
        before), the guest watchdog's evidence. Called from the watcher's thread."""
        with self._ended_lock:
            self._ended.update(insids)

    def take_ended(self) -> set[str]:
        """The instances noted by ``note_ended`` since the last call."""
        with self._ended_lock:
            ended, self._ended = self._ended, set()
        return ended

    def sample(self, instance: SampledInstance, reading: VMMetrics, at: float) -> list[MetricSample]:
        """The instance's samples at ``at`` (epoch seconds) from ``reading``; see the class."""
        insid = instance.instance_id
        dimensions = instance.dimensions()
        self._seen[insid] = instance

        def metric(name: str, value: float) -> MetricSample:
            return MetricSample(namespace=INSTANCE_NAMESPACE, name=name, dimensions=dimensions, timestamp=at,
                                value=value, unit=INSTANCE_METRICS[name])

        if not reading.alive:
            self._previous.pop(insid, None)
            return [metric("Alive", 0)]
        samples = [metric("MemoryUsed", reading.memory_bytes), metric("Alive", 1)]
        previous = self._previous.get(insid)
        self._previous[insid] = (at, reading)
        if previous is None or at <= previous[0]:
            return samples
        before_at, before = previous
        used = (reading.cpu_seconds - before.cpu_seconds) / ((at - before_at) * max(instance.vcpus, 1)) * 100
        samples.append(metric("CPUUtilization", min(100.0, max(0.0, used))))
        carried = {}
        for name, field in COUNTERS.items():
            now, then = getattr(reading, field), getattr(before, field)
            if now is None:
                carried[field] = then
            elif then is not None:
                samples.append(metric(name, now - then if now >= then else 0))
        if carried:
            self._previous[insid] = (at, replace(reading, **carried))
        return samples

    def forget(self, insid: str) -> None:
        """Drop what is kept of ``insid``: its next reading is a first one."""
        self._previous.pop(insid, None)
        self._seen.pop(insid, None)

    def retain(self, insids: Iterable[str]) -> None:
        """Forget every instance not in ``insids`` (stopped or deleted since the last sweep)."""
        keep = set(insids)
        for insid in [insid for insid in self._previous.keys() | self._seen.keys() if insid not in keep]:
            self.forget(insid)

    def seen(self, insid: str) -> SampledInstance | None:
        """How ``insid`` was last sampled, None if it was not since it was last forgotten."""
        return self._seen.get(insid)

    def known(self) -> set[str]:
        """The instances whose previous reading is kept."""
        return set(self._previous)


def _vcpus(record: NodeInstance) -> int:
    cpus = (record.options or {}).get("cpus", 1)
    return cpus if isinstance(cpus, int) and cpus >= 1 else 1


def sample_instances(sampler: InstanceSampler, clock: Callable[[], float] = time.time) -> list[MetricSample]:
    """One sweep over the instances this node has started (booting or running, as ``watch_instances`` follows
    them): each one's reading from the node's driver through ``sampler``, stamped with ``clock()`` when it was
    read, with the image and owner group its run command gave (``InstanceLabels.of``). An instance not started
    (stopped, failed, being prepared), deleted, with monitoring off or a classroom kiosk's own desktop (the PC's
    copy, whose state stays on the PC too: ``nc.services.kiosk``) sends nothing and is forgotten; one whose
    VM is gone though its record says started gives ``Alive`` 0. A driver that fails for one instance is logged
    and that instance skipped this time (its previous reading kept, so the next amounts span both periods). Never
    takes an instance's lock: reading counters does not disturb a run, stop or delete at work."""
    driver = instances.node_driver()
    config = settings.EDUCLOUD
    samples = _ended_samples(sampler, clock)
    sampled: list[str] = []
    # A classroom kiosk's own desktop is the PC's copy, no instance of the cloud: like its state, it stays on the PC.
    started = NodeInstance.objects.filter(state__in=instances.STARTED_STATES).exclude(tid__startswith=KIOSK_TID_PREFIX)
    for record in started:
        insid = record.instance_id
        label = InstanceLabels.of(record)
        if not label.monitoring:
            continue
        try:
            reading = driver.metrics(insid)
        except VMNotFound:
            reading = VMMetrics(alive=False)
        except DriverError as exc:
            logger.warning("metrics: no reading of %s: %s", insid, exc)
            sampled.append(insid)
            continue
        sampled.append(insid)
        instance = SampledInstance(insid, _vcpus(record), config.name, config.cluster, label)
        try:
            samples += sampler.sample(instance, reading, clock())
        except ValidationError as exc:  # a label the schema refuses: this instance's samples only are lost
            logger.warning("metrics: samples of %s refused: %s", insid, exc)
    sampler.retain(sampled)
    return samples


def _ended_samples(sampler: InstanceSampler, clock: Callable[[], float]) -> list[MetricSample]:
    """``Alive`` 0 of each instance the watcher ended since the last sweep (``InstanceSampler.note_ended``), with
    the dimensions it was last sampled with, unless it was started again meanwhile (the sweep reads it then). One
    never sampled (monitoring off, or ended within its first sample period) sends nothing."""
    samples: list[MetricSample] = []
    ended = sampler.take_ended()
    restarted = set(NodeInstance.objects.filter(instance_id__in=ended, state__in=instances.STARTED_STATES)
                    .values_list("instance_id", flat=True))
    for insid in sorted(ended - restarted):
        instance = sampler.seen(insid)
        if instance is not None:
            samples += sampler.sample(instance, VMMetrics(alive=False), clock())
    return samples


def metrics_reports(host: str, samples: list[MetricSample]) -> list[MetricsReport]:
    """``samples`` as ``metrics`` messages of ``host``, at most ``MAX_SAMPLES`` each (none for no samples)."""
    return [MetricsReport(host=host, samples=tuple(samples[start:start + MAX_SAMPLES]))
            for start in range(0, len(samples), MAX_SAMPLES)]


def node_sweep(sampler: InstanceSampler, host: HostSampler) -> list[MetricsReport]:
    """One sample period of this node: its instances' samples (``sample_instances``) and its own host's, as its
    ``metrics`` messages. A host figure that cannot be read (``OSError``, ``ProcFormatError``) is logged and the
    instances' samples go without it."""
    samples = sample_instances(sampler)
    try:
        samples += host.sample()
    except (OSError, ProcFormatError) as exc:
        logger.warning("metrics: no host sample of this node: %s", exc)
    return metrics_reports(settings.EDUCLOUD.name, samples)
