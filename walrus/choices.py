"""Enumerations of walrus's records."""

from django.db import models


class UploadStateChoices(models.TextChoices):
    OPEN = "open", "Open (receiving data)"
    COMPLETE = "complete", "Complete (stored as a version)"


class DiskFormatChoices(models.TextChoices):
    QCOW2 = "qcow2", "QEMU copy-on-write (qcow2)"
    VDI = "vdi", "VirtualBox (vdi)"
    VMDK = "vmdk", "VMware (vmdk)"
    RAW = "raw", "Raw disk"
