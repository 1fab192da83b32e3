"""Instances on this node: prepared (image through the chain, then a linked clone), run, stopped and deleted through
the hypervisor driver, every step reported up as task and instance status. A watcher notices VMs that stopped on their
own, and after a restart of the node controller the VMs that kept running are taken back.

Each instance's operations run one at a time (a lock per instance); a stop or delete that arrives while the instance
is still being prepared (or waits for a boot slot, ``nc.services.boot_queue``) cancels the preparation first.
"""

from __future__ import annotations

import logging
import shutil
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from django.conf import settings
from django.db import close_old_connections
from django.utils import timezone
from pydantic import ValidationError

from luhyaapi.ids import InvalidId, validate_id
from luhyaapi.imagecache import CacheFull
from luhyaapi.messages import Command, ImageRef, InsStatus, Message, TaskStatus, VmInfo
from luhyaapi.transfer import TransferError, throttled, upload_file
from luhyaapi.trust import own_key
from luhyaapi.vmspec import RuntimeOptions, VMSpec
from nc.drivers import get_driver
from nc.drivers.base import DriverError, HypervisorDriver, VMState, check_instance_id
from nc.models import NodeInstance
from nc.services import boot_queue, readiness, volumes
from nc.services.images import PROGRESS_PER_SECOND, held_image, size_disk

logger = logging.getLogger(__name__)


class Reporter(Protocol):
    def publish(self, message: Message) -> None:
        """Send a report up to the cluster controller."""

    def report_now(self, last_command: str = "") -> None:
        """Publish this node's status (with its VMs) at once."""


class Cancelled(Exception):
    """A stop or delete arrived while the instance was being prepared."""


# The states of an instance whose VM this node has started: booting until the guest shows it is up, then running.
STARTED_STATES = ("booting", "running")
# How many guests the watcher looks at at once.
WATCH_THREADS = 16

_driver: HypervisorDriver | None = None
_guard = threading.Lock()
_locks: dict[str, threading.Lock] = {}
_cancels: dict[str, threading.Event] = {}


def node_driver() -> HypervisorDriver:
    """This node's hypervisor driver (``nc.hypervisor``), its VMs' files under ``<data_dir>/nc/vms``."""
    global _driver
    with _guard:
        config = settings.EDUCLOUD
        root = config.data_dir / "nc" / "vms"
        if _driver is None or _driver.root != root or _driver.name != config.hypervisor:
            _driver = get_driver(config.hypervisor, root)
        return _driver


def disk_dir(insid: str) -> Path:
    """Where the instance's own disk (a linked clone of its image) lives; kept across stops if persistent."""
    return settings.EDUCLOUD.data_dir / "nc" / "disks" / check_instance_id(insid)


def _lock(insid: str) -> threading.Lock:
    with _guard:
        return _locks.setdefault(insid, threading.Lock())


def _cancel_event(insid: str) -> threading.Event:
    with _guard:
        return _cancels.setdefault(insid, threading.Event())


def _cancel_run(insid: str) -> None:
    """End a run of ``insid`` being prepared or waiting for a boot slot, so that a stop or delete gets its lock."""
    _cancel_event(insid).set()
    boot_queue.wake()


@dataclass
class _Reports:
    """Task and instance status of one command, sent up with this node's name and address."""

    reporter: Reporter
    tid: str
    seq: int
    insid: str

    def task(self, phase: str, state: str, progress: int = 0, **extra) -> None:
        if self.tid:
            self.reporter.publish(TaskStatus(tid=self.tid, phase=phase, state=state, progress=progress,
                                             ncip=settings.EDUCLOUD.ip, **extra))

    def instance(self, state: str, **extra) -> None:
        self.reporter.publish(InsStatus(insid=self.insid, node=settings.EDUCLOUD.name, seq=self.seq, state=state,
                                        **extra))
        self.reporter.report_now()


def _remove_disk(insid: str) -> None:
    shutil.rmtree(disk_dir(insid), ignore_errors=True)


def _prepare_disk(record: NodeInstance, image: ImageRef, reports: _Reports, cancel: threading.Event,
                  disk_mb: int = 0) -> Path:
    def on_progress(done: int, total: int) -> None:
        if cancel.is_set():
            raise Cancelled()
        reports.task("preparing", "downloading", min(98, done * 100 // total) if total else 0)

    disk = disk_dir(record.instance_id) / f"disk{node_driver().disk_suffix}"
    if disk.exists() and record.persistent:
        return disk  # a persistent instance keeps its disk (and what was written to it) from run to run
    reports.task("preparing", "downloading", 0)
    # Held until the record names the image: from then on ``image_in_use`` keeps it from eviction.
    with held_image(image.image_id, image.version, image.sha256, image.size,
                    throttled(on_progress, PROGRESS_PER_SECOND)) as cached:
        if cancel.is_set():
            raise Cancelled()
        reports.task("preparing", "cloning", 99)
        if disk.exists():
            disk.unlink()  # a temporary instance's clone left by an interrupted run: start clean
        disk.parent.mkdir(parents=True, exist_ok=True)
        node_driver().clone_disk(cached.path, disk)
        size_disk(node_driver(), disk, disk_mb)
        record.image_path = str(cached.path)
        record.disk_path = str(disk)
        record.save(update_fields=["image_path", "disk_path", "updated"])
    return disk


def _disk_mb(paras: dict) -> int:
    """The VM type's disk size the command asks for; 0 (the image's size) when absent or not a count."""
    value = paras.get("disk_mb", 0)
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def _prepared(record: NodeInstance, reports: _Reports) -> None:
    """The disk is ready and the VM is not started (the image wizard's prepare step)."""
    record.state = "stopped"
    record.save(update_fields=["state", "updated"])
    reports.task("preparing", "done", 100, done=True)
    reports.instance("stopped", vmstatus="prepared")
    logger.info("instances: %s prepared (disk %s)", record.instance_id, record.disk_path)


def _waiting(reports: _Reports, place: int) -> None:
    """The run waits for a boot slot, ``place`` in line: the instance stays ``preparing`` and the task says where."""
    text = boot_queue.waiting_text(place)
    reports.task("preparing", "waiting", 99, vmstatus=text)
    reports.instance("preparing", vmstatus=text)


def _boot(record: NodeInstance, disk: Path, options: RuntimeOptions, reports: _Reports,
          run_volumes: volumes.RunVolumes | None = None) -> None:
    driver = node_driver()
    insid = record.instance_id
    if run_volumes is not None:  # the run brings every volume of the instance: the records become that set
        volumes.keep_run_volumes(record, run_volumes)
    if driver.state(insid) is not VMState.ABSENT:
        driver.destroy(insid)  # the definition of an earlier run (other ports); the disk lives outside it
    reports.task("editing", "booting", 100)
    driver.create(VMSpec.build(insid, [str(disk)], options))
    # bench/instance_launch.py times the control plane up to this moment.
    logger.info("instances: %s start call at %.6f", insid, time.time())
    driver.start(insid)
    # Started is not up: the guest may sit in its BIOS for a while. The watcher reports it running on evidence.
    record.state, record.booted_at, record.answering, record.guest_ip = "booting", timezone.now(), True, ""
    record.save(update_fields=["state", "booted_at", "answering", "guest_ip", "updated"])
    # Its volumes go back in at once: the guest finds them when its kernel looks for disks.
    missing = (run_volumes.missing if run_volumes else {}) | volumes.restore_volumes(driver, record)
    reports.instance("booting", vmstatus=_started_text(missing), console=driver.console(insid).url)


def _started_text(missing: dict[str, str]) -> str:
    """The vmstatus of a VM just started, naming the volumes it could not get back (the run goes on without)."""
    if not missing:
        return "started"
    return "started; not attached: " + "; ".join(f"{volume_id} ({reason})" for volume_id, reason in missing.items())


def _labels(labels: object) -> dict:
    """The run's labels of the instance's metrics as the node keeps them: ``image_id`` and ``owner_group`` (text,
    "" when missing or not text) and ``monitoring`` (a boolean, on unless the run says false). A run from a CC that
    sends none keeps none: such an instance is monitored without those dimensions."""
    labels = labels if isinstance(labels, dict) else {}
    kept = {key: value for key in ("image_id", "owner_group") if isinstance(value := labels.get(key), str)}
    return kept | {"monitoring": labels.get("monitoring") is not False}


def run_instance(command: Command, reporter: Reporter) -> None:
    """``instance/run``: fetch the image version into this node's cache, make the instance's linked clone (kept
    across runs if persistent), define and boot the VM with the runtime options. Reports ``preparing`` (download
    progress, cloning) and ``booting`` with the console once the VM is started (``running`` follows from
    ``watch_instances`` when the guest is up), or ``failed`` with the reason (what the run made is removed again,
    a persistent disk excepted). Running an instance that runs already reports its state again.
    Before the VM is started the run waits for one of the node's boot slots (``nc.max_parallel_boots``), in line
    with the other runs, reported as ``preparing`` with task state ``waiting`` and its place in ``vmstatus``.
    With ``boot`` false it stops after the clone and reports the instance ``stopped`` (vmstatus ``prepared``).
    A run that brings the instance's volumes (``RUN_VOLUMES``, from the CC) makes them the instance's recorded
    volumes before its VM starts, and the VM gets them at its start; those the CC could not export
    (``RUN_VOLUMES_MISSING``) are named in the ``booting`` report's vmstatus with those that did not come back.
    The run's ``labels`` (image, owner group, monitoring) are kept with the instance for its metrics
    (``nc.services.metrics``)."""
    paras = command.paras
    insid = check_instance_id(str(paras.get("insid", "")))
    reports = _Reports(reporter, command.tid, command.seq, insid)
    try:
        image = ImageRef.model_validate(paras.get("image"))
        options = RuntimeOptions.model_validate(paras.get("options"))
        run_volumes = volumes.parse_run_volumes(paras)
    except ValidationError as exc:
        reports.instance("failed", errormsg=f"bad instance/run command: {exc}")
        return
    except volumes.InvalidVolumeCommand as exc:  # its text names the fields, never a value (a CHAP secret)
        reports.instance("failed", errormsg=str(exc))
        return
    cancel = _cancel_event(insid)
    cancel.clear()
    with _lock(insid):
        record, _ = NodeInstance.objects.update_or_create(
            instance_id=insid, defaults={"tid": command.tid, "seq": command.seq, "state": "preparing",
                                         "options": options.model_dump(mode="json"),
                                         "persistent": bool(paras.get("persistent")),
                                         "labels": _labels(paras.get("labels"))})
        driver = node_driver()
        try:
            if driver.state(insid) is VMState.RUNNING and record.disk_path:
                if record.state not in STARTED_STATES:
                    record.state = "booting"
                    record.save(update_fields=["state", "updated"])
                volumes.restore_volumes(driver, record)
                _report_run_state(record, driver, reports)
                return
            reports.instance("preparing")
            disk = _prepare_disk(record, image, reports, cancel, _disk_mb(paras))
            if cancel.is_set():
                raise Cancelled()
            if not paras.get("boot", True):
                _prepared(record, reports)
                return
            with boot_queue.boot_slot(insid, cancel, lambda place: _waiting(reports, place)):
                _boot(record, disk, options, reports, run_volumes)
            logger.info("instances: %s started (%s)", insid, driver.console(insid).url)
        except (Cancelled, boot_queue.WaitCancelled):
            logger.info("instances: preparing %s cancelled by a stop or delete", insid)
        except (DriverError, TransferError, CacheFull, OSError, ValidationError) as exc:
            logger.error("instances: running %s failed: %s", insid, exc)
            _discard(record, driver, keep_disk=record.persistent)
            record.state = "failed"
            record.save(update_fields=["state", "updated"])
            reports.task("failed", "init", failed=True, errormsg=str(exc))
            reports.instance("failed", errormsg=str(exc))


def _discard(record: NodeInstance | None, driver: HypervisorDriver, keep_disk: bool) -> None:
    insid = record.instance_id if record else ""
    if insid:
        try:
            driver.destroy(insid)
        except DriverError as exc:
            logger.error("instances: could not remove the VM of %s: %s", insid, exc)
        if not keep_disk:
            _remove_disk(insid)


def stop_instance(command: Command, reporter: Reporter) -> None:
    """``instance/stop``: shut the VM down (ACPI, then forced after ``nc.stop_timeout_seconds``) and remove its
    definition; a temporary instance's disk is discarded, a persistent one's kept. Reports ``stopping`` then
    ``stopped``. Stopping an instance this node does not run reports it stopped."""
    insid = check_instance_id(str(command.paras.get("insid", "")))
    reports = _Reports(reporter, command.tid, command.seq, insid)
    _cancel_run(insid)
    with _lock(insid):
        record = NodeInstance.objects.filter(instance_id=insid).first()
        driver = node_driver()
        graceful = True
        if driver.state(insid) is VMState.RUNNING:
            reports.instance("stopping")
            graceful = driver.stop(insid, timeout=settings.EDUCLOUD.vm_stop_timeout)
        _end_run(record, driver, reports, f"stopped ({'shut down' if graceful else 'powered off'})")


def _end_run(record: NodeInstance | None, driver: HypervisorDriver, reports: _Reports, how: str) -> None:
    persistent = bool(record and record.persistent)
    if record is not None:
        _discard(record, driver, keep_disk=persistent)
        if persistent:
            record.state = "stopped"
            record.save(update_fields=["state", "updated"])
        else:
            record.delete()
        boot_queue.wake()  # it may have been booting
    else:
        driver.destroy(reports.insid)
    reports.task("editing", "stopped", 100, vmstatus="stopped", done=True)
    reports.instance("stopped", vmstatus=how)
    logger.info("instances: %s %s%s", reports.insid, how, "; disk kept" if persistent else "")


def delete_instance(command: Command, reporter: Reporter) -> None:
    """``instance/delete``: power the VM off, remove it and its disk, forget the instance; reports ``deleted``.
    Deleting an instance this node does not know reports it deleted."""
    insid = check_instance_id(str(command.paras.get("insid", "")))
    reports = _Reports(reporter, command.tid, command.seq, insid)
    _cancel_run(insid)
    with _lock(insid):
        driver = node_driver()
        driver.destroy(insid)
        _remove_disk(insid)
        NodeInstance.objects.filter(instance_id=insid).delete()
        boot_queue.wake()  # it may have been booting
        reports.instance("deleted", vmstatus="deleted")
        logger.info("instances: %s deleted", insid)


def submit_instance(command: Command, reporter: Reporter) -> None:
    """``instance/submit`` (the image wizard's last step): shut the VM down if it runs, write its disk as one
    self-contained file (the image's backing file merged in), upload it through this node's CC to walrus as a new
    version of ``image_id`` (``submitting/uploading`` with progress, then ``done`` with walrus's answer as the task
    result), then remove the instance. On failure (walrus refuses the upload, walrus or the CC cannot be reached)
    the task is reported failed and the instance ``stopped`` with the reason, its disk kept, so the submit can be
    asked again; an instance without a disk here to submit is reported ``failed``."""
    paras = command.paras
    insid = check_instance_id(str(paras.get("insid", "")))
    reports = _Reports(reporter, command.tid, command.seq, insid)
    config = settings.EDUCLOUD
    with _lock(insid):
        record = NodeInstance.objects.filter(instance_id=insid).first()
        driver = node_driver()
        flat = disk_dir(insid) / f"submit{driver.disk_suffix}"
        # Before anything can fail: the CLC reset the task for this attempt, and its fold skips a report equal to
        # the last one it folded, so the same failure twice in a row needs another report between them.
        reports.task("submitting", "init", 0)
        try:
            image_id = validate_id(str(paras.get("image_id", "")), "image")
            if record is None or not record.disk_path or not Path(record.disk_path).exists():
                raise DriverError(f"instance {insid} has no disk on this node to submit")
            if driver.state(insid) is VMState.RUNNING:
                driver.stop(insid, timeout=config.vm_stop_timeout)
            if driver.state(insid) is not VMState.ABSENT:
                driver.destroy(insid)
            flat.unlink(missing_ok=True)
            driver.flatten_disk(Path(record.disk_path), flat)

            def on_progress(done: int, total: int) -> None:
                reports.task("submitting", "uploading", min(99, done * 100 // total) if total else 0)

            stored = upload_file(f"{config.cc_url}/cc/api/1.0/relay", own_key(), flat, image_id,
                                 progress=throttled(on_progress, PROGRESS_PER_SECOND))
        except (DriverError, TransferError, InvalidId, OSError) as exc:
            _submit_failed(record, flat, reports, f"submit failed: {exc}")
            return
        result = {key: stored[key] for key in ("image_id", "version", "size", "sha256", "format")}
        reports.task("submitting", "done", 100, done=True, result=result)
        _remove_disk(insid)
        record.delete()
        reports.instance("deleted", vmstatus="submitted")
        logger.info("instances: %s submitted as %s version %s", insid, image_id, stored["version"])


def _submit_failed(record: NodeInstance | None, flat: Path, reports: _Reports, reason: str) -> None:
    """End a submit that did not get through: the flattened copy goes (a whole disk's worth of space), the
    instance's own disk stays and the instance is stopped (its VM was shut down for the submit), so the user can
    submit again or run it again."""
    logger.error("instances: submitting %s failed: %s", reports.insid, reason)
    flat.unlink(missing_ok=True)
    kept = record is not None and bool(record.disk_path) and Path(record.disk_path).exists()
    if kept:
        record.state = "stopped"
        record.save(update_fields=["state", "updated"])
    reports.task("failed", "init", failed=True, errormsg=reason)
    reports.instance("stopped" if kept else "failed", vmstatus="submit failed", errormsg=reason)


def _running_record(insid: str, driver: HypervisorDriver) -> NodeInstance:
    """The record of ``insid`` if its VM runs on this node; VolumeRefused saying how it is otherwise."""
    record = NodeInstance.objects.filter(instance_id=insid).first()
    if record is None:
        raise volumes.VolumeRefused(f"instance {insid} does not run on this node")
    if record.state not in STARTED_STATES or driver.state(insid) is not VMState.RUNNING:
        raise volumes.VolumeRefused(f"instance {insid} is {record.state} on this node: volumes are attached to and "
                                    "detached from running instances only")
    return record


def attach_volume(command: Command, reporter: Reporter) -> None:
    """``volume/attach``: hot-plug the command's iSCSI target into the instance's running VM and record it, so that
    every later start of the VM attaches it again. Reports the command's task ``attached`` with the volume, device
    and serial as its result, or failed with the reason: the instance does not run here (a stopped instance takes
    no volume), the volume is attached to another instance here, the hypervisor refused (a wrong CHAP secret,
    another node's initiator, an unreachable portal). Attaching an attached volume reports it attached again."""
    paras = volumes.parse_attach(command.paras)
    reports = _Reports(reporter, command.tid, command.seq, paras.insid)
    volume_id = paras.target.volume_id
    with _lock(paras.insid):
        driver = node_driver()
        try:
            row = volumes.attach_volume(driver, _running_record(paras.insid, driver), paras.target)
        except (volumes.VolumeRefused, DriverError) as exc:
            logger.error("instances: attaching %s to %s failed: %s", volume_id, paras.insid, exc)
            reports.task("failed", "attaching", failed=True, errormsg=str(exc))
            return
        reports.task("editing", "attached", 100, done=True, vmstatus=f"{volume_id} attached as {row.device}",
                     result={"volume_id": volume_id, "insid": paras.insid, "device": row.device,
                             "serial": row.serial})


def detach_volume(command: Command, reporter: Reporter) -> None:
    """``volume/detach``: unplug the volume from the instance's running VM (the guest is given a bounded time to
    let go of it) and forget it. Reports the command's task ``detached``, or failed with the reason: the instance
    does not run here (a stopped instance's volumes are not detached by its node), the guest kept the disk.
    Detaching a volume that is not attached reports it detached."""
    paras = volumes.parse_detach(command.paras)
    reports = _Reports(reporter, command.tid, command.seq, paras.insid)
    with _lock(paras.insid):
        driver = node_driver()
        try:
            volumes.detach_volume(driver, _running_record(paras.insid, driver), paras.volume_id)
        except (volumes.VolumeRefused, DriverError) as exc:
            logger.error("instances: detaching %s from %s failed: %s", paras.volume_id, paras.insid, exc)
            reports.task("failed", "detaching", failed=True, errormsg=str(exc))
            return
        reports.task("editing", "detached", 100, done=True, vmstatus=f"{paras.volume_id} detached",
                     result={"volume_id": paras.volume_id, "insid": paras.insid})


def image_in_use(path: Path) -> bool:
    """Whether an instance's disk is a clone of the cached image at ``path`` (so the cache must keep it)."""
    return NodeInstance.objects.filter(image_path=str(path)).exists()


def console_protocol() -> str:
    """The console this node's hypervisor serves: ``vnc`` (QEMU) or ``rdp`` (VirtualBox's VRDE)."""
    return "vnc" if node_driver().capabilities.get("console_vnc") else "rdp"


def vm_infos() -> list[VmInfo]:
    """This node's instances as its heartbeat lists them."""
    infos = []
    for record in NodeInstance.objects.all():
        options = record.options or {}
        infos.append(VmInfo(insid=record.instance_id, state=record.state, memory_mb=options.get("memory_mb", 0),
                            cpus=options.get("cpus", 0)))
    return infos


def _report_run_state(record: NodeInstance, driver: HypervisorDriver, reports: _Reports) -> None:
    """Report a started instance as the node knows it: booting, or running (answering or not) with its address."""
    console = driver.console(record.instance_id).url
    if record.state == "booting":
        reports.instance("booting", vmstatus="started", console=console)
        return
    reports.task("editing", "running", 100, vmstatus="running", done=True)
    reports.instance("running", vmstatus="running" if record.answering else "not answering", console=console,
                     guest_ip=record.guest_ip, answering=record.answering)


def _boot_target(record: NodeInstance) -> readiness.BootTarget:
    try:
        return readiness.BootTarget.of(RuntimeOptions.model_validate(record.options))
    except ValidationError:
        return readiness.BootTarget(macs=(), services=())  # a record of an older node: only the driver's word


def _look_for_guest(record: NodeInstance, driver: HypervisorDriver) -> readiness.Readiness:
    """Whether the guest of a started VM is up (``nc.services.readiness``) and its address. One already up and
    answering is only asked for its address (no probe of its services). Safe to run on several threads at once."""
    config = settings.EDUCLOUD
    lease_files = [config.lease_file] if config.lease_file else []
    target, guest = _boot_target(record), driver.guest_info(record.instance_id)
    if record.state == "running" and record.answering:
        return readiness.Readiness(True, "", guest.ip or readiness.leased_address(target, lease_files))
    return readiness.check_readiness(target, guest, lease_files)


def _follow_guest(record: NodeInstance, found: readiness.Readiness, driver: HypervisorDriver,
                  reports: _Reports) -> None:
    """Act on what ``_look_for_guest`` found: a booting instance becomes running; one still without evidence after
    ``nc.ready_timeout_seconds`` becomes running, not answering (and answering once evidence comes later); a new
    guest address is reported."""
    was = (record.state, record.answering, record.guest_ip)
    if found.up:
        if record.state == "booting" or not record.answering:
            logger.info("instances: %s is up (%s)", record.instance_id, found.evidence)
        record.state, record.answering = "running", True
        record.guest_ip = found.guest_ip or record.guest_ip
    elif record.state == "booting":
        started = record.booted_at or record.updated
        limit = settings.EDUCLOUD.vm_ready_timeout
        if (timezone.now() - started).total_seconds() >= limit:
            logger.warning("instances: %s shows no sign of its guest after %.0f s; running, not answering",
                           record.instance_id, limit)
            record.state, record.answering = "running", False
    if (record.state, record.answering, record.guest_ip) != was:
        record.save(update_fields=["state", "answering", "guest_ip", "updated"])
        if was[0] == "booting":
            boot_queue.wake()  # a boot slot is free
        _report_run_state(record, driver, reports)


def watch_instances(reporter: Reporter) -> list[str]:
    """One look at the instances this node has started: one whose VM stopped on its own (shut down inside the
    guest, or killed) is ended as a stop would; for the others, ``_follow_guest``. The guests are looked at in
    parallel (a probe of a guest that is not up waits up to ``readiness.PROBE_TIMEOUT``, and a class boots many at
    once). Returns the instance ids found stopped."""
    driver = node_driver()
    stopped = []
    held: list[tuple[NodeInstance, threading.Lock]] = []
    try:
        for record in NodeInstance.objects.filter(state__in=STARTED_STATES):
            lock = _lock(record.instance_id)
            if not lock.acquire(blocking=False):
                continue  # a run, stop or delete is at work on it
            held.append((record, lock))
        following = []
        for record, _ in held:
            reports = _Reports(reporter, record.tid, record.seq, record.instance_id)
            try:
                if driver.state(record.instance_id) is not VMState.RUNNING:
                    _end_run(record, driver, reports, "stopped (from inside the guest)")
                    stopped.append(record.instance_id)
                else:
                    following.append((record, reports))
            except DriverError as exc:
                logger.warning("instances: could not look at %s: %s", record.instance_id, exc)
        if following:
            with ThreadPoolExecutor(max_workers=min(WATCH_THREADS, len(following))) as pool:
                looks = [(record, reports, pool.submit(_look_for_guest, record, driver))
                         for record, reports in following]
            for record, reports, look in looks:
                try:
                    _follow_guest(record, look.result(), driver, reports)
                except DriverError as exc:
                    logger.warning("instances: could not look at %s: %s", record.instance_id, exc)
    finally:
        for _, lock in held:
            lock.release()
    return stopped


def adopt_instances(reporter: Reporter) -> list[str]:
    """At the start of the node controller: take back the VMs that kept running and report them as they were
    (booting, or running answering or not), so the cloud's view is current; the watcher then ends those that
    stopped meanwhile and goes on following the booting ones."""
    driver = node_driver()
    running = set(driver.adopt())
    known = {record.instance_id: record for record in NodeInstance.objects.all()}
    for insid in running - set(known):
        logger.warning("instances: VM %s runs but this node has no record of it; leaving it alone", insid)
    for insid in running & set(known):
        record = known[insid]
        if record.state not in STARTED_STATES:
            record.state = "booting"
            record.save(update_fields=["state", "updated"])
        lock = _lock(insid)
        if lock.acquire(blocking=False):  # else a command is at work on it, and it decides
            try:
                volumes.restore_volumes(driver, record)  # what its VM still has stays; only the missing go in
            finally:
                lock.release()
        _report_run_state(record, driver, _Reports(reporter, record.tid, record.seq, insid))
    logger.info("instances: %d running VMs adopted", len(running & set(known)))
    return sorted(running & set(known))


def watch_loop(reporter: Reporter, period: float = 5.0,
               on_ended: Callable[[list[str]], None] | None = None) -> Callable[[threading.Event], None]:
    """The NC's watcher worker: adopt at start, then ``watch_instances`` every ``period`` seconds; ``on_ended`` is
    told the instances whose VMs it found stopped on their own (the metrics' guest watchdog)."""

    def loop(stop: threading.Event) -> None:
        try:
            adopt_instances(reporter)
            while not stop.wait(period):
                ended = watch_instances(reporter)
                if ended and on_ended is not None:
                    on_ended(ended)
        finally:
            close_old_connections()

    return loop
