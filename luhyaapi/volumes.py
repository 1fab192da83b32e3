"""What roles say to each other about volumes (issue 16): the iSCSI target a storage controller exports a volume as,
and the names of targets and initiators.

A volume ``vol-0123abcd`` is exported by its SC as the target ``iqn.2026-12.org.educloud:vol-0123abcd`` (LUN 1) on
the SC's iSCSI portal, with a CHAP user and secret of its own, and accepts only the initiator of the node it is
attached to (``iqn.2026-12.org.educloud:node.<node name>``). The CLC asks the SC for the export and hands the
``VolumeTarget`` to the node (through its CC) in the attach command; the node's hypervisor logs in with it.

Everything here may reach a command line (tgtadm, qemu, VBoxManage), so every field is checked on construction.
"""

from __future__ import annotations

import ipaddress
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, field_validator

from luhyaapi.validators import NAME_RE

IQN_PREFIX = "iqn.2026-12.org.educloud"
ISCSI_PORT = 3260
LUN = 1

VolumeIdText = Annotated[str, Field(pattern=r"^vol-[0-9a-f]{8}$")]
SnapshotIdText = Annotated[str, Field(pattern=r"^snp-[0-9a-f]{8}$")]
# An iSCSI qualified name as eduCloud makes them: the prefix, a colon, then lower-case letters, digits, '.', '-'.
Iqn = Annotated[str, Field(pattern=r"^iqn\.2026-12\.org\.educloud:[a-z0-9][a-z0-9.-]{0,100}$")]
# CHAP: tgt and QEMU's libiscsi take printable ASCII; ours are letters and digits only (12 to 64 for the secret, as
# RFC 3720 asks at least 12 bytes of a secret).
ChapUser = Annotated[str, Field(pattern=r"^[A-Za-z0-9]{1,32}$")]
ChapSecret = Annotated[str, Field(pattern=r"^[A-Za-z0-9]{12,64}$", repr=False)]


def target_iqn(volume_id: str) -> str:
    """The iSCSI target name a volume is exported as."""
    return f"{IQN_PREFIX}:{volume_id}"


def initiator_iqn(node: str) -> str:
    """The iSCSI initiator name of a node (its hypervisor logs in with it); node names are lower-case host names."""
    return f"{IQN_PREFIX}:node.{node.lower()}"


class VolumeTarget(BaseModel):
    """How a node reaches one exported volume: the SC's portal (``host``:``port``), the target and LUN, the CHAP
    credentials, and the initiator name the target accepts (the node's)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    volume_id: VolumeIdText
    host: str
    port: int = Field(default=ISCSI_PORT, ge=1, le=65535)
    iqn: Iqn
    lun: int = Field(default=LUN, ge=0, le=255)
    chap_user: ChapUser
    chap_secret: ChapSecret
    initiator: Iqn

    @field_validator("host")
    @classmethod
    def _host(cls, value: str) -> str:
        return str(ipaddress.IPv4Address(value))

    @property
    def portal(self) -> str:
        return f"{self.host}:{self.port}"


InstanceIdText = Annotated[str, Field(pattern=r"^ins-[0-9a-f]{8}$")]
ATTACH_OP = "volume/attach"
DETACH_OP = "volume/detach"


class VolumeAttachParas(BaseModel):
    """The ``paras`` of a ``volume/attach`` command (CC -> the instance's node): hot-plug ``target`` into the running
    instance ``insid``. The command's ``tid`` is the volume operation's own task, which the node reports on."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    insid: InstanceIdText
    target: VolumeTarget


class VolumeDetachParas(BaseModel):
    """The ``paras`` of a ``volume/detach`` command: unplug ``volume_id`` from the running instance ``insid``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    insid: InstanceIdText
    volume_id: VolumeIdText


# The CLC's attach flow (issue 16). The CLC knows which volumes an instance has; its cluster's CC knows which node
# runs it and asks the volume's SC (a storage controller of its cluster, by name) to export the volume to that node,
# then queues ``volume/attach`` for it. Every run of an instance carries all its volumes (``InstanceRunRequest.
# volumes``): the CC exports each to the chosen node (``take_over``: an export to the node the instance ran on last
# time moves) and the run command carries their targets (``RUN_VOLUMES``), so whichever node runs it gets them at
# start; the node keeps exactly those (a volume detached meanwhile is not attached again).
VOLUME_TASK_PATTERN = r"^vol-[0-9a-f]{8}:vol-[0-9a-f]{8}:ins-[0-9a-f]{8}$"
RUN_VOLUMES = "volumes"  # the run command's paras: [VolumeTarget as JSON, ...]
RUN_VOLUMES_MISSING = "volumes_missing"  # {volume_id: why the CC could not export it}; the run goes on without


def volume_task_id(volume_id: str, insid: str) -> str:
    """The tid a node reports an attach or detach of ``volume_id`` to ``insid`` on (``vol:vol:ins``: not an image
    task's, which the CLC's task records take)."""
    return f"{volume_id}:{volume_id}:{insid}"


def parse_volume_task_id(tid: str) -> tuple[str, str] | None:
    """``(volume_id, insid)`` of a volume task's tid, None for any other tid."""
    parts = (tid or "").split(":")
    if len(parts) != 3 or parts[0] != parts[1] or not parts[0].startswith("vol-") or not parts[2].startswith("ins-"):
        return None
    return parts[0], parts[2]


ScName = Annotated[str, Field(pattern=NAME_RE.pattern)]


class VolumeRef(BaseModel):
    """A volume the CLC wants attached to an instance: its id and the name of the storage controller keeping it
    (one of the instance's cluster, as registered with that cluster's CC)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    volume_id: VolumeIdText
    sc: ScName


class VolumeAttachRequest(BaseModel):
    """``POST /cc/api/1.0/instances/<insid>/volumes/`` (signed, from the CLC): export ``volume`` to the node running
    the instance and hot-plug it there; the node reports on ``volume_task_id(volume_id, insid)``. 202 with
    ``{"insid", "volume_id", "node", "tid"}``; 404 for an instance this CC did not place, 409 for one that does not
    run, 400 naming ``sc`` for an SC this cluster does not know, 409/503 with the SC's words when it will not
    export."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    volume: VolumeRef


class VolumeDetachRequest(BaseModel):
    """``POST /cc/api/1.0/instances/<insid>/volumes/<volume_id>/detach/`` (signed, from the CLC): unplug it from the
    running instance; once the node reports it detached the CC ends the SC's export. 202 as attach; 404, 409 and
    400 naming ``sc`` as attach; 400 naming ``volume_id`` when ``volume`` is not the URL's volume."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    volume: VolumeRef
