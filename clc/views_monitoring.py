"""The console's Monitoring page: the alarms the person may see with their state and history (drawn in the browser
from ``/clc/api/1.0/alarms/``, which applies the owner-group rule to each), and for the cloud's administrators the
charts of a server or classroom PC (``?host=<name>``: host metrics are theirs alone, as the metrics API rules)."""

from __future__ import annotations

from django.core.exceptions import PermissionDenied
from django.http import Http404
from django.shortcuts import redirect
from django.views.generic import TemplateView

from clc.services import authz
from clc.views import AuthorizedMixin
from luhyadb.choices import ResourceTypeChoices as Type
from luhyadb.models import Host, Server


def host_names(actor: authz.Actor) -> list[str]:
    """Every machine the person may read that sends host metrics, by the name it sends them under (``HostName``):
    servers of any role (one name for all the roles of a machine) and classroom PCs."""
    servers = authz.readable(actor, Server.objects.all()).values_list("name", flat=True)
    pcs = authz.readable(actor, Host.objects.all()).values_list("name", flat=True)
    return sorted(set(servers) | set(pcs))


class MonitoringView(AuthorizedMixin, TemplateView):
    """Alarms with their states, each with its history and a link to its instance; a host's charts on ``?host=``.
    Opened by who may read instances (alarms are mostly on instances; the API shows each person theirs); students
    go to their desktops, as from the instance list."""

    template_name = "clc/monitoring.html"
    resource_type = Type.INSTANCE

    def get(self, request, *args, **kwargs):
        if authz.uses_portal(self.actor):
            return redirect("portal:desktops")
        return super().get(request, *args, **kwargs)

    def get_context_data(self, **kwargs):
        cloud_admin = authz.may_type(self.actor, "read", Type.SERVER)
        host = self.request.GET.get("host", "")
        hosts = host_names(self.actor) if cloud_admin else []
        if host:
            if not cloud_admin:
                raise PermissionDenied("host metrics are for the cloud's administrators")
            if host not in hosts:
                raise Http404("no such host")
        return super().get_context_data(**kwargs) | {"host": host, "hosts": hosts}
