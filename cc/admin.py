"""Admin pages of the cluster controller's tables: its nodes, and read-only the records it keeps for itself (placed
instances, port and address leases, the network settings it last fetched, the commands sent to its nodes, the
volume exports it asked of its storage controllers), which
only its services change so that leases, placements and the firewall stay in step."""

from django.contrib import admin

from cc.models import (
    AddressLease,
    ClusterInstance,
    ClusterNode,
    CommandTask,
    NetworkSettings,
    PortLease,
    VolumeExport,
)
from luhyadb.admin import ReadOnlyAdmin


@admin.register(ClusterNode)
class ClusterNodeAdmin(admin.ModelAdmin):
    list_display = ("name", "role", "ip", "mac", "cpus", "memory_mb", "free_memory_mb", "disk_mb", "free_disk_mb",
                    "last_seen")
    list_filter = ("role",)
    search_fields = ("name", "ip", "mac")


@admin.register(ClusterInstance)
class ClusterInstanceAdmin(ReadOnlyAdmin):
    list_display = ("instance_id", "node", "kind", "state", "cpus", "memory_mb", "persistent", "seq", "run_sent",
                    "updated")
    list_filter = ("state", "kind", "node")
    search_fields = ("instance_id", "node", "tid")


@admin.register(PortLease)
class PortLeaseAdmin(ReadOnlyAdmin):
    list_display = ("port", "instance_id", "purpose", "created")
    search_fields = ("=port", "instance_id")


@admin.register(AddressLease)
class AddressLeaseAdmin(ReadOnlyAdmin):
    list_display = ("ip", "pool", "instance_id", "mac", "created")
    list_filter = ("pool",)
    search_fields = ("ip", "instance_id", "mac")


@admin.register(NetworkSettings)
class NetworkSettingsAdmin(ReadOnlyAdmin):
    list_display = ("cluster", "fetched")


@admin.register(CommandTask)
class CommandTaskAdmin(ReadOnlyAdmin):
    list_display = ("task_id", "node", "op", "instance_id", "state", "phase", "progress", "retries", "queued_at",
                    "updated")
    list_filter = ("state", "op", "node")
    search_fields = ("task_id", "tid", "instance_id", "node")


@admin.register(VolumeExport)
class VolumeExportAdmin(ReadOnlyAdmin):
    list_display = ("volume_id", "sc", "node", "instance_id", "detaching", "updated")
    list_filter = ("detaching", "sc", "node")
    search_fields = ("volume_id", "instance_id", "node")
