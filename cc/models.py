"""The cluster controller's own records: the servers of its cluster as it last heard of them."""

from django.db import models


class ClusterNode(models.Model):
    """An NC or SC of this cluster. Re-derivable: rebuilt from registrations and heartbeats after a loss."""

    name = models.CharField(max_length=63)
    role = models.CharField(max_length=10)
    ip = models.GenericIPAddressField()
    mac = models.CharField(max_length=17, blank=True)
    api_url = models.CharField(max_length=200, blank=True)
    cpus = models.FloatField(default=0)
    memory_mb = models.BigIntegerField(default=0)
    disk_mb = models.BigIntegerField(default=0)
    free_cpus = models.FloatField(default=0)
    free_memory_mb = models.BigIntegerField(default=0)
    free_disk_mb = models.BigIntegerField(default=0)
    last_seen = models.DateTimeField(null=True, blank=True)
    classroom_pc = models.BooleanField(
        default=False, help_text="the node controller of a classroom PC (as it registered): never a place for the "
                                 "cloud's instances")
    console_protocol = models.CharField(max_length=3, default="vnc", choices=[("vnc", "VNC"), ("rdp", "RDP")],
                                        help_text="the console its hypervisor serves (as it registered)")
    draining = models.BooleanField(default=False, help_text="being removed (the CLC said so): placed on no more")

    class Meta:
        constraints = [models.UniqueConstraint(fields=("role", "name"), name="one_cluster_node_per_role_and_name")]
        ordering = ("role", "name")

    def __str__(self) -> str:
        return f"{self.role}:{self.name}"


class ClusterInstance(models.Model):
    """An instance placed on a node of this cluster: what it holds (for the scheduler) and how to reach it."""

    instance_id = models.CharField(max_length=12, unique=True)
    node = models.CharField(max_length=63)
    tid = models.CharField(max_length=40)
    seq = models.PositiveIntegerField(default=0)
    kind = models.CharField(max_length=3)
    persistent = models.BooleanField(default=False)
    cpus = models.PositiveSmallIntegerField()
    memory_mb = models.PositiveIntegerField()
    disk_mb = models.PositiveIntegerField(default=0)
    state = models.CharField(max_length=12, default="scheduled")
    run_sent = models.BooleanField(default=False, help_text="the bus took the run's command for the node")
    options = models.JSONField(default=dict, help_text="the runtime options sent to the node")
    access = models.JSONField(default=dict)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ("instance_id",)

    def __str__(self) -> str:
        return f"{self.instance_id} on {self.node} ({self.state})"


class PortLease(models.Model):
    """A port of the cluster's pool held by an instance while it runs; the unique port keeps it from being handed
    out twice, whichever process allocates."""

    port = models.PositiveIntegerField(unique=True)
    instance_id = models.CharField(max_length=12, db_index=True)
    purpose = models.CharField(max_length=20, help_text="console, or tcp/<guest port>")
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ("port",)

    def __str__(self) -> str:
        return f"{self.port} -> {self.instance_id} ({self.purpose})"


class NetworkSettings(models.Model):
    """The CLC's network settings of this cluster as last fetched (``as_cc_config``), so that the cluster keeps its
    network while the CLC cannot be reached."""

    cluster = models.CharField(max_length=63, unique=True)
    settings = models.JSONField()
    fetched = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"network of {self.cluster}"


class AddressLease(models.Model):
    """An address of the cluster's pools held by an instance while it runs: a LAN address reserved for its NIC in
    DHCP, or an elastic IP forwarded to it. The unique address keeps it from being handed out twice."""

    ip = models.GenericIPAddressField(protocol="IPv4", unique=True)
    instance_id = models.CharField(max_length=12, db_index=True)
    pool = models.CharField(max_length=3, help_text="lan or eip")
    mac = models.CharField(max_length=17, blank=True)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ("ip",)

    def __str__(self) -> str:
        return f"{self.ip} -> {self.instance_id} ({self.pool})"


class CommandTask(models.Model):
    """A command this CC sent to one of its nodes, as a Celery task, and its live state as the node's worker reports
    it in Celery's task events (``cc.services.command_tasks``): queued, received, started, progress, retrying, done,
    failed. Written when the broker took the task, then only by the events."""

    STATES = ("queued", "received", "started", "progress", "retrying", "done", "failed")
    FINAL = ("done", "failed")

    task_id = models.CharField(max_length=64, primary_key=True, help_text="the Celery task id, the command's msg_id")
    node = models.CharField(max_length=63, db_index=True)
    op = models.CharField(max_length=32)
    tid = models.CharField(max_length=128, blank=True, db_index=True, help_text="the CLC task it belongs to")
    instance_id = models.CharField(max_length=12, blank=True, help_text="the instance it is about, if any")
    seq = models.PositiveIntegerField(default=0, help_text="the run of the instance it is for")
    state = models.CharField(max_length=10, default="queued", choices=[(state, state) for state in STATES])
    phase = models.CharField(max_length=32, blank=True)
    progress = models.PositiveSmallIntegerField(default=0)
    worker = models.CharField(max_length=128, blank=True, help_text="the Celery worker that took it (nc@<node>)")
    retries = models.PositiveSmallIntegerField(default=0)
    reason = models.TextField(blank=True, help_text="why it failed or is retried")
    queued_at = models.DateTimeField()
    event_at = models.FloatField(default=0, help_text="the time of the newest event folded (the worker's clock)")
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ("-queued_at",)
        indexes = [models.Index(fields=("node", "state"), name="command_task_node_state")]

    def __str__(self) -> str:
        return f"{self.op} {self.task_id} on {self.node} ({self.state})"


class VolumeExport(models.Model):
    """A volume this CC had its storage controller export to a node for an instance (issue 16): which SC to ask to
    end the export once the node reports the volume detached, since that report names only the volume and the
    instance (``luhyaapi.volumes.volume_task_id``). Written by every export the CC asks for (an attach, a run),
    marked ``detaching`` by a detach request (with the SC that request names), removed when the export is ended.
    Losing it loses nothing but that clean-up: the volume's next export moves it (``take_over``) anyway."""

    volume_id = models.CharField(max_length=12, unique=True)
    sc = models.CharField(max_length=63, help_text="the storage controller keeping the volume")
    node = models.CharField(max_length=63, help_text="the node it is exported to")
    instance_id = models.CharField(max_length=12)
    detaching = models.BooleanField(default=False, help_text="a detach was asked: end the export once it is done")
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ("volume_id",)

    def __str__(self) -> str:
        return f"{self.volume_id} of {self.sc} -> {self.node} ({self.instance_id})"
