"""The storage controller's own records: its volumes, their snapshots and their iSCSI exports. From them it
re-derives everything after a restart: the files it keeps and the targets its tgtd must serve."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db import models

from luhyaapi.ids import InvalidId, validate_id
from sc.choices import VolumeSourceChoices, VolumeStateChoices


def _as_django_error(value: str, kind: str) -> None:
    try:
        validate_id(value, kind)
    except InvalidId as exc:
        raise ValidationError(str(exc)) from None


def validate_volume_id(value: str) -> None:
    _as_django_error(value, "volume")


def validate_snapshot_id(value: str) -> None:
    _as_django_error(value, "snapshot")


class Volume(models.Model):
    """A volume: the raw sparse file ``<data_dir>/sc/volumes/<volume_id>.raw`` of ``size`` bytes (whole MiB).
    ``creating`` while its file is written (``progress`` percent; a record left so by a crash is removed with its
    partial file at the next start), ``failed`` with the ``error`` when an image could not be made into it (it keeps
    nothing but the record, until deleted); its size counts against the SC's capacity from the moment it is
    recorded."""

    volume_id = models.CharField(max_length=12, unique=True, validators=[validate_volume_id])
    size = models.BigIntegerField(help_text="bytes (a whole number of MiB)")
    state = models.CharField(max_length=10, choices=VolumeStateChoices.choices, default=VolumeStateChoices.CREATING)
    source = models.CharField(max_length=10, choices=VolumeSourceChoices.choices, default=VolumeSourceChoices.EMPTY)
    source_id = models.CharField(max_length=24, blank=True,
                                 help_text="the snapshot it was made from, or the image version (img-…/<n>)")
    progress = models.PositiveSmallIntegerField(default=100, help_text="percent made, while creating")
    error = models.TextField(blank=True, help_text="why making it failed")
    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ("volume_id",)

    def __str__(self) -> str:
        return f"{self.volume_id} ({self.size // 2**20} MiB, {self.state})"


class Snapshot(models.Model):
    """A point-in-time copy of a volume, ``<data_dir>/sc/snapshots/<snapshot_id>.raw`` (a sparse or reflinked copy
    of the volume's file). A volume with snapshots cannot be deleted (PROTECT)."""

    snapshot_id = models.CharField(max_length=12, unique=True, validators=[validate_snapshot_id])
    volume = models.ForeignKey(Volume, on_delete=models.PROTECT, related_name="snapshots")
    size = models.BigIntegerField(help_text="bytes: the volume's size when it was taken")
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ("volume", "created", "snapshot_id")

    def __str__(self) -> str:
        return f"{self.snapshot_id} of {self.volume.volume_id}"


class Export(models.Model):
    """A volume exported over iSCSI to one node: tgt target ``tid`` named ``luhyaapi.volumes.target_iqn``, LUN 1 the
    volume's file, its own CHAP account (``chap_user``/``chap_secret``) and an ACL of the node's initiator name only.
    The SC's tgtd is made to match these records at every start (``sc.services.targets.reconcile``)."""

    volume = models.OneToOneField(Volume, on_delete=models.PROTECT, related_name="export")
    node = models.CharField(max_length=63)
    initiator = models.CharField(max_length=140)
    tid = models.PositiveIntegerField(unique=True, help_text="tgt's target number")
    chap_user = models.CharField(max_length=32, unique=True)
    chap_secret = models.CharField(max_length=64)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ("tid",)

    def __str__(self) -> str:
        return f"{self.volume.volume_id} to {self.node} (target {self.tid})"
