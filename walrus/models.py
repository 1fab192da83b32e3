"""Walrus's own records: uploads in progress and the stored file versions of each image."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db import models

from luhyaapi.ids import InvalidId, validate_id
from walrus.choices import DiskFormatChoices, UploadStateChoices


def _as_django_error(value: str, kind: str) -> None:
    try:
        validate_id(value, kind)
    except InvalidId as exc:
        raise ValidationError(str(exc)) from None


def validate_upload_id(value: str) -> None:
    _as_django_error(value, "upload")


def validate_image_id(value: str) -> None:
    _as_django_error(value, "image")


class Upload(models.Model):
    """An upload of one new version of an image. While ``open``, ``offset`` bytes of its partial file are received
    (the next write must start there); ``complete`` uploads are kept with the ``version`` they became, so a repeated
    ``complete/`` gives the same answer. Abandoned or refused uploads are deleted with their partial file."""

    upload_id = models.CharField(max_length=12, unique=True, validators=[validate_upload_id])
    image_id = models.CharField(max_length=12, db_index=True, validators=[validate_image_id])
    size = models.BigIntegerField(help_text="bytes the whole file will have")
    sha256 = models.CharField(max_length=64, blank=True, help_text="the whole file's sha256, if given at start")
    offset = models.BigIntegerField(default=0, help_text="bytes received so far")
    state = models.CharField(max_length=10, choices=UploadStateChoices.choices, default=UploadStateChoices.OPEN)
    version = models.PositiveIntegerField(null=True, blank=True, help_text="the version it became when complete")
    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ("-created",)

    def __str__(self) -> str:
        return f"{self.upload_id} ({self.image_id}, {self.offset}/{self.size})"


class ImageVersion(models.Model):
    """One stored file of an image, ``<data_dir>/walrus/images/<image_id>/<version>.img``, verified by ``sha256``.
    Exactly one version of an image with versions is ``current``; version numbers are never reused."""

    image_id = models.CharField(max_length=12, validators=[validate_image_id])
    version = models.PositiveIntegerField()
    size = models.BigIntegerField()
    sha256 = models.CharField(max_length=64)
    format = models.CharField(max_length=10, choices=DiskFormatChoices.choices)
    current = models.BooleanField(default=False)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=("image_id", "version"), name="one_stored_file_per_version")]
        ordering = ("image_id", "-version")
        verbose_name = "stored image version"

    def __str__(self) -> str:
        return f"{self.image_id} v{self.version}"
