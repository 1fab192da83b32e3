"""The teacher's class console (``/clc/class/<owner-group>/``): thin adapters over ``clc.services.classroom`` (who may,
what each action does) and ``clc.services.screens`` (the thumbnails). A class the person may not teach is a 404."""

from __future__ import annotations

import logging

from django.conf import settings
from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponse, JsonResponse
from django.shortcuts import redirect
from django.urls import reverse
from django.views import View
from django.views.generic import TemplateView

from clc.services import authz, classroom, portal, screens
from clc.services.portal import console_endpoint
from clc.views import AuthorizedMixin
from luhyadb.choices import ResourceTypeChoices as Type

logger = logging.getLogger(__name__)

# The page's states refresh this often; each screen's thumbnail this often (a snapshot is cached as long).
REFRESH_MS = 3000
SCREEN_MS = screens.THUMBNAIL_SECONDS * 1000


class ClassMixin(AuthorizedMixin):
    """The class console: changing instances somewhere (else 403), then teaching this class (else 404)."""

    resource_type = Type.INSTANCE
    action = "write"

    def group(self):
        try:
            return classroom.class_group(self.actor, self.kwargs["path"])
        except authz.Denied as denied:
            raise Http404(str(denied)) from None

    def rows(self, group) -> list[dict]:
        return [_row(group, desktop) for desktop in classroom.class_desktops(self.actor, group)]

    def watched(self, group, insid: str):
        """A desktop of the class the person may watch (change, as its teacher): else 404, or 403."""
        desktop = classroom.class_desktops(self.actor, group).filter(instance_id=insid).first()
        if desktop is None:
            raise Http404("no such desktop in this class")
        if not authz.may(self.actor, "write", desktop):
            raise PermissionDenied("you may not watch this desktop")
        return desktop


def _row(group, desktop) -> dict:
    endpoint = console_endpoint(desktop)
    return {
        "instance_id": desktop.instance_id,
        "name": desktop.name,
        "state": desktop.state,
        "state_label": desktop.state_text,
        "holder": desktop.assigned_to.username if desktop.assigned_to_id else "",
        "pool": desktop.pool.name if desktop.pool_id else "",
        "persistent": desktop.persistent,
        "screen": reverse("clc:class-screen", args=[group.path, desktop.instance_id])
        if endpoint is not None and endpoint.scheme == "vnc" else "",
    }


class ClassListView(ClassMixin, TemplateView):
    """The classes the person may teach (those with desktops or pools), each linking to its console."""

    template_name = "clc/class/list.html"

    def get_context_data(self, **kwargs):
        return super().get_context_data(**kwargs) | {"classes": classroom.classes(self.actor)}


class ClassConsoleView(ClassMixin, TemplateView):
    """Every desktop of the class with its state, holder and screen; batch actions on all or a selection."""

    template_name = "clc/class/console.html"

    def get_context_data(self, **kwargs):
        group = self.group()
        return super().get_context_data(**kwargs) | {
            "group": group,
            "desktops": self.rows(group),
            "max_message": classroom.MAX_MESSAGE,
            "live": {"status": reverse("clc:class-status", args=[group.path]), "period": REFRESH_MS,
                     "screen_period": SCREEN_MS},
        }


class ClassStatusView(ClassMixin, View):
    """``GET status/``: the class's desktops as JSON, for the page's refresh."""

    def get(self, request, path: str):
        return JsonResponse({"desktops": self.rows(self.group())})


class ClassActionView(ClassMixin, View):
    """``POST act/``: ``action`` (start, stop, reset, message) on the ``selected`` desktops (all when none is
    ticked), ``text`` for a message; what was done is shown as a message on the page."""

    def post(self, request, path: str):
        group = self.group()
        selected = request.POST.getlist("selected") or None
        try:
            outcome = classroom.act(self.actor, group, request.POST.get("action", ""), selected,
                                    request.POST.get("text", ""))
        except classroom.ClassError as exc:
            messages.error(request, f"Nothing done: {exc}")
        else:
            (messages.warning if outcome.skipped else messages.success)(request, outcome.summary().capitalize())
        return redirect("clc:class", path=group.path)


class ClassScreenView(ClassMixin, View):
    """``GET screens/<id>.png``: a thumbnail of a running desktop's screen (204 while it has none)."""

    def get(self, request, path: str, insid: str):
        desktop = self.watched(self.group(), insid)
        try:
            png = screens.thumbnail(desktop)
        except screens.ScreenUnavailable as exc:
            return HttpResponse(status=204, headers={"X-Reason": str(exc)[:200].encode("ascii", "replace").decode()})
        response = HttpResponse(png, content_type="image/png")
        response["Cache-Control"] = f"private, max-age={screens.THUMBNAIL_SECONDS}"
        return response


def _watch_status(actor, desktop) -> dict:
    """The desktop as the watch page shows it: its state and start, and "connect" while its VNC console answers;
    starting and stopping it are the class console's."""
    status = portal.desktop_status(actor, desktop)
    endpoint = console_endpoint(desktop)
    status["actions"] = {"start": False, "stop": False, "connect": endpoint is not None and endpoint.scheme == "vnc"}
    status["notice"] = ""
    return status


class ClassWatchView(ClassMixin, TemplateView):
    """``watch/<id>/``: a student's screen in the browser, to watch only (keys and mouse never reach it)."""

    template_name = "clc/class/watch.html"

    def get_context_data(self, **kwargs):
        group = self.group()
        desktop = self.watched(group, self.kwargs["insid"])
        in_browser = portal.novnc_installed() and bool(settings.EDUCLOUD.console_port)
        return super().get_context_data(**kwargs) | {
            "group": group,
            "desktop": _watch_status(self.actor, desktop),
            "holder": desktop.assigned_to.username if desktop.assigned_to_id else "",
            "in_browser": in_browser,
            "live": {
                "status": reverse("clc:class-watch-status", args=[group.path, desktop.instance_id]),
                "token": reverse("clc:class-watch-token", args=[group.path, desktop.instance_id]),
                "rfb": reverse("portal:novnc", args=["core/rfb.js"]) if in_browser else "",
                "period": REFRESH_MS,
                "view_only": True,
            },
        }


class ClassWatchStatusView(ClassMixin, View):
    """``GET watch/<id>/status/``: the watched desktop as JSON, for the watch page's refresh."""

    def get(self, request, path: str, insid: str):
        return JsonResponse(_watch_status(self.actor, self.watched(self.group(), insid)))


class ClassWatchTokenView(ClassMixin, View):
    """``POST watch/<id>/token/``: a one-time console token that only watches (``portal.issue_console_token``)."""

    def post(self, request, path: str, insid: str):
        desktop = self.watched(self.group(), insid)
        if not settings.EDUCLOUD.console_port:
            return JsonResponse({"detail": "this cloud has no in-browser console (clc.console_port is 0)"}, status=409)
        try:
            token = portal.issue_console_token(self.actor, desktop, watch=True)
        except authz.Denied as denied:
            raise PermissionDenied(str(denied)) from None
        except portal.PortalError as exc:
            return JsonResponse({"detail": str(exc)}, status=exc.status)
        logger.info("class: %s watches %s", self.actor.username, desktop.instance_id)
        return JsonResponse({"token": token, "port": settings.EDUCLOUD.console_port,
                             "path": f"/console/{token}", "expires_seconds": portal.CONSOLE_TOKEN_SECONDS})
