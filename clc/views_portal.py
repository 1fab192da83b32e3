"""Pages of the student portal (``/portal/``): thin adapters over ``clc.services.portal``. Every page asks the one
rule (``clc.services.authz``) through ``AuthorizedMixin``: a desktop is looked up among those the person may read
(else 404, so another student's desktop does not exist for them) and the action is checked on it (else 403)."""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.mixins import LoginRequiredMixin
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views import View
from django.views.generic import TemplateView
from django.views.static import serve

from clc.forms import RdpFileForm
from clc.services import apps, authz, pools, portal
from clc.services.instances import InstanceError
from clc.views import AuthorizedMixin
from luhyadb.choices import InstanceKindChoices
from luhyadb.choices import ResourceTypeChoices as Type
from luhyadb.models import DesktopPool, Instance

# Desktops' states and progress refresh this often on the portal's pages.
REFRESH_MS = 2000


class PortalMixin(AuthorizedMixin):
    """A portal page: the rule on instances, a refusal shown as the portal's own 403 page (never a traceback)."""

    resource_type = Type.INSTANCE

    def dispatch(self, request, *args, **kwargs):
        try:
            return super().dispatch(request, *args, **kwargs)
        except PermissionDenied as denied:
            has_account = getattr(self, "actor", authz.NOBODY).is_person
            return render(request, "clc/portal/forbidden.html", {"reason": str(denied), "has_account": has_account},
                          status=403)

    def desktop(self, insid: str, action: str | None = None, *, console: bool = False):
        """The desktop the person may read (else 404) and may ``action`` (else 403); with ``console`` any instance
        whose console the portal's page opens (a virtual server or a wizard's VM too, for an administrator)."""
        kinds = portal.CONSOLE_KINDS if console else (InstanceKindChoices.RVD,)
        # The rule finds the desktop (``authorized``): read on it, or the action alone where a group grants that.
        instances = Instance.objects.filter(kind__in=kinds).select_related("image", "vm_type", "owner_group")
        return self.authorized(instances, action, instance_id=insid)

    def usable_desktop(self, insid: str, *, console: bool = False):
        """``desktop(insid, "execute")``, a desktop the person may not use being a 404 that names it (``desktop``):
        another student's desktop does not exist for them."""
        try:
            return self.desktop(insid, "execute", console=console)
        except Http404:
            raise Http404(f"desktop: you have no desktop {insid}") from None

    def refusal(self, status: int, reason: str):
        """The portal's page saying why a request was refused (``reason`` names the field), with ``status``."""
        return render(self.request, "clc/portal/refused.html", {"reason": reason, "status": status}, status=status)

    def attachment(self, filename: str, content_type: str, text: str) -> HttpResponse:
        response = HttpResponse(text, content_type=content_type)
        response["Content-Disposition"] = f'attachment; filename="{filename}"'
        return response

    def back(self):
        """Where a form goes back to: its ``next`` when it is a page of this site, else the desktop list."""
        target = self.request.POST.get("next", "")
        if url_has_allowed_host_and_scheme(target, allowed_hosts={self.request.get_host()},
                                           require_https=self.request.is_secure()):
            return redirect(target)
        return redirect("portal:desktops")


class DesktopListView(PortalMixin, TemplateView):
    """My desktops: each with its state, Start/Stop, Connect when it runs, and a progress bar while it starts; and
    the desktop pools I may get a desktop from (those I hold one of say so)."""

    template_name = "clc/portal/desktops.html"

    def get_context_data(self, **kwargs):
        rows = [portal.desktop_status(self.actor, desktop) for desktop in portal.desktops(self.actor)]
        held = set(Instance.objects.filter(assigned_to_id=self.actor.user_id, pool__isnull=False)
                   .values_list("pool_id", flat=True))
        return super().get_context_data(**kwargs) | {
            "desktops": rows,
            "pools": [{"pool": pool, "held": pool.pk in held} for pool in pools.usable_pools(self.actor)],
            "data_disks": portal.data_disks(self.actor),
            "live": {"status": reverse("portal:status"), "period": REFRESH_MS},
        }


class DesktopStatusListView(PortalMixin, View):
    """``GET status/``: my desktops as JSON, for the list page's refresh."""

    def get(self, request):
        return JsonResponse({"desktops": [portal.desktop_status(self.actor, desktop)
                                          for desktop in portal.desktops(self.actor)]})


class DesktopStatusView(PortalMixin, View):
    """``GET desktops/<id>/status/``: one desktop as JSON, for its console page's refresh."""

    def get(self, request, insid: str):
        return JsonResponse(portal.desktop_status(self.actor, self.desktop(insid, console=True)))


class DesktopConsoleView(PortalMixin, TemplateView):
    """A desktop's console page: noVNC in the page through the console proxy, the client file, the guest's .rdp file
    when its image serves RDP, its image's published apps, Disconnect, Stop."""

    template_name = "clc/portal/console.html"

    def get_context_data(self, **kwargs):
        desktop = self.desktop(self.kwargs["insid"], console=True)
        novnc = portal.novnc_installed()
        in_browser = novnc and bool(settings.EDUCLOUD.console_port)
        own_page = desktop.kind != InstanceKindChoices.RVD  # an administrator's VM: back to its console page
        username = self.request.user.get_username()
        return super().get_context_data(**kwargs) | {
            "desktop": portal.desktop_status(self.actor, desktop),
            # A non-persistent pool's desktop is handed back when it stops: the page then offers the pool's next one.
            "pool": desktop.pool if desktop.pool_id and not desktop.pool.persistent else None,
            "rdp_form": RdpFileForm(),
            "apps": [{"app": app, "command": apps.seamless_command(desktop, app, username)}
                     for app in desktop.image.apps.all()],
            "back": (desktop.get_absolute_url(), "Back to the instance") if own_page
            else (reverse("portal:desktops"), "Back to my desktops"),
            "novnc_installed": novnc,
            "in_browser": in_browser,
            "live": {
                "status": reverse("portal:desktop-status", args=[desktop.instance_id]),
                "token": reverse("portal:token", args=[desktop.instance_id]),
                "rfb": reverse("portal:novnc", args=["core/rfb.js"]) if in_browser else "",
                "period": REFRESH_MS,
            },
        }


class DesktopStartView(PortalMixin, View):
    """Start on POST; a refusal (busy, no node fits) is shown as a message."""

    action = "execute"

    def post(self, request, insid: str):
        desktop = self.desktop(insid)
        try:
            portal.start_desktop(desktop)
        except InstanceError as exc:
            messages.error(request, f"{desktop.name} was not started: {exc}")
        else:
            messages.success(request, f"{desktop.name} is starting; it can be used once it runs.")
        return self.back()


class PoolClaimView(PortalMixin, View):
    """``POST pools/<id>/claim/``: a desktop of the pool for me (mine if I hold one), started if it was not; then its
    page, which shows how far it has started and connects once it runs. A full pool, or a start refused, is shown
    as a message on my desktops."""

    resource_type = Type.POOL
    action = "execute"

    def post(self, request, pool_id: str):
        pool = self.authorized(DesktopPool.objects.select_related("image", "vm_type", "owner_group"),
                               pool_id=pool_id)
        try:
            claim = pools.claim_desktop(self.actor, pool, request.user)
        except pools.PoolError as exc:
            messages.error(request, str(exc))
            return redirect("portal:desktops")
        except InstanceError as exc:
            messages.error(request, f"Your desktop of {pool.name} was not started: {exc}")
            return redirect("portal:desktops")
        if claim.started:
            messages.success(request, f"{claim.desktop.name} is starting; it connects once it runs.")
        return redirect("portal:desktop", insid=claim.desktop.instance_id)


class DesktopStopView(PortalMixin, View):
    """Stop on POST (the guest is asked to shut down, then switched off)."""

    action = "execute"

    def post(self, request, insid: str):
        desktop = self.desktop(insid)
        try:
            portal.stop_desktop(desktop)
        except InstanceError as exc:
            messages.error(request, f"{desktop.name} was not stopped: {exc}")
        else:
            messages.success(request, f"{desktop.name} is stopping.")
        return self.back()


class ConsoleTokenView(PortalMixin, View):
    """``POST desktops/<id>/token/``: a one-time console token (JSON) and where the console proxy listens."""

    action = "execute"

    def post(self, request, insid: str):
        desktop = self.desktop(insid, console=True)
        if not settings.EDUCLOUD.console_port:
            return JsonResponse({"detail": "this cloud has no in-browser console (clc.console_port is 0)"}, status=409)
        try:
            token = portal.issue_console_token(self.actor, desktop)
        except authz.Denied as denied:
            raise PermissionDenied(str(denied)) from None
        except portal.PortalError as exc:
            return JsonResponse({"detail": str(exc)}, status=exc.status)
        return JsonResponse({"token": token, "port": settings.EDUCLOUD.console_port,
                             "path": f"/console/{token}", "expires_seconds": portal.CONSOLE_TOKEN_SECONDS})


class ClientFileView(PortalMixin, View):
    """``GET desktops/<id>/client/``: the ``.vnc`` (or ``.rdp``) file for a native client of the running desktop;
    it carries the run's password, so it is for who may use the desktop (execute), as the in-browser console is."""

    action = "execute"

    def get(self, request, insid: str):
        desktop = self.desktop(insid, console=True)
        try:
            filename, content_type, text = portal.client_file(desktop)
        except portal.PortalError as exc:
            messages.error(request, str(exc))
            return redirect("portal:desktop", insid=insid)
        return self.attachment(filename, content_type, text)


class RdpFileView(PortalMixin, View):
    """``GET desktops/<id>/rdp/?screen=full|<w>x<h>``: the ``.rdp`` file of the guest's own Remote Desktop (its
    forwarded 3389) for the person's login, for who may use the desktop. A desktop whose image serves no RDP, or that
    does not run, goes back to its page with a message saying so (its console there is VNC); a desktop the person
    may not use is a 404 naming it, a screen the form does not offer a 400 naming ``screen``."""

    action = "execute"

    def get(self, request, insid: str):
        try:
            desktop = self.usable_desktop(insid, console=True)
        except Http404 as missing:
            return self.refusal(404, str(missing))
        form = RdpFileForm(request.GET)
        if not form.is_valid():
            return self.refusal(400, "; ".join(f"{field}: {' '.join(errors)}" for field, errors in form.errors.items()))
        try:
            file = portal.rdp_file(desktop, request.user.get_username(), portal.SCREENS[form.cleaned_data["screen"]])
        except portal.PortalError as exc:
            messages.warning(request, str(exc))
            return redirect("portal:desktop", insid=insid)
        return self.attachment(*file)


class AppListView(PortalMixin, TemplateView):
    """``GET apps/``: the apps published by the images of my pools and desktops, by class, each with Open (my
    desktop of the pool, or my desktop, started if need be; then its page offers the app's files)."""

    template_name = "clc/portal/apps.html"

    def get_context_data(self, **kwargs):
        return super().get_context_data(**kwargs) | {"groups": apps.published_apps(self.actor)}


class AppOpenMixin(PortalMixin):
    """Open a published app: the desktop it runs on, then that desktop's page, where the app's RemoteApp file and
    command line are once it runs. An app its image does not publish is a 404 naming ``app``; a full pool or a
    refused start is a message on the apps page."""

    action = "execute"

    def open(self, app_id: int, *, pool: DesktopPool | None = None, desktop: Instance | None = None):
        try:
            app = apps.app_of(pool or desktop, app_id)
            opened = apps.open_app(self.actor, app, self.request.user, pool=pool, desktop=desktop)
        except apps.AppError as exc:
            return self.refusal(exc.status, f"{exc.field}: {exc}")
        except authz.Denied as denied:
            raise PermissionDenied(str(denied)) from None
        except (pools.PoolError, InstanceError) as exc:
            messages.error(self.request, f"{app.name} was not opened: {exc}")
            return redirect("portal:apps")
        messages.success(self.request, f"{app.name} opens on {opened.name}: its files are below once it runs.")
        return redirect(f"{reverse('portal:desktop', args=[opened.instance_id])}#app-{app.pk}")


class PoolAppOpenView(AppOpenMixin, View):
    """``POST pools/<id>/apps/<app>/open/``: my desktop of the pool (``claim_desktop``: mine, a free one or a new
    one, started) for the app; a pool I may not use is a 404 naming it."""

    resource_type = Type.POOL

    def post(self, request, pool_id: str, app_id: int):
        try:
            pool = self.authorized(DesktopPool.objects.select_related("image", "vm_type", "owner_group"),
                                   pool_id=pool_id)
        except Http404:
            return self.refusal(404, f"pool: there is no pool {pool_id} you may get a desktop from")
        return self.open(app_id, pool=pool)


class DesktopAppOpenView(AppOpenMixin, View):
    """``POST desktops/<id>/apps/<app>/open/``: my desktop, started if it was not, for the app."""

    def post(self, request, insid: str, app_id: int):
        try:
            desktop = self.usable_desktop(insid)
        except Http404 as missing:
            return self.refusal(404, str(missing))
        return self.open(app_id, desktop=desktop)


class AppFileView(PortalMixin, View):
    """``GET desktops/<id>/apps/<app>/rdp/``: the app's RemoteApp ``.rdp`` file on my running desktop; a desktop I
    may not use is a 404 naming it, an app its image does not publish a 404 naming ``app``."""

    action = "execute"

    def get(self, request, insid: str, app_id: int):
        try:
            desktop = self.usable_desktop(insid)
            app = apps.app_of(desktop, app_id)
        except Http404 as missing:
            return self.refusal(404, str(missing))
        except apps.AppError as exc:
            return self.refusal(exc.status, f"{exc.field}: {exc}")
        try:
            file = portal.rdp_file(desktop, request.user.get_username(), app=app)
        except portal.PortalError as exc:
            messages.warning(request, str(exc))
            return redirect("portal:desktop", insid=insid)
        return self.attachment(*file)


class NoVNCFileView(LoginRequiredMixin, View):
    """noVNC's modules from Debian's package (``core/`` and ``vendor/`` only; 404 when it is not installed)."""

    def get(self, request, path: str):
        if portal.novnc_file(path) is None:
            raise Http404("no such noVNC file")
        return serve(request, path, document_root=str(portal.NOVNC_DIR))
