"""Volumes attached to this node's instances (issue 16): an SC's iSCSI volume hot-plugged into a running VM through
the hypervisor driver, and recorded (``NodeVolume``) so that the VM gets it again whenever it starts again.

What is attached is always asked of the hypervisor (``attached_volumes``), never taken from the records alone: a VM
found running after a restart of the node controller keeps its disks, and only what it lacks is attached. The
command functions (``volume/attach``, ``volume/detach``) are in ``nc.services.instances``, which holds each instance's
lock; these take the driver and the instance's record.

The CHAP secret is in the command and in the record (the node logs in with it at every start), never in a log line
or an error text: the commands' checks report which field is wrong, not its value.
"""

from __future__ import annotations

import logging
from typing import TypeVar

from django.db import transaction
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from luhyaapi.volumes import (
    RUN_VOLUMES,
    RUN_VOLUMES_MISSING,
    VolumeAttachParas,
    VolumeDetachParas,
    VolumeIdText,
    VolumeTarget,
)
from nc.drivers.base import DriverError, HypervisorDriver
from nc.models import NodeInstance, NodeVolume

logger = logging.getLogger(__name__)



class RunVolumes(BaseModel):
    """The volumes part of an ``instance/run`` command's paras (the CC's ``RUN_VOLUMES`` and
    ``RUN_VOLUMES_MISSING``): every volume the instance has, as targets exported to this node, and those the CC
    could not export, each with the reason."""

    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)

    targets: tuple[VolumeTarget, ...] = Field(alias=RUN_VOLUMES, max_length=16)
    missing: dict[VolumeIdText, str] = Field(default_factory=dict, alias=RUN_VOLUMES_MISSING, max_length=16)


Paras = TypeVar("Paras", VolumeAttachParas, VolumeDetachParas, RunVolumes)


class InvalidVolumeCommand(ValueError):
    """A ``volume/attach`` or ``volume/detach`` command this node will not take: the text names the fields."""


class VolumeRefused(Exception):
    """The node will not attach or detach as asked; the text says why."""


def _parsed(model: type[Paras], paras: dict) -> Paras:
    try:
        return model.model_validate(paras)
    except ValidationError as exc:
        # Field names and messages only: the values may hold a CHAP secret.
        errors = "; ".join(f"{'.'.join(map(str, error['loc'])) or 'paras'}: {error['msg']}" for error in exc.errors())
        raise InvalidVolumeCommand(f"bad volume command: {errors}") from None


def parse_attach(paras: dict) -> VolumeAttachParas:
    """The paras of a ``volume/attach`` command; InvalidVolumeCommand naming the bad fields."""
    return _parsed(VolumeAttachParas, paras)


def parse_detach(paras: dict) -> VolumeDetachParas:
    """The paras of a ``volume/detach`` command; InvalidVolumeCommand naming the bad fields."""
    return _parsed(VolumeDetachParas, paras)


def parse_run_volumes(paras: dict) -> RunVolumes | None:
    """The volumes of an ``instance/run`` command; None for a command without ``RUN_VOLUMES`` (sent before the CC
    sent volumes with its runs: the instance keeps what it has). InvalidVolumeCommand naming the bad fields."""
    if RUN_VOLUMES not in paras:
        return None
    return _parsed(RunVolumes, paras)


def _can_attach(driver: HypervisorDriver) -> None:
    if not driver.capabilities.get("volumes"):
        raise VolumeRefused(f"this node's hypervisor ({driver.name}) cannot attach volumes")


def attach_volume(driver: HypervisorDriver, record: NodeInstance, target: VolumeTarget) -> NodeVolume:
    """Hot-plug ``target`` into the running VM of ``record`` and record it (the attachment's device and serial).
    Attaching a volume attached to this instance already attaches nothing more and answers its record. The caller
    has checked the instance runs. Raises VolumeRefused when the volume is attached to another instance of this node
    or the hypervisor cannot attach volumes, DriverError when the hypervisor fails (nothing is recorded then)."""
    _can_attach(driver)
    other = NodeVolume.objects.filter(volume_id=target.volume_id).exclude(instance=record).first()
    if other is not None:
        raise VolumeRefused(f"{target.volume_id} is attached to {other.instance.instance_id} on this node; "
                            "detach it there first")
    attached = driver.attach_volume(record.instance_id, target)
    row, _ = NodeVolume.objects.update_or_create(
        volume_id=target.volume_id,
        defaults={"instance": record, "target": target.model_dump(mode="json"), "device": attached.device,
                  "serial": attached.serial})
    logger.info("volumes: %s attached to %s as %s", target.volume_id, record.instance_id, attached.device)
    return row


def detach_volume(driver: HypervisorDriver, record: NodeInstance, volume_id: str) -> bool:
    """Unplug ``volume_id`` from the running VM of ``record`` and forget it; returns whether it was recorded on it.
    A volume that is not attached is detached already (nothing happens). The caller has checked the instance runs.
    Raises DriverError when the guest does not let go of the disk (the record stays: it is still attached)."""
    _can_attach(driver)
    driver.detach_volume(record.instance_id, volume_id)
    deleted, _ = NodeVolume.objects.filter(volume_id=volume_id, instance=record).delete()
    logger.info("volumes: %s detached from %s", volume_id, record.instance_id)
    return bool(deleted)


def keep_run_volumes(record: NodeInstance, volumes: RunVolumes) -> None:
    """Make the volumes recorded for ``record`` exactly those its run brings, before its VM starts: a volume
    detached since the last run is not attached again, one whose export changed (it was taken over from another
    node, with a new CHAP secret) is recorded with its new target, one recorded for another instance of this node
    moves to this one (the CLC attached it here last)."""
    wanted = {target.volume_id: target for target in volumes.targets}
    with transaction.atomic():
        gone, _ = NodeVolume.objects.filter(instance=record).exclude(volume_id__in=wanted).delete()
        for volume_id, target in wanted.items():
            row = NodeVolume.objects.select_for_update().filter(volume_id=volume_id).first()
            fields = {"instance": record, "target": target.model_dump(mode="json")}
            if row is not None and row.instance_id == record.pk and row.target == fields["target"]:
                continue
            if row is not None and row.instance_id != record.pk:
                logger.warning("volumes: %s moves from %s to %s, whose run brings it", volume_id,
                               row.instance.instance_id, record.instance_id)
            NodeVolume.objects.update_or_create(volume_id=volume_id, defaults=fields | {"device": "", "serial": ""})
    if gone:
        logger.info("volumes: %d volumes of %s no longer recorded: its run does not bring them", gone,
                    record.instance_id)


def restore_volumes(driver: HypervisorDriver, record: NodeInstance) -> dict[str, str]:
    """Attach to the running VM of ``record`` each volume recorded for it that the hypervisor does not list: after
    the VM started again, or when it was found running after a restart of the node controller. Nothing is
    attached twice. Returns the volumes that could not be attached, each with the reason (the VM runs on without
    them, and a later start tries again)."""
    rows = list(NodeVolume.objects.filter(instance=record))
    if not rows:
        return {}
    if not driver.capabilities.get("volumes"):
        return {row.volume_id: f"this node's hypervisor ({driver.name}) cannot attach volumes" for row in rows}
    try:
        present = {found.volume_id for found in driver.attached_volumes(record.instance_id)}
    except DriverError as exc:
        return {row.volume_id: str(exc) for row in rows}
    failed = {}
    for row in rows:
        if row.volume_id in present:
            continue
        try:
            target = VolumeTarget.model_validate(row.target)
        except ValidationError:
            failed[row.volume_id] = "its recorded iSCSI target is not valid"
            continue
        try:
            attached = driver.attach_volume(record.instance_id, target)
        except DriverError as exc:
            failed[row.volume_id] = str(exc)
            continue
        row.device, row.serial = attached.device, attached.serial
        row.save(update_fields=["device", "serial"])
        logger.info("volumes: %s attached again to %s", row.volume_id, record.instance_id)
    for volume_id, reason in failed.items():
        logger.error("volumes: %s not attached again to %s: %s", volume_id, record.instance_id, reason)
    return failed
