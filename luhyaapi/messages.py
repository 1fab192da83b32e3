"""Typed, versioned messages of the notes (cmd, taskstatus, nodestatus, hoststatus, insstatus), the watch role's
metrics, and their JSON form.

Every message carries ``type`` (the notes' name), ``version``, a unique ``msg_id`` and ``sent_at`` (epoch seconds).
``decode`` turns bytes from a queue back into the right class and raises ``InvalidMessage`` for anything else.
"""

from __future__ import annotations

import time
import uuid
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, WithJsonSchema

from luhyaapi.metrics import MAX_SAMPLES, MetricSample
from luhyaapi.validators import MAC_RE, NAME_RE, OWNER_PATH_RE, InvalidValue, validate_ip
from luhyaapi.vmspec import ConsolePassword
from luhyaapi.volumes import VolumeRef

Name = Annotated[str, Field(pattern=NAME_RE.pattern)]
Mac = Annotated[str, Field(pattern=r"^$|" + MAC_RE.pattern)]
Role = Literal["clc", "walrus", "cc", "nc", "sc", "watch"]
# What the database's columns hold: a request's numbers are refused beyond them, never overflow when stored.
INT_MAX = 2**31 - 1
BIGINT_MAX = 2**63 - 1
# A network card's own address: the lowest bit of the first byte clear (set, it is a multicast group's).
UNICAST_MAC_PATTERN = r"^[0-9a-f][02468ace](?::[0-9a-f]{2}){5}$"


def _canonical_ip(value: str) -> str:
    try:
        return validate_ip(value)
    except InvalidValue as exc:
        raise ValueError(exc.message) from None


IpAddress = Annotated[str, AfterValidator(_canonical_ip),
                      WithJsonSchema({"type": "string", "anyOf": [{"format": "ipv4"}, {"format": "ipv6"}]})]
Phase = Literal["init", "preparing", "editing", "submitting", "failed"]


class InvalidMessage(ValueError):
    """Bytes that are not a valid eduCloud message; the text says why (it goes into the dead-letter reason)."""


def _new_msg_id() -> str:
    return uuid.uuid4().hex


class Message(BaseModel):
    """Fields every message has."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    version: Literal[1] = 1
    msg_id: str = Field(default_factory=_new_msg_id, pattern=r"^[0-9a-f]{32}$")
    sent_at: float = Field(default_factory=time.time)


class Resources(BaseModel):
    """Amounts of CPU, memory and disk (capacity or free)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    cpus: float = Field(ge=0)
    memory_mb: int = Field(ge=0, le=BIGINT_MAX)
    disk_mb: int = Field(ge=0, le=BIGINT_MAX)


class VmInfo(BaseModel):
    """One VM as a node reports it (the original ``vm_data`` entries)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    insid: str
    state: str
    memory_mb: int = 0
    cpus: int = 0


class Command(Message):
    """A command sent down (clc -> cc -> nc). Idempotent by ``key``: a redelivery must do no harm. ``seq`` tells
    apart the times one op is asked for one task (an instance run, stopped and run again keeps its tid)."""

    type: Literal["cmd"] = "cmd"
    op: str = Field(pattern=r"^[a-z]+(?:/[a-z_]+)*$")
    tid: str = ""
    seq: int = Field(default=0, ge=0)
    paras: dict = Field(default_factory=dict)

    @property
    def key(self) -> str:
        if not self.tid:
            return self.msg_id
        return f"{self.tid}:{self.op}:{self.seq}" if self.seq else f"{self.tid}:{self.op}"


class TaskStatus(Message):
    """Progress of a task (the notes 6.1.3): phase and state, percent done, the VM's status, an error text."""

    type: Literal["taskstatus"] = "taskstatus"
    tid: str = Field(min_length=1, max_length=128)
    phase: Phase
    state: str = Field(max_length=32)
    progress: int = Field(default=0, ge=0, le=100)
    vmstatus: str = ""
    errormsg: str = ""
    failed: bool = False
    done: bool = False
    ccip: str = ""
    ncip: str = ""
    # What a finished task made: a submitted image version (image_id, version, size, sha256, format).
    result: dict[str, str | int] = Field(default_factory=dict)


class NodeStatus(Message):
    """A server's heartbeat (clc, walrus, cc, nc, sc, watch): identity, capacity, free resources, services, VMs."""

    type: Literal["nodestatus"] = "nodestatus"
    role: Role
    name: Name
    ip: str
    mac: Mac = ""
    cluster: Name
    api_url: str = ""
    interval: float = Field(gt=0)
    seq: int = Field(ge=0)
    state: Literal["online", "stopping"] = "online"
    capacity: Resources
    free: Resources
    cpu_usage: float = Field(default=0, ge=0, le=100)
    services: dict[str, str] = Field(default_factory=dict)
    vms: list[VmInfo] = Field(default_factory=list)
    last_command: str = ""


class HostStatus(Message):
    """A classroom PC's heartbeat (LVD host): identity, resources and its runtime options."""

    type: Literal["hoststatus"] = "hoststatus"
    name: Name
    ip: str
    mac: Annotated[str, Field(pattern=MAC_RE.pattern)]
    cluster: Name
    interval: float = Field(gt=0)
    seq: int = Field(ge=0)
    memory_mb: int = Field(default=0, ge=0)
    disk_mb: int = Field(default=0, ge=0)
    state: Literal["online", "stopping"] = "online"


class InsStatus(Message):
    """An instance's state as its node sees it, with where to reach it once it runs."""

    type: Literal["insstatus"] = "insstatus"
    insid: str = Field(pattern=r"^ins-[0-9a-f]{8}$")
    node: Name
    seq: int = Field(default=0, ge=0)
    state: str = Field(max_length=32)
    vmstatus: str = ""
    console: str = Field(default="", max_length=200)
    guest_ip: str = Field(default="", max_length=45)
    access: dict[str, str] = Field(default_factory=dict)
    errormsg: str = ""
    # False with ``running``: the VM runs but its guest showed no sign of being up within the node's time limit.
    answering: bool = True


class MetricsReport(Message):
    """A host's batch of metric samples (issue 17): a node's of its instances and of itself, another role host's of
    itself. ``host`` is the sender's name, so the bus's trust rules can hold the samples to the hosts and instances
    it may speak for; at most ``MAX_SAMPLES`` a message (a bigger batch goes as several)."""

    type: Literal["metrics"] = "metrics"
    host: Name
    samples: tuple[MetricSample, ...] = Field(default=(), max_length=MAX_SAMPLES)


AnyMessage = Annotated[Command | TaskStatus | NodeStatus | HostStatus | InsStatus | MetricsReport,
                       Field(discriminator="type")]
MESSAGE_CLASSES: tuple[type[Message], ...] = (Command, TaskStatus, NodeStatus, HostStatus, InsStatus, MetricsReport)
_ADAPTER: TypeAdapter = TypeAdapter(AnyMessage)


def encode(message: Message) -> bytes:
    """The JSON bytes of a message, as they travel on every bus."""
    return message.model_dump_json().encode()


def decode(body: bytes) -> Message:
    """Parse JSON bytes into the message class named by ``type``; raise InvalidMessage with the reason."""
    try:
        return _ADAPTER.validate_json(body)
    except ValidationError as exc:
        errors = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in exc.errors()[:5])
        raise InvalidMessage(f"invalid message: {errors}") from None


class ServerRegistration(BaseModel):
    """What a server sends to its boss when it starts (REST ``register/server/``); not a bus message."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    role: Role
    name: Name
    ip: IpAddress
    mac: Mac = ""
    cluster: Name
    api_url: str = Field(default="", pattern=r"^$|^https?://[A-Za-z0-9.:\[\]-]+$")
    heartbeat_seconds: float = Field(gt=0)
    capacity: Resources
    # The node controller of a classroom PC (``nc.host_mode``): it runs the PC's own desktops, never the cloud's
    # instances. False when left out, as older nodes send it.
    classroom_pc: bool = False
    # The console a node controller's hypervisor serves (QEMU: VNC, VirtualBox: RDP); VNC when left out, as older
    # nodes (all QEMU) send it.
    console: Literal["vnc", "rdp"] = "vnc"


class HostRegistration(BaseModel):
    """What a classroom PC sends to its CC when it powers on (REST ``register/host/``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: Name
    ip: IpAddress
    mac: Annotated[str, Field(pattern=MAC_RE.pattern)]
    cluster: Name
    heartbeat_seconds: float = Field(gt=0)
    memory_mb: int = Field(default=0, ge=0, le=BIGINT_MAX)
    disk_mb: int = Field(default=0, ge=0, le=BIGINT_MAX)


class EnrolmentRequest(BaseModel):
    """What a host sends when it starts, to have its public key trusted (REST ``enrolments/``, unsigned: it has no
    trusted key yet): a server with the roles it runs (the CLC is the authority and never enrols), or a classroom
    PC (``kind`` pc, its node controller) with its MAC. ``join_token`` enrols it at once; without one an
    administrator approves it. Sent again at every start: the answer for a known key is the same."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: Name
    kind: Literal["server", "pc"]
    roles: Annotated[list[Literal["walrus", "cc", "nc", "sc", "watch"]], Field(min_length=1, max_length=5)]
    cluster: Name
    mac: Mac = ""
    public_key: Annotated[str, Field(pattern=r"^ed25519:[A-Za-z0-9+/]{43}=$")]
    join_token: Annotated[str, Field(pattern=r"^$|^[A-Za-z0-9_-]{20,64}$")] = ""


def _known_command(op: str) -> str:
    from luhyaapi.commands import kind_of  # it sends these messages: imported here, not at the top

    kind_of(op)  # UnknownCommand, a ValueError: refused as the field's error
    return op


class CommandRequest(BaseModel):
    """A command asked for over REST (``nodes/<name>/commands/`` on CLC and CC)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    op: Annotated[str, Field(pattern=r"^[a-z]+(?:/[a-z_]+)*$", max_length=64), AfterValidator(_known_command)]
    tid: str = Field(default="", max_length=128)
    seq: int = Field(default=0, ge=0, le=INT_MAX)
    paras: dict = Field(default_factory=dict)


class ImageRef(BaseModel):
    """One verified file version of an image, as nodes fetch it through their cluster cache."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    image_id: Annotated[str, Field(pattern=r"^img-[0-9a-f]{8}$")]
    version: int = Field(ge=1, le=INT_MAX)
    sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
    size: int = Field(ge=0, le=BIGINT_MAX)


class InstanceRunRequest(BaseModel):
    """What the CLC asks a CC to run (REST ``instances/``): the instance, its image and size; the CC picks the node,
    the ports and the network, and answers where it runs and how to reach it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    insid: Annotated[str, Field(pattern=r"^ins-[0-9a-f]{8}$")]
    tid: str = Field(max_length=128)
    seq: int = Field(ge=0, le=INT_MAX)
    kind: Literal["vs", "rvd", "lvd"]
    image: ImageRef
    os_type: Literal["linux", "windows", "other"] = "linux"
    cpus: int = Field(ge=1, le=64)
    memory_mb: int = Field(ge=32, le=INT_MAX)
    disk_mb: int = Field(default=0, ge=0, le=INT_MAX)
    persistent: bool = False
    mac: Annotated[str, Field(pattern=UNICAST_MAC_PATTERN, description="the guest NIC's MAC: unicast, lower case")]
    services: tuple[Annotated[int, Field(ge=1, le=65535)], ...] = Field(default=(), max_length=8)
    pinned_node: Annotated[str, Field(pattern=r"^$|" + NAME_RE.pattern)] = ""
    boot: bool = Field(default=True, description="False: only prepare the disk (the image wizard's first step)")
    console_password: ConsolePassword = ""
    volumes: tuple[VolumeRef, ...] = Field(
        default=(), max_length=16, description="every volume attached to the instance: the CC exports each to the "
                                               "chosen node and the node attaches them at start")
    network: dict | None = Field(
        default=None, description="the cluster's network settings as the CLC has them (its cc-config form, {} for "
                                  "none), so that the CC needs no call back to the CLC while it places the run")
    owner_group: Annotated[str, Field(pattern=r"^$|" + OWNER_PATH_RE.pattern, max_length=255)] = Field(
        default="", description="the instance's owner-group path, the OwnerGroup dimension of its metrics")
    monitoring: bool = Field(default=True, description="whether its node samples its metrics for the watch role")


class MonitoringSwitch(BaseModel):
    """The paras of the node command ``instance/monitoring``: the CLC switched monitoring of run ``run`` of
    instance ``insid`` to ``monitoring`` at ``at`` (its clock, milliseconds), for the node that runs it to apply at
    once (a later run carries the switch in its own command)."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    insid: Annotated[str, Field(pattern=r"^ins-[0-9a-f]{8}$")]
    run: int = Field(ge=1, le=INT_MAX)
    monitoring: bool
    at: int = Field(ge=0, le=BIGINT_MAX)
