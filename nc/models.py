"""The node controller's own records."""

from django.db import models


class CommandRecord(models.Model):
    """A command this node has taken, keyed so that a redelivered command is not run twice."""

    key = models.CharField(max_length=200, unique=True)
    op = models.CharField(max_length=64)
    msg_id = models.CharField(max_length=32)
    body = models.JSONField(default=dict, help_text="the command as received, to run it again after a restart")
    received_at = models.DateTimeField(auto_now_add=True)
    done_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ("-received_at",)

    def __str__(self) -> str:
        return f"{self.op} {self.key}"


class NodeInstance(models.Model):
    """An instance this node runs or keeps a disk for: enough to run, stop, re-adopt and clean it up after a
    restart of the node controller."""

    instance_id = models.CharField(max_length=12, unique=True)
    tid = models.CharField(max_length=40)
    seq = models.PositiveIntegerField(default=0)
    image_path = models.CharField(max_length=500, blank=True, help_text="the cached image its disk is a clone of")
    disk_path = models.CharField(max_length=500, blank=True)
    persistent = models.BooleanField(default=False)
    options = models.JSONField(default=dict, help_text="the runtime options of its current run")
    state = models.CharField(max_length=12, default="preparing")
    guest_ip = models.CharField(max_length=45, blank=True)
    booted_at = models.DateTimeField(null=True, blank=True, help_text="when its VM was last started")
    answering = models.BooleanField(default=True, help_text="false: running, but no sign of the guest in time")
    labels = models.JSONField(default=dict, blank=True, help_text="what its run command says of it for its metrics: "
                              "image_id, owner_group, monitoring (nc.services.metrics.InstanceLabels)")
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ("instance_id",)

    def __str__(self) -> str:
        return f"{self.instance_id} ({self.state})"


class NodeVolume(models.Model):
    """A volume attached to one of this node's instances (issue 16): the iSCSI target it came with, so that the
    instance's VM gets it again whenever it starts again (after a stop, or when its QEMU was gone after a restart of
    the node controller). One row per volume: a volume is attached to one instance at a time. The row goes with
    its instance's record (a temporary instance's ends with its run) or with the detach."""

    volume_id = models.CharField(max_length=12, unique=True)
    instance = models.ForeignKey(NodeInstance, on_delete=models.CASCADE, related_name="volumes")
    target = models.JSONField(help_text="the luhyaapi.volumes.VolumeTarget of the attach command, CHAP secret "
                                        "included (the node logs in with it at every start)")
    device = models.CharField(max_length=64, blank=True, help_text="the hypervisor's name of the attachment")
    serial = models.CharField(max_length=20, blank=True, help_text="the disk's serial number as the guest sees it")
    attached_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ("volume_id",)

    def __str__(self) -> str:
        return f"{self.volume_id} on {self.instance.instance_id}"
