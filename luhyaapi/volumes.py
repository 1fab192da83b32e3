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
