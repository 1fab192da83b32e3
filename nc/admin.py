"""Admin pages of the node controller's tables: its command log, and read-only its instances, which only the node's
services change (their disks and VMs follow those rows)."""

from django.contrib import admin

from luhyadb.admin import ReadOnlyAdmin
from nc.models import CommandRecord, NodeInstance, NodeVolume


@admin.register(CommandRecord)
class CommandRecordAdmin(admin.ModelAdmin):
    list_display = ("op", "key", "msg_id", "received_at", "done_at")
    list_filter = ("op",)


@admin.register(NodeInstance)
class NodeInstanceAdmin(ReadOnlyAdmin):
    list_display = ("instance_id", "state", "persistent", "guest_ip", "answering", "booted_at", "seq", "updated")
    list_filter = ("state", "persistent", "answering")
    search_fields = ("instance_id", "tid", "guest_ip")


@admin.register(NodeVolume)
class NodeVolumeAdmin(ReadOnlyAdmin):
    # Not the target: it holds the volume's CHAP secret.
    list_display = ("volume_id", "instance", "device", "serial", "attached_at")
    fields = ("volume_id", "instance", "device", "serial", "attached_at")
    search_fields = ("volume_id", "instance__instance_id")
