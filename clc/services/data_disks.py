"""Personal data disks (issue 16): a person's own volume in a cluster (``Volume.personal``, ``holder``), attached to
whichever remote desktop they get there, so their files outlive a non-persistent desktop whose disk is made again
from the image at each run.

A desktop pool with ``data_disk_mb`` above 0, or a remote desktop (RVD) of its own with ``data_disk_mb`` above 0,
gives the person it is assigned to their data disk: made on first use (empty, that many MiB, on the SC of the
cluster the desktop runs in, owned by the pool's or desktop's owner-group, named "Data disk of <username>") and
recorded on the desktop before its run, so the run carries it (``clc.services.volumes.volumes_of_run``); a desktop
that runs already gets it by ``attach_volume``. One per person and cluster: between two claims of the same
person at once, the conditional unique constraint decides where the database enforces it (SQLite, PostgreSQL), the
loser taking the winner's volume (its own file deleted again); on MariaDB, which does not, the first to hold the
person's row makes it and the other finds it. A pool's desktop given back releases it (``clc.services.pools``); a
reset (the desktop's disk made again) never touches it, and it is deleted only by someone deleting the volume.

What cannot be done is never a reason not to start the desktop: the caller gets why (no storage controller, no
room, the disk in use on another desktop) and puts it in the desktop's message.
"""

from __future__ import annotations

import logging

from django.contrib.auth import get_user_model
from django.db import IntegrityError, connection, transaction

from clc.services.volumes import MIB, VolumeError, attach_volume, create_volume, storage_controllers
from luhyadb.choices import InstanceKindChoices, VolumeStateChoices
from luhyadb.models import Instance, Server, Volume

logger = logging.getLogger(__name__)


def wanted_mb(instance: Instance) -> int:
    """MiB of the data disk the instance's person gets with it (0: none): its pool's setting for a pool's desktop,
    its own for a remote desktop of its own; only a remote desktop assigned to someone gets one."""
    if instance.kind != InstanceKindChoices.RVD or instance.assigned_to_id is None:
        return 0
    if instance.pool_id is not None:
        return instance.pool.data_disk_mb
    return instance.data_disk_mb


def _cluster_for(instance: Instance) -> str:
    """The cluster the desktop's data disk is kept in: where it ran (its disk and network are there), its pinned
    node's, where the person's data disk is already, else the cluster of the storage controller heard last ("" for
    none online)."""
    if instance.cluster:
        return instance.cluster
    if instance.pinned_node:
        return Server.objects.filter(role="nc", name=instance.pinned_node).values_list("cluster", flat=True).first() \
            or ""
    kept = Volume.objects.filter(personal=True, holder_id=instance.assigned_to_id).values_list("cluster", flat=True)
    if kept:
        return kept[0]
    servers = storage_controllers()
    return servers[0].cluster if servers else ""


def personal_volume(instance: Instance, size_mb: int) -> Volume:
    """The data disk of the desktop's person in the desktop's cluster, made now (empty, ``size_mb`` MiB) if they
    have none there yet. VolumeError (400 naming ``cluster`` when no SC is online there, no room, 503...)."""
    person = instance.assigned_to
    cluster = _cluster_for(instance)
    if not cluster:
        raise VolumeError(400, "no storage controller is online in the cloud; see the system status page", "cluster")
    kept = Volume.objects.filter(personal=True, holder=person, cluster=cluster)
    if kept.exists():
        return kept.get()
    owner_group = instance.pool.owner_group if instance.pool_id is not None else instance.owner_group

    def make() -> Volume:
        try:
            return create_volume(name=f"Data disk of {person.get_username()}", owner_group=owner_group,
                                 size=size_mb * MIB, cluster=cluster, holder=person)
        except IntegrityError:  # made meanwhile by another claim of theirs: that one is theirs
            return kept.get()

    if connection.features.supports_partial_indexes:  # the conditional unique constraint decides
        volume = make()
    else:
        # MariaDB does not enforce that constraint: one making at a time per person, their row held meanwhile.
        # (Not on SQLite: a transaction that read holds the whole database, and the SC may be writing to it.)
        with transaction.atomic():
            get_user_model().objects.select_for_update().filter(pk=person.pk).exists()
            if kept.exists():
                return kept.get()
            volume = make()
    logger.info("data disks: %s made for %s in cluster %s", volume.volume_id, person.get_username(), cluster)
    return volume


def _problem(instance: Instance, volume: Volume) -> str:
    where = f" on {volume.instance.name} ({volume.instance.instance_id})" if volume.instance_id else ""
    return (f"the data disk {volume.volume_id} of {instance.assigned_to.get_username()} is {volume.state}{where}: "
            "not attached to this desktop")


def provide_data_disk(instance: Instance) -> str:
    """Before a run of the desktop: record its person's data disk on it (made on first use), so the run carries it.
    Returns why it could not ("" when it is there, or when the desktop gets none)."""
    size_mb = wanted_mb(instance)
    if not size_mb:
        return ""
    try:
        volume = personal_volume(instance, size_mb)
    except VolumeError as exc:
        return f"the data disk could not be made: {exc}"
    if volume.instance_id == instance.pk:
        return ""
    if volume.state != VolumeStateChoices.AVAILABLE or volume.instance_id is not None:
        return _problem(instance, volume)
    # Conditional: another desktop of theirs starting at the same moment may take it first.
    if not Volume.objects.filter(pk=volume.pk, state=VolumeStateChoices.AVAILABLE, instance__isnull=True).update(
            state=VolumeStateChoices.IN_USE, instance=instance, device=""):
        volume.refresh_from_db()
        return _problem(instance, volume)
    logger.info("data disks: %s goes with the run of %s", volume.volume_id, instance.instance_id)
    return ""


def give_data_disk(instance: Instance) -> str:
    """For a desktop handed out while it runs already: attach its person's data disk (made on first use) now.
    Returns why it could not ("" when it is attached or on its way, or when the desktop gets none)."""
    size_mb = wanted_mb(instance)
    if not size_mb:
        return ""
    try:
        volume = personal_volume(instance, size_mb)
        if volume.instance_id == instance.pk:
            return ""
        attach_volume(volume, instance)
    except VolumeError as exc:
        return f"the data disk was not attached: {exc}"
    return ""
