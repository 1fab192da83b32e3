"""Django admin pages for every record of the cloud."""

from django.contrib import admin

from luhyadb.models import (
    Account,
    ClusterNetwork,
    DesktopPool,
    Host,
    HostCredential,
    Image,
    ImageApp,
    ImageVersion,
    Instance,
    JoinToken,
    Lesson,
    Notification,
    OwnerGroup,
    OwnerGroupPermission,
    Server,
    Snapshot,
    TaskTransaction,
    VMType,
    Volume,
)


class OwnerGroupPermissionInline(admin.TabularInline):
    model = OwnerGroupPermission
    extra = 0


@admin.register(OwnerGroup)
class OwnerGroupAdmin(admin.ModelAdmin):
    list_display = ("name", "path", "description")
    search_fields = ("name", "path")
    inlines = (OwnerGroupPermissionInline,)


@admin.register(Account)
class AccountAdmin(admin.ModelAdmin):
    """Shown here; made and changed on the console's Accounts page (/clc/accounts/), which keeps anyone from giving a
    role above their own or an owner-group outside their authority."""

    list_display = ("user", "role", "owner_group")
    list_filter = ("role",)
    search_fields = ("user__username", "user__first_name", "user__last_name", "user__email", "owner_group__path")
    list_select_related = ("user", "owner_group")
    autocomplete_fields = ("owner_group",)


@admin.register(Server)
class ServerAdmin(admin.ModelAdmin):
    list_display = ("name", "role", "ip", "cluster", "state", "last_seen", "cpus", "memory_mb", "free_memory_mb",
                    "disk_mb", "free_disk_mb")
    list_filter = ("role", "state", "cluster")
    search_fields = ("name", "ip", "mac")


@admin.register(Host)
class HostAdmin(admin.ModelAdmin):
    list_display = ("name", "mac", "ip", "cluster", "location", "owner_group", "state", "last_seen")
    list_filter = ("state", "cluster", "auto_sync", "offline_enabled", "is_pad")
    search_fields = ("name", "mac", "ip", "location")


class ImageVersionInline(admin.TabularInline):
    model = ImageVersion
    extra = 0
    readonly_fields = ("number", "label", "size_bytes", "sha256", "format", "created")
    can_delete = False


@admin.register(Image)
class ImageAdmin(admin.ModelAdmin):
    inlines = (ImageVersionInline,)
    list_display = ("name", "image_id", "version", "os_type", "arch", "usage", "owner_group", "size_bytes", "pub_date")
    list_filter = ("os_type", "usage", "arch")
    search_fields = ("name", "image_id", "description")


@admin.register(Instance)
class InstanceAdmin(admin.ModelAdmin):
    list_display = ("name", "instance_id", "kind", "image", "vm_type", "owner_group", "state", "cluster", "node")
    list_filter = ("kind", "state", "persistent")
    search_fields = ("name", "instance_id")


@admin.register(TaskTransaction)
class TaskTransactionAdmin(admin.ModelAdmin):
    list_display = ("tid", "phase", "state", "progress", "vmstatus", "failed", "done", "ccip", "ncip", "updated")
    list_filter = ("phase", "failed", "done")
    search_fields = ("tid", "user")


@admin.register(VMType)
class VMTypeAdmin(admin.ModelAdmin):
    list_display = ("name", "cpus", "memory_mb", "disk_gb")


class ReadOnlyAdmin(admin.ModelAdmin):
    """Records changed only through the console, where the rules of who may change them are asked."""

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(ClusterNetwork)
class ClusterNetworkAdmin(ReadOnlyAdmin):
    """Shown here, changed only on the console's Networks page (/clc/networks/), where every rule that ties the
    settings together is checked: a change made here would skip those rules."""

    list_display = ("cluster", "kind", "mode", "cc_eip", "cc_internal_ip", "lan_subnet", "dhcp_start", "dhcp_end",
                    "eip_start", "eip_end", "port_low", "port_high", "node_bridge", "updated")
    list_filter = ("kind", "mode")
    search_fields = ("cluster", "cc_eip", "cc_internal_ip")


@admin.register(HostCredential)
class HostCredentialAdmin(ReadOnlyAdmin):
    """Hosts' keys (approve, reject and revoke on the console's Keys page, docs/keys.md)."""

    list_display = ("name", "kind", "roles", "cluster", "mac", "fingerprint", "state", "owner_group", "requested_at",
                    "approved_by", "revoked_by")
    list_filter = ("state", "kind", "cluster")
    search_fields = ("name", "mac", "fingerprint")


@admin.register(JoinToken)
class JoinTokenAdmin(ReadOnlyAdmin):
    """Join tokens, without their secret (only its sha256 is kept; issue and withdraw them on the console)."""

    list_display = ("label", "kind", "roles", "cluster", "owner_group", "uses_left", "expires", "created_by")
    list_filter = ("kind", "cluster")
    exclude = ("digest",)


class LessonInline(admin.TabularInline):
    model = Lesson
    extra = 0
    fields = ("lesson_id", "name", "weekdays", "starts", "ends", "prestart_minutes")
    readonly_fields = fields
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(DesktopPool)
class DesktopPoolAdmin(ReadOnlyAdmin):
    """Read-only: a pool's settings are checked together (min ready within its size, an image of its owner-group) by
    ``clc.services.pools``, which the console's and the API's forms go through."""

    list_display = ("name", "pool_id", "image", "image_version", "vm_type", "owner_group", "min_ready", "max_size",
                    "persistent", "data_disk_mb", "updated")
    list_filter = ("persistent", "owner_group")
    search_fields = ("name", "pool_id", "image__name", "owner_group__path")
    inlines = (LessonInline,)


@admin.register(Lesson)
class LessonAdmin(ReadOnlyAdmin):
    """Read-only: lessons of one pool must not overlap, which ``clc.services.lessons`` checks."""

    list_display = ("name", "lesson_id", "pool", "weekdays", "starts", "ends", "prestart_minutes")
    list_filter = ("pool",)
    search_fields = ("name", "lesson_id", "pool__name", "pool__pool_id")


@admin.register(ImageApp)
class ImageAppAdmin(admin.ModelAdmin):
    """Published apps (RemoteApp) of images; also changed on each image's Edit page of the console."""

    list_display = ("name", "image", "program", "icon")
    search_fields = ("name", "program", "image__image_id", "image__name")
    list_select_related = ("image",)


class SnapshotInline(admin.TabularInline):
    model = Snapshot
    extra = 0
    fields = ("snapshot_id", "size_bytes", "state", "created")
    readonly_fields = fields
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Volume)
class VolumeAdmin(ReadOnlyAdmin):
    """Read-only: a volume is made, changed and deleted through ``clc.services.volumes``, which asks its storage
    controller (the keeper of its file) first; a record changed here would no longer match it."""

    list_display = ("name", "volume_id", "owner_group", "size_bytes", "cluster", "sc", "state", "progress", "source",
                    "instance", "device", "personal", "holder", "updated")
    list_filter = ("state", "source", "cluster", "personal")
    search_fields = ("name", "volume_id", "owner_group__path", "sc", "holder__username")
    inlines = (SnapshotInline,)


@admin.register(Snapshot)
class SnapshotAdmin(ReadOnlyAdmin):
    """Read-only, as its volume (``clc.services.volumes``)."""

    list_display = ("snapshot_id", "volume", "owner_group", "size_bytes", "state", "created")
    list_filter = ("state",)
    search_fields = ("snapshot_id", "volume__volume_id", "volume__name", "owner_group__path")


@admin.register(Notification)
class NotificationAdmin(ReadOnlyAdmin):
    """Read-only: what the cloud told people (issue 17), written by ``clc.services.alarm_actions`` and marked read
    on the console's Notifications page, where the owner-group rule decides who sees which."""

    list_display = ("time", "level", "title", "instance_id", "owner_group", "alarm", "action", "read")
    list_filter = ("level", "action", "read")
    search_fields = ("title", "message", "instance_id", "owner_group", "alarm")
