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
    free_memory_mb = models.BigIntegerField(default=0)
    free_disk_mb = models.BigIntegerField(default=0)
    last_seen = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=("role", "name"), name="one_cluster_node_per_role_and_name")]
        ordering = ("role", "name")

    def __str__(self) -> str:
        return f"{self.role}:{self.name}"
