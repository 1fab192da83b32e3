"""Admin page of the node controller's command log."""

from django.contrib import admin

from nc.models import CommandRecord


@admin.register(CommandRecord)
class CommandRecordAdmin(admin.ModelAdmin):
    list_display = ("op", "key", "msg_id", "received_at", "done_at")
    list_filter = ("op",)
