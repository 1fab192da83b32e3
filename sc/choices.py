"""Enumerations of the storage controller's records."""

from django.db import models


class VolumeStateChoices(models.TextChoices):
    CREATING = "creating", "Creating (its file is being written)"
    AVAILABLE = "available", "Available"
    FAILED = "failed", "Failed (see its error; delete it)"


class VolumeSourceChoices(models.TextChoices):
    EMPTY = "empty", "Empty"
    SNAPSHOT = "snapshot", "A snapshot"
    IMAGE = "image", "An image version"
