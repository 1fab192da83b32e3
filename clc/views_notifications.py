"""The console's Notifications page (issue 17): what alarms said or made the cloud do, for the owner-groups whose
instances the person may read (``clc.services.notifications``), unread first; marking one or all read."""

from __future__ import annotations

from django.contrib import messages
from django.http import Http404
from django.shortcuts import redirect
from django.views.generic import ListView, View

from clc.services.notifications import NotificationNotFound, mark_all_read, mark_read, visible_notifications
from clc.views import AuthorizedMixin
from luhyadb.choices import ResourceTypeChoices as Type


class NotificationListView(AuthorizedMixin, ListView):
    resource_type = Type.INSTANCE
    template_name = "clc/notifications.html"
    paginate_by = 25

    def get_queryset(self):
        return visible_notifications(self.actor)


class NotificationReadView(AuthorizedMixin, View):
    """Mark one notification read on POST (404 unless the person sees it), then back to the list."""

    resource_type = Type.INSTANCE

    def post(self, request, pk: int):
        try:
            mark_read(self.actor, pk)
        except NotificationNotFound as exc:
            raise Http404(str(exc)) from None
        return redirect("clc:notifications")


class NotificationReadAllView(AuthorizedMixin, View):
    """Mark every notification the person sees read on POST."""

    resource_type = Type.INSTANCE

    def post(self, request):
        count = mark_all_read(self.actor)
        messages.success(request, f"{count} notification{'s' * (count != 1)} marked read.")
        return redirect("clc:notifications")
