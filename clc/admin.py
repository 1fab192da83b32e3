"""Django admin pages of the cloud controller's own concerns: failed logins and their locks."""

from django.contrib import admin, messages

from clc.services import logins
from luhyadb.admin import ReadOnlyAdmin
from luhyadb.models import LoginThrottle


class LockedFilter(admin.SimpleListFilter):
    title = "lock"
    parameter_name = "locked"

    def lookups(self, request, model_admin):
        return (("yes", "locked now"),)

    def queryset(self, request, queryset):
        return logins.locked(queryset) if self.value() == "yes" else queryset


@admin.register(LoginThrottle)
class LoginThrottleAdmin(ReadOnlyAdmin):
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
