"""Pages of the admin console for taking servers out and asking machines for their status: drain, undrain and
forget a server, refresh a server or classroom PC, and a cluster's port and address usage; thin adapters over
``clc.services.servers`` and ``clc.services.usage``."""

from __future__ import annotations

from django.contrib import messages
from django.views.generic import TemplateView, View

from clc.services.hosts import MachineError
from clc.services.servers import drain_server, forget_server, refresh_host, refresh_server
from clc.services.usage import cluster_usage
from clc.views import AuthorizedMixin, back_to_list
from clc.views_hosts import HostMixin
from luhyadb.choices import ResourceTypeChoices as Type
from luhyadb.models import Server


def _when(answer: dict) -> str:
    return f"last report {answer['last_seen']}" if answer.get("last_seen") else "no report yet"


class ServerMixin(AuthorizedMixin):
    resource_type = Type.SERVER

    def server(self, role: str, name: str) -> Server:
        return self.authorized(Server.objects.all(), role=role, name=name)


class ServerRefreshView(ServerMixin, View):
    """Ask a node controller for its status now on POST; its Last seen moves when the report arrives."""

    action = "execute"

    def post(self, request, role: str, name: str):
        server = self.server(role, name)
        try:
            answer = refresh_server(server)
        except MachineError as exc:
            messages.error(request, f"{server} was not asked for its status: {exc}")
        else:
            messages.success(request, f"{server} is asked for its status now ({_when(answer)}); reload to see the "
                                      "new one.")
        return back_to_list(request, "clc:servers")


class ServerDrainView(ServerMixin, View):
    """Drain a node controller on POST (``draining=0`` takes it back): no new instances are placed on it."""

    action = "execute"

    def post(self, request, role: str, name: str):
        server = self.server(role, name)
        draining = request.POST.get("draining", "1") != "0"
        try:
            drain_server(server, draining)
        except MachineError as exc:
            messages.error(request, f"{server} was not {'drained' if draining else 'taken back'}: {exc}")
        else:
            messages.success(request, f"{server} is draining: it keeps what it runs and gets nothing new; forget it "
                                      "once it runs nothing." if draining else f"{server} takes instances again.")
        return back_to_list(request, "clc:servers")


class ServerForgetView(ServerMixin, View):
    """Forget a server on POST: its record goes and its key is revoked; a refusal names what still needs it."""

    action = "delete"

    def post(self, request, role: str, name: str):
        server = self.server(role, name)
        try:
            done = forget_server(server, self.actor)
        except MachineError as exc:
            messages.error(request, str(exc))
        else:
            messages.success(request, f"{server} forgotten" + ("; its key is revoked." if done["key_revoked"] else
                                                                "; its host's key stays for its other roles."))
        return back_to_list(request, "clc:servers")


class HostRefreshView(HostMixin, View):
    """Ask a classroom PC for its status now on POST (through the node controller it runs)."""

    action = "execute"

    def post(self, request, mac: str):
        host = self.host(mac)
        try:
            answer = refresh_host(host)
        except MachineError as exc:
            messages.error(request, str(exc))
        else:
            messages.success(request, f"{host.name} is asked for its status now ({_when(answer)}); reload to see the "
                                      "new one.")
        return back_to_list(request, "clc:hosts")


class ClusterUsageView(AuthorizedMixin, TemplateView):
    """Which ports and addresses of a cluster's pools are leased, to which instance, and how many are free, as its
    cluster controller reports it now."""

    template_name = "clc/networks/usage.html"
    resource_type = Type.NETWORK

    def get_context_data(self, **kwargs):
        cluster = self.kwargs["cluster"]
        try:
            usage, problem = cluster_usage(cluster), ""
        except MachineError as exc:
            usage, problem = None, str(exc)
        return super().get_context_data(**kwargs) | {"cluster": cluster, "usage": usage, "problem": problem}
