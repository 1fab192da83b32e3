"""Admin pages of the storage controller's volumes, snapshots and exports: read-only (a change must go through the
services, which keep files, tgtd and records together); volumes and snapshots are deleted through the store, and
exports ended through the target service."""

from django.contrib import admin

from luhyadb.admin import ReadOnlyAdmin
from sc.models import Export, Snapshot, Volume
from sc.services.snapshots import delete_snapshot
from sc.services.store import delete_volume
from sc.services.targets import unexport_volume


@admin.register(Volume)
class VolumeAdmin(ReadOnlyAdmin):
    list_display = ("volume_id", "size", "state", "source", "source_id", "created", "updated")
    list_filter = ("state", "source")
    search_fields = ("volume_id", "source_id")

    def has_delete_permission(self, request, obj=None) -> bool:
        # The store refuses to delete an exported volume or one with snapshots (409 in the API): not offered here.
        return obj is None or not (hasattr(obj, "export") or obj.snapshots.exists())

    def delete_model(self, request, obj) -> None:
        delete_volume(obj.volume_id)

    def delete_queryset(self, request, queryset) -> None:
        for volume in queryset:
            delete_volume(volume.volume_id)


@admin.register(Snapshot)
class SnapshotAdmin(ReadOnlyAdmin):
    list_display = ("snapshot_id", "volume", "size", "created")
    search_fields = ("snapshot_id", "volume__volume_id")

    # Deletable, unlike the shared base: the service removes the file with the record (Django's own permission check).
    has_delete_permission = admin.ModelAdmin.has_delete_permission

    def delete_model(self, request, obj) -> None:
        delete_snapshot(obj.snapshot_id)

    def delete_queryset(self, request, queryset) -> None:
        for snapshot in queryset:
            delete_snapshot(snapshot.snapshot_id)


@admin.register(Export)
class ExportAdmin(ReadOnlyAdmin):
    list_display = ("volume", "node", "initiator", "tid", "chap_user", "created")
    search_fields = ("volume__volume_id", "node")
    exclude = ("chap_secret",)

    # Deletable, unlike the shared base: the service ends tgtd's target with the record (Django's own permission
    # check).
    has_delete_permission = admin.ModelAdmin.has_delete_permission

    def delete_model(self, request, obj) -> None:
        unexport_volume(obj.volume.volume_id)

    def delete_queryset(self, request, queryset) -> None:
        for export in queryset:
            unexport_volume(export.volume.volume_id)
