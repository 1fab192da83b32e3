"""Admin pages of walrus's uploads and stored versions: read-only, and deletes go through the store so that files
and records stay together."""

from django.contrib import admin

from luhyadb.admin import ReadOnlyAdmin
from walrus.choices import UploadStateChoices
from walrus.models import ImageVersion, Upload
from walrus.services.store import abandon_upload, delete_version


@admin.register(Upload)
class UploadAdmin(ReadOnlyAdmin):
    list_display = ("upload_id", "image_id", "state", "offset", "size", "version", "created", "updated")
    list_filter = ("state",)
    search_fields = ("upload_id", "image_id")

    def has_delete_permission(self, request, obj=None) -> bool:
        # A complete upload is the record of its version's number; only open ones can be abandoned.
        return obj is None or obj.state == UploadStateChoices.OPEN

    def delete_model(self, request, obj) -> None:
        abandon_upload(obj.upload_id)

    def delete_queryset(self, request, queryset) -> None:
        for upload in queryset.filter(state=UploadStateChoices.OPEN):
            abandon_upload(upload.upload_id)


@admin.register(ImageVersion)
class ImageVersionAdmin(ReadOnlyAdmin):
    list_display = ("image_id", "version", "current", "format", "size", "sha256", "created")
    list_filter = ("format", "current")
    search_fields = ("image_id", "sha256")

    # Deletable, unlike the shared base: the store removes the file with the record (Django's own permission check).
    has_delete_permission = admin.ModelAdmin.has_delete_permission

    def delete_model(self, request, obj) -> None:
        delete_version(obj.image_id, obj.version)

    def delete_queryset(self, request, queryset) -> None:
        for stored in queryset:
            delete_version(stored.image_id, stored.version)
