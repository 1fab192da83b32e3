"""Django admin pages for every record of the cloud."""

from django.contrib import admin, messages

from clc.services import logins
from luhyadb.models import (
    Account,
    ClusterNetwork,
    Host,
    Image,
    ImageVersion,
    Instance,
    LoginThrottle,
    OwnerGroup,
    OwnerGroupPermission,
    Server,
    TaskTransaction,
    VMType,
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


@admin.register(ClusterNetwork)
class ClusterNetworkAdmin(admin.ModelAdmin):
    """Shown here, changed only on the console's Networks page (/clc/networks/), where every rule that ties the
    settings together is checked: a change made here would skip those rules."""

    list_display = ("cluster", "kind", "mode", "cc_eip", "cc_internal_ip", "lan_subnet", "dhcp_start", "dhcp_end",
                    "eip_start", "eip_end", "port_low", "port_high", "node_bridge", "updated")
    list_filter = ("kind", "mode")
    search_fields = ("cluster", "cc_eip", "cc_internal_ip")

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


class LockedFilter(admin.SimpleListFilter):
    title = "lock"
    parameter_name = "locked"

    def lookups(self, request, model_admin):
        return (("yes", "locked now"),)

    def queryset(self, request, queryset):
        return logins.locked(queryset) if self.value() == "yes" else queryset


@admin.register(LoginThrottle)
class LoginThrottleAdmin(admin.ModelAdmin):
    """User names and addresses with failed logins, and their locks (``clc.services.logins`` keeps them); the only
    change is *Unlock*, which lifts the lock and forgets the failures."""

    list_display = ("kind", "key", "failures", "last_failure", "locked_until", "locks")
    list_filter = (LockedFilter, "kind")
    search_fields = ("key",)
    actions = ("unlock",)

    @admin.action(description="Unlock (lift the lock and forget the failures)")
    def unlock(self, request, queryset):
        count = logins.unlock(queryset, by=request.user.get_username())
        self.message_user(request, f"{count} unlocked.", messages.SUCCESS)

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False
