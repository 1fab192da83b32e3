"""Admin page of the cluster controller's node table."""

from django.contrib import admin

from cc.models import ClusterNode


@admin.register(ClusterNode)
class ClusterNodeAdmin(admin.ModelAdmin):
    list_display = ("name", "role", "ip", "mac", "cpus", "memory_mb", "free_memory_mb", "disk_mb", "free_disk_mb",
                    "last_seen")
    list_filter = ("role",)
    search_fields = ("name", "ip", "mac")
