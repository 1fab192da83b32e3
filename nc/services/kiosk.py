"""The classroom kiosk of a PC's node controller (``nc.kiosk``): which local desktops the PC offers (asked of its CC
and kept on the PC, so that while the CC cannot be reached the kiosk still lists and runs those whose image is in
this node's cache), pulling a desktop's image through the chain walrus -> CC -> this node and running it here with
the instance service, and stopping it.

A desktop run from the kiosk is this PC's own copy of the desktop (many PCs run one desktop at once), so its progress
and state stay on the PC, for the kiosk page: they do not go up as the desktop's instance or task status. The PC's
heartbeat lists its VMs as every node's does.

With the PC's ``auto_sync`` on (its record on the CLC, passed on with the list), the images of the offered desktops
are pulled in the background after each answer of the CC, so that they start at once and run offline later.
"""

from __future__ import annotations

import hashlib
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Annotated, Literal

from django.conf import settings
from django.db import close_old_connections
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from luhyaapi.client import RemoteError, RoleClient
from luhyaapi.ids import validate_id
from luhyaapi.imagecache import CacheFull, VerifiedFileCache
from luhyaapi.messages import Command, ImageRef, InsStatus, Message, TaskStatus
from luhyaapi.transfer import TransferError
from luhyaapi.trust import own_key
from luhyaapi.validators import MAC_RE
from luhyaapi.vmspec import ConsoleSpec, NicSpec, PortForward, RuntimeOptions, guest_devices
from nc.models import NodeInstance
from nc.services import instances
from nc.services.images import fetch_image, node_cache

logger = logging.getLogger(__name__)

# The kiosk asks the CC again when its list is older than this (the page asks every few seconds).
CATALOGUE_REFRESH_SECONDS = 30.0
# A CC that does not answer within this makes the kiosk offline; the page waits for it, so it is short.
CC_TIMEOUT_SECONDS = 5.0
# Ports of this PC's loopback for a desktop's console and forwarded services; consoles are VNC displays (5900 + n).
KIOSK_PORTS = range(5900, 6000)
LOOPBACK = "127.0.0.1"
# The task id of a kiosk run starts with this; it marks the node's instance records the kiosk may stop.
TID_PREFIX = "kiosk:"
# States a desktop's run passes through while a background pull, start or stop works on it.
BUSY_STATES = ("pulling", "starting", "stopping")


class KioskError(Exception):
    """The kiosk will not do what was asked; ``status`` is the HTTP status that says why."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class _Answer(BaseModel):
    # What the CC passes on from the CLC. Fields this node does not know are ignored (a newer CLC may add some); the
    # known ones are checked strictly, since they end up on the hypervisor's command line.
    model_config = ConfigDict(frozen=True, extra="ignore")


class VmSize(_Answer):
    """A desktop's VM type."""

    name: str = Field(max_length=40)
    cpus: int = Field(ge=1, le=64)
    memory_mb: int = Field(ge=32, le=1024 * 1024)


class Desktop(_Answer):
    """A local desktop the PC offers: the image version to pull, the VM's size and the guest services to forward."""

    instance_id: Annotated[str, Field(pattern=r"^ins-[0-9a-f]{8}$")]
    name: str = Field(min_length=1, max_length=100)
    os_type: Literal["linux", "windows", "other"] = "linux"
    image: ImageRef
    vm_type: VmSize
    services: tuple[Annotated[int, Field(ge=1, le=65535)], ...] = Field(default=(), max_length=8)
    persistent: bool = False
    mac: Annotated[str, Field(pattern=r"^$|" + MAC_RE.pattern)] = ""


class PcRecord(_Answer):
    """This PC as the CLC has it: its owner-group and the flags its administrator set."""

    name: str = Field(max_length=63)
    mac: str = Field(max_length=17)
    cluster: str = Field(max_length=63)
    owner_group: str | None = Field(default=None, max_length=255)
    offline_enabled: bool = True
    auto_sync: bool = True


class Catalogue(_Answer):
    """The desktops this PC offers as its CC last listed them, and when (epoch seconds)."""

    host: PcRecord
    desktops: tuple[Desktop, ...] = ()
    fetched_at: float = 0.0


@dataclass
class _Link:
    """Whether the CC answered the last time it was asked, why not, and when that was (monotonic seconds)."""

    online: bool = False
    reason: str = "the cluster controller has not been asked yet"
    asked_at: float | None = None


@dataclass
class _Activity:
    """A desktop's run as the kiosk follows it: its state, the pull's percent, the last error, and whether a
    background pull, start or stop is working on it."""

    state: str
    progress: int = 0
    error: str = ""
    busy: bool = True


_guard = threading.Lock()
_refreshing = threading.Lock()
_link = _Link()
_activities: dict[str, _Activity] = {}
# Held by the one background pass of auto_sync, and per image version by whoever pulls it into this PC's cache.
_syncing = threading.Lock()
_image_locks: dict[tuple[str, int], threading.Lock] = {}


def catalogue_path() -> Path:
    """Where the kiosk keeps the last list of desktops (``<data_dir>/nc/kiosk/desktops.json``)."""
    return settings.EDUCLOUD.data_dir / "nc" / "kiosk" / "desktops.json"


def read_catalogue() -> Catalogue | None:
    """The list of desktops kept on this PC, or None if there is none (or it cannot be read, which is logged)."""
    path = catalogue_path()
    try:
        return Catalogue.model_validate_json(path.read_bytes())
    except FileNotFoundError:
        return None
    except (OSError, ValidationError) as exc:
        logger.error("kiosk: the kept list of desktops %s cannot be used: %s", path, exc)
        return None


def _write_catalogue(catalogue: Catalogue) -> None:
    path = catalogue_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(catalogue.model_dump_json())
    os.replace(temporary, path)  # a reader never sees half a list, and a crash leaves the last one whole


def refresh_catalogue() -> bool:
    """Ask the CC for the desktops this PC offers and keep the answer on the PC; return whether the CC answered.
    When it does not (unreachable, refuses, or answers something that is not a list of desktops) the kept list
    stays and the kiosk is offline, with the reason."""
    config = settings.EDUCLOUD
    client = RoleClient(config.cc_url, own_key(), timeout=CC_TIMEOUT_SECONDS)
    try:
        answer = client.get(f"/cc/api/1.0/hosts/{config.mac}/desktops/")
        catalogue = Catalogue.model_validate({**answer, "fetched_at": time.time()})
    except RemoteError as exc:
        if exc.status:
            return _note_link(False, f"the cluster controller answered {exc.status}: {exc.detail}")
        logger.warning("kiosk: the cluster controller at %s cannot be reached: %s", config.cc_url, exc.detail)
        return _note_link(False, f"the cluster controller at {config.cc_url} cannot be reached")
    except ValidationError as exc:
        return _note_link(False, f"the cluster controller's answer is not a list of desktops: {exc.errors()[:1]}")
    _write_catalogue(catalogue)
    _note_link(True, "")
    if catalogue.host.auto_sync and not all(_is_cached(desktop) for desktop in catalogue.desktops):
        sync_in_background()
    return True


def _note_link(online: bool, reason: str) -> bool:
    with _guard:
        if online != _link.online:
            logger.info("kiosk: %s", "online" if online else f"offline: {reason}")
        _link.online, _link.reason, _link.asked_at = online, reason, time.monotonic()
    return online


def _stale() -> bool:
    with _guard:
        return _link.asked_at is None or time.monotonic() - _link.asked_at >= CATALOGUE_REFRESH_SECONDS


def _refresh_if_stale(force: bool = False) -> None:
    """``refresh_catalogue`` if asked to or if the last answer is old; one caller asks while the others wait."""
    if force or _stale():
        with _refreshing:
            if force or _stale():
                refresh_catalogue()


def _is_cached(desktop: Desktop) -> bool:
    # Only a verified file is ever renamed into place; fetching it checks it once more before it is used.
    return node_cache().path(desktop.image.image_id, desktop.image.version).exists()


def _kiosk_records() -> dict[str, NodeInstance]:
    return {record.instance_id: record for record in NodeInstance.objects.filter(tid__startswith=TID_PREFIX)}


def _reach(record: NodeInstance) -> tuple[str, dict[str, str]]:
    """The console URL and the forwarded services of a desktop running here, from its runtime options."""
    options = RuntimeOptions.model_validate(record.options)
    access = {}
    for forward in (forward for nic in options.nics for forward in nic.forwards):
        address = f"{forward.host_ip}:{forward.host_port}"
        access["http" if forward.guest_port == 80 else f"tcp/{forward.guest_port}"] = (
            f"http://{address}/" if forward.guest_port == 80 else address)
    console = options.console
    return f"{console.protocol}://{console.listen}:{console.port}", access


def _snapshot(insid: str) -> _Activity | None:
    """A copy of the desktop's activity (the caller holds ``_guard``)."""
    activity = _activities.get(insid)
    return replace(activity) if activity is not None else None


def _shown(seen: _Activity | None, record: NodeInstance | None, cached: bool) -> dict:
    """What the kiosk page shows of one desktop: state, pull progress, error, console and services. A background
    pull, start or stop says what it does; else the node's record says whether it runs."""
    running = record is not None and record.state in instances.STARTED_STATES
    if seen is not None and seen.busy:
        shown = {"state": seen.state, "progress": seen.progress, "error": ""}
    elif running:  # the pull's progress as it ended, or 100 for a desktop taken back after a restart
        shown = {"state": "running", "progress": seen.progress if seen is not None else 100, "error": ""}
    elif seen is not None and seen.state == "failed":
        shown = {"state": "failed", "progress": seen.progress, "error": seen.error}
    else:
        shown = {"state": "ready" if cached else "not pulled", "progress": 100 if cached else 0, "error": ""}
    console, access = _reach(record) if running else ("", {})
    return shown | {"console": console, "access": access}


def _state(insid: str) -> dict:
    """``_shown`` of one desktop as it is now."""
    record = NodeInstance.objects.filter(instance_id=insid, tid__startswith=TID_PREFIX).first()
    try:
        cached = _is_cached(_offered(insid)[1])
    except KioskError:
        cached = False
    with _guard:
        seen = _snapshot(insid)
    return {"instance_id": insid, **_shown(seen, record, cached)}


def kiosk_listing(refresh: bool = False) -> dict:
    """The kiosk's page data: this PC, whether the CC answered (``online``, else ``reason``), and each desktop it
    offers with its state. The CC is asked again when ``refresh`` or when the last answer is older than
    ``CATALOGUE_REFRESH_SECONDS``. Offline, only the desktops whose image is on this PC are listed (none if the
    PC's administrator turned ``offline_enabled`` off), and any that runs here."""
    _refresh_if_stale(force=refresh)
    catalogue = read_catalogue()
    with _guard:
        online, reason = _link.online, _link.reason
    offline_allowed = catalogue is None or catalogue.host.offline_enabled
    records = _kiosk_records()
    desktops = []
    for desktop in catalogue.desktops if catalogue else ():
        cached = _is_cached(desktop)
        with _guard:
            seen = _snapshot(desktop.instance_id)
        state = _shown(seen, records.get(desktop.instance_id), cached)
        if not online and not (cached and offline_allowed) and state["state"] not in ("running", *BUSY_STATES):
            continue
        desktops.append({"instance_id": desktop.instance_id, "name": desktop.name, "os_type": desktop.os_type,
                         "cpus": desktop.vm_type.cpus, "memory_mb": desktop.vm_type.memory_mb,
                         "image_size": desktop.image.size, "cached": cached, **state})
    return {"pc": settings.EDUCLOUD.name, "online": online, "reason": "" if online else reason,
            "offline_enabled": offline_allowed, "fetched_at": catalogue.fetched_at if catalogue else None,
            "desktops": desktops}


def _offered(insid: str) -> tuple[Catalogue, Desktop]:
    catalogue = read_catalogue()
    for desktop in catalogue.desktops if catalogue else ():
        if desktop.instance_id == insid:
            return catalogue, desktop
    raise KioskError(404, f"no desktop {insid} is offered on this PC")


def _free_ports(count: int) -> list[int]:
    """``count`` ports of ``KIOSK_PORTS`` that nothing on this PC listens on (tried by binding them)."""
    found = []
    for port in KIOSK_PORTS:
        with socket.socket() as probe:
            try:
                probe.bind((LOOPBACK, port))
            except OSError:
                continue
        found.append(port)
        if len(found) == count:
            return found
    raise KioskError(503, f"no {count} free ports left in {KIOSK_PORTS.start}-{KIOSK_PORTS.stop - 1} on this PC")


def _local_mac(insid: str) -> str:
    """A MAC for a desktop that has none recorded, the same every run (its guest then sees the same card)."""
    digest = hashlib.sha256(insid.encode()).digest()
    return "52:54:00:" + ":".join(f"{byte:02x}" for byte in digest[:3])


def runtime_options(desktop: Desktop) -> RuntimeOptions:
    """How the desktop runs on this PC: its VM type's size, NAT through the PC (the guest reaches what the PC
    reaches) with each guest service forwarded to a port of the PC's loopback, and its console on the loopback, so
    only someone at the PC reaches either."""
    console_port, *service_ports = _free_ports(1 + len(desktop.services))
    devices = guest_devices(desktop.os_type)
    forwards = tuple(PortForward(host_ip=LOOPBACK, host_port=port, guest_port=guest)
                     for port, guest in zip(service_ports, desktop.services, strict=True))
    nic = NicSpec(mode="nat", model=devices.nic_model, mac=desktop.mac or _local_mac(desktop.instance_id),
                  forwards=forwards)
    return RuntimeOptions(os_type=desktop.os_type, memory_mb=desktop.vm_type.memory_mb, cpus=desktop.vm_type.cpus,
                          disk_type=devices.disk_type, nics=(nic,),
                          console=ConsoleSpec(protocol=instances.console_protocol(), listen=LOOPBACK,
                                              port=console_port))


class _KioskReporter:
    """Takes the instance service's reports of one run into that run's activity, for the kiosk page."""

    def __init__(self, activity: _Activity) -> None:
        self.activity = activity

    def publish(self, message: Message) -> None:
        with _guard:
            activity = self.activity
            if isinstance(message, TaskStatus):
                if message.failed:
                    activity.state, activity.error = "failed", message.errormsg
                elif (message.phase, message.state) == ("preparing", "downloading"):
                    activity.state, activity.progress = "pulling", message.progress
                elif (message.phase, message.state) in (("preparing", "cloning"), ("editing", "booting")):
                    activity.state, activity.progress = "starting", 100  # the image is on the PC
            elif isinstance(message, InsStatus) and message.state in ("running", "stopping", "stopped", "failed"):
                activity.state = message.state
                activity.error = message.errormsg or activity.error

    def report_now(self, last_command: str = "") -> None:
        """Nothing to do: the node's heartbeat notices a changed list of VMs by itself within a second."""


def _in_background(insid: str, activity: _Activity, operation: Callable[[Command, _KioskReporter], None],
                   command: Command) -> None:
    def work() -> None:
        try:
            operation(command, _KioskReporter(activity))
        except Exception as exc:
            # The instance service reports the failures it expects; anything else still ends this run visibly.
            logger.exception("kiosk: %s of %s failed", command.op, insid)
            with _guard:
                activity.state, activity.error = "failed", str(exc)
        finally:
            with _guard:
                activity.busy = False
            close_old_connections()

    threading.Thread(target=work, name=f"kiosk-{command.op}-{insid}", daemon=True).start()


def start_desktop(insid: str) -> dict:
    """Pull a desktop the PC offers through the chain (progress as ``pulling``) and run it on this PC (``starting``,
    then ``running`` with its console on the loopback), in the background; returns its state at once. A background
    pull (auto_sync) stops for it first. One desktop runs on a PC at a time; starting the one that runs or starts
    already changes nothing. ``InvalidId`` for a malformed id (nothing is looked up); ``KioskError`` 404 if the PC
    does not offer it, 409 if another desktop is in use, or if the CC cannot be reached and the desktop's image is
    not on this PC (or the PC may not run desktops offline), 503 if no port is free."""
    insid = validate_id(insid, "instance")
    _refresh_if_stale()
    catalogue, desktop = _offered(insid)
    with _guard:
        online = _link.online
    if not online and not catalogue.host.offline_enabled:
        raise KioskError(409, "the cloud cannot be reached and this PC may not run desktops offline")
    if not online and not _is_cached(desktop):
        raise KioskError(409, f"the cloud cannot be reached and {desktop.name} has never been pulled to this PC")
    records = _kiosk_records()
    running = {other for other, record in records.items() if record.state in instances.STARTED_STATES}
    with _guard:
        activity = _activities.get(insid)
        if (activity is not None and activity.busy) or insid in running:
            return {"instance_id": insid, **_shown(_snapshot(insid), records.get(insid), cached=True)}
        in_use = sorted(running | {other for other, seen in _activities.items() if seen.busy})
        if in_use:
            raise KioskError(409, f"desktop {in_use[0]} is in use on this PC; stop it first")
        activity = _activities[insid] = _Activity("pulling")
    try:
        options = runtime_options(desktop)
    except KioskError as exc:
        with _guard:
            activity.busy, activity.state, activity.error = False, "failed", str(exc)
        raise
    command = Command(op="instance/run", tid=TID_PREFIX + insid,
                      paras={"insid": insid, "image": desktop.image.model_dump(mode="json"),
                             "options": options.model_dump(mode="json"), "persistent": desktop.persistent})
    logger.info("kiosk: starting %s (%s)", insid, desktop.name)
    _in_background(insid, activity, _run_once_image_free(insid, activity, desktop.image), command)
    return _state(insid)


def _run_once_image_free(insid: str, activity: _Activity,
                         image: ImageRef) -> Callable[[Command, _KioskReporter], None]:
    """``instances.run_instance`` once no background pull holds the desktop's image (it stops at its next chunk for
    the person at the PC, and this run's pull resumes what it fetched); nothing if the desktop was stopped
    meanwhile."""

    def run(command: Command, reporter: _KioskReporter) -> None:
        with _image_lock(image):
            with _guard:
                stopped = _activities.get(insid) is not activity
            if not stopped:
                instances.run_instance(command, reporter)

    return run


def stop_desktop(insid: str) -> dict:
    """Stop a desktop the kiosk runs on this PC (a pull or start under way is cancelled), in the background; a
    temporary desktop's disk is discarded, a persistent one's kept. Returns its state at once. ``InvalidId`` for a
    malformed id; ``KioskError`` 404 if the kiosk runs no such desktop here."""
    insid = validate_id(insid, "instance")
    record = NodeInstance.objects.filter(instance_id=insid, tid__startswith=TID_PREFIX).first()
    with _guard:
        activity = _activities.get(insid)
        busy = activity is not None and activity.busy
        if busy and activity.state == "stopping":
            return {"instance_id": insid, **_shown(_snapshot(insid), record, cached=True)}
        if not busy and (record is None or record.state not in instances.STARTED_STATES):
            raise KioskError(404, f"desktop {insid} does not run on this PC")
        activity = _activities[insid] = _Activity("stopping")
    logger.info("kiosk: stopping %s", insid)
    _in_background(insid, activity, instances.stop_instance,
                   Command(op="instance/stop", tid=TID_PREFIX + insid, paras={"insid": insid}))
    return _state(insid)


def _image_lock(image: ImageRef) -> threading.Lock:
    """The lock held while an image version is pulled into this PC's cache, so two pulls never write one file."""
    with _guard:
        return _image_locks.setdefault((image.image_id, image.version), threading.Lock())


class _Yielded(Exception):
    """A background pull stopped for the person at the PC."""


def _person_busy() -> bool:
    with _guard:
        return any(activity.busy for activity in _activities.values())


def _yield_to_person(done: int, total: int) -> None:
    if _person_busy():
        raise _Yielded()


def _has_room(cache: VerifiedFileCache, size: int) -> bool:
    return sum(file_size for _used, _path, file_size in cache.entries()) + size <= cache.limit_bytes


def sync_images() -> list[str]:
    """auto_sync: pull into this PC's cache, one at a time, the image of each desktop of the kept list that is not
    there yet, so that the kiosk starts it at once and runs it offline later; returns those pulled
    (``image_id/version``). Nothing if the PC's record says ``auto_sync`` is off.

    The person at the PC comes first: no pull begins while a desktop is being pulled, started or stopped, and one
    under way stops at its next chunk when that happens (its partial file stays, and the next pull of that image
    resumes it). A pull takes only the room the cache has free: evicting one offered image for another would pull
    them back and forth at every pass. An image the chain refuses is skipped; the pass ends when the CC does not
    answer (the kiosk is offline) or the cache cannot take more."""
    catalogue = read_catalogue()
    if catalogue is None or not catalogue.host.auto_sync:
        return []
    pulled = []
    for image in dict.fromkeys(desktop.image for desktop in catalogue.desktops):
        if _person_busy():
            logger.info("kiosk: auto_sync stops while a desktop is in use on this PC; the next list resumes it")
            break
        with _image_lock(image):
            cache = node_cache()
            if cache.path(image.image_id, image.version).exists():
                continue
            if not _has_room(cache, image.size):
                logger.info("kiosk: auto_sync leaves %s version %d (%d bytes): the image cache has no free room",
                            image.image_id, image.version, image.size)
                continue
            try:
                fetch_image(image.image_id, image.version, image.sha256, image.size, _yield_to_person)
            except _Yielded:
                logger.info("kiosk: auto_sync of %s stops for a desktop started on this PC", image.image_id)
                break
            except TransferError as exc:
                logger.warning("kiosk: auto_sync could not pull %s version %d: %s", image.image_id, image.version,
                               exc)
                if exc.status == 0:
                    break
                continue
            except (CacheFull, OSError) as exc:
                logger.warning("kiosk: auto_sync stops: %s", exc)
                break
        logger.info("kiosk: auto_sync pulled %s version %d", image.image_id, image.version)
        pulled.append(f"{image.image_id}/{image.version}")
    return pulled


def sync_in_background() -> None:
    """``sync_images`` in a thread of its own, unless a pass is under way already (the next list's starts another
    for what it leaves)."""
    if not _syncing.acquire(blocking=False):
        return

    def work() -> None:
        try:
            sync_images()
        except Exception:
            # sync_images handles the failures it expects; anything else must not end the PC's next passes.
            logger.exception("kiosk: auto_sync failed")
        finally:
            _syncing.release()
            close_old_connections()

    threading.Thread(target=work, name="kiosk-auto-sync", daemon=True).start()


def is_kiosk_report(message: Message) -> bool:
    """Whether a report is about a run of this PC's kiosk: a task of the kiosk, or an instance the PC offers as a
    local desktop or runs from the kiosk."""
    if isinstance(message, TaskStatus):
        return message.tid.startswith(TID_PREFIX)
    if isinstance(message, InsStatus):
        catalogue = read_catalogue()
        offered = {desktop.instance_id for desktop in catalogue.desktops} if catalogue else set()
        return message.insid in offered or message.insid in _kiosk_records()
    return False


class LocalRunReports:
    """The reporter of the node's VM watcher on a classroom PC: what it reports of the kiosk's own runs (a desktop
    shut down inside the guest, a desktop taken back after a restart) stays on the PC, since the desktop's record
    on the CLC is shared by every PC; everything else goes up through ``reporter`` (the heartbeat)."""

    def __init__(self, reporter: instances.Reporter) -> None:
        self.reporter = reporter

    def publish(self, message: Message) -> None:
        if not is_kiosk_report(message):
            self.reporter.publish(message)

    def report_now(self, last_command: str = "") -> None:
        self.reporter.report_now(last_command)
