"""Pages of the admin console for machines: classroom PCs (edit, delete) and servers, each woken or powered off
from its row; thin adapters over ``clc.services.hosts``."""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.generic import ListView, UpdateView, View

from clc.services.hosts import (
    EDITABLE_HOST_FIELDS,
    MachineError,
    change_host,
    delete_host,
    find_hosts,
    find_servers,
    nodes_of,
    power_off_host,
    power_off_server,
    server_actions,
    wake_host,
    wake_server,
)
from clc.views import StaffRequiredMixin
from luhyaapi.validators import InvalidValue, validate_mac
from luhyadb.choices import LivenessChoices, RoleChoices
from luhyadb.models import Host, Server


class HostForm(forms.ModelForm):
    """What the administrator sets of a classroom PC; the rest it reports itself."""

    class Meta:
        model = Host
        fields = EDITABLE_HOST_FIELDS

    def clean_location(self) -> str:
        location = self.cleaned_data["location"]
        if any(ord(char) < 32 or char == "\x7f" for char in location):
            raise forms.ValidationError("may not contain control characters")
        return location


def _host(mac: str) -> Host:
    try:
        return get_object_or_404(Host, mac=validate_mac(mac))
    except InvalidValue:
        raise Http404("no such host") from None


def _back(request, default: str):
    """Back to the list page the action was pressed on (its search and page), never to another site."""
    target = request.POST.get("next", "")
    if target and url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()},
                                                  require_https=request.is_secure()):
        return redirect(target)
    return redirect(default)


class HostListView(StaffRequiredMixin, ListView):
    """Classroom PCs with address, cluster, owner-group, state and last seen, and the node controller each runs;
    search by name, MAC, IP, location or cluster, filter by state."""

    template_name = "clc/hosts/list.html"
    paginate_by = 25

    def get_queryset(self):
        state = self.request.GET.get("state", "")
        return find_hosts(self.request.GET.get("q", "").strip(), state if state in LivenessChoices.values else "")

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        nodes = nodes_of(list(context["page_obj"]))
        for host in context["page_obj"]:
            host.node = nodes.get(host.name)
        return context | {"query": self.request.GET.get("q", ""), "state": self.request.GET.get("state", ""),
                          "states": LivenessChoices.choices}


class HostUpdateView(StaffRequiredMixin, UpdateView):
    """Change a PC's location, owner-group and flags; delete it from here too."""

    template_name = "clc/hosts/form.html"
    form_class = HostForm

    def get_object(self, queryset=None):
        return _host(self.kwargs["mac"])

    def form_valid(self, form):
        change_host(self.object, **{field: form.cleaned_data[field] for field in EDITABLE_HOST_FIELDS})
        messages.success(self.request, f"{self.object.name} saved.")
        return redirect("clc:hosts")


class HostDeleteView(StaffRequiredMixin, View):
    """Delete on POST; the PC is added again when it next registers."""

    def post(self, request, mac: str):
        host = _host(mac)
        delete_host(host)
        messages.success(request, f"{host.name} ({host.mac}) deleted; it is added again when it next starts.")
        return redirect("clc:hosts")


def _woken(who: str, sent: dict) -> str:
    return (f"Magic packet for {who} ({sent['mac']}) sent by cluster controller {sent['controller']} to "
            f"{sent['broadcast']}; it shows online once it has started.")


class HostWakeView(StaffRequiredMixin, View):
    """Wake on POST: the PC's cluster controller sends the magic packet; a refusal says why."""

    def post(self, request, mac: str):
        host = _host(mac)
        try:
            sent = wake_host(host)
        except MachineError as exc:
            messages.error(request, f"{host.name} was not woken: {exc}")
        else:
            messages.success(request, _woken(host.name, sent))
        return _back(request, "clc:hosts")


class HostPowerOffView(StaffRequiredMixin, View):
    """Power off on POST, through the node controller the PC runs; a refusal says why."""

    def post(self, request, mac: str):
        host = _host(mac)
        try:
            power_off_host(host)
        except MachineError as exc:
            messages.error(request, f"{host.name} was not powered off: {exc}")
        else:
            messages.success(request, f"{host.name} is asked to power off.")
        return _back(request, "clc:hosts")


class ServerListView(StaffRequiredMixin, ListView):
    """Servers of every role with address, cluster, state and last seen; search by name, MAC, IP or cluster,
    filter by role and state."""

    template_name = "clc/hosts/servers.html"
    paginate_by = 25

    def get_queryset(self):
        role, state = self.request.GET.get("role", ""), self.request.GET.get("state", "")
        return find_servers(self.request.GET.get("q", "").strip(), role if role in RoleChoices.values else "",
                            state if state in LivenessChoices.values else "")

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        for server in context["page_obj"]:
            server.actions = server_actions(server)
        return context | {
            "query": self.request.GET.get("q", ""), "role": self.request.GET.get("role", ""),
            "state": self.request.GET.get("state", ""), "roles": RoleChoices.choices,
            "states": LivenessChoices.choices}


class ServerWakeView(StaffRequiredMixin, View):
    """Wake a node or storage controller on POST, as a PC is woken."""

    def post(self, request, role: str, name: str):
        server = get_object_or_404(Server, role=role, name=name)
        try:
            sent = wake_server(server)
        except MachineError as exc:
            messages.error(request, f"{server} was not woken: {exc}")
        else:
            messages.success(request, _woken(str(server), sent))
        return _back(request, "clc:servers")


class ServerPowerOffView(StaffRequiredMixin, View):
    """Power a node controller's machine off on POST; a refusal says why."""

    def post(self, request, role: str, name: str):
        server = get_object_or_404(Server, role=role, name=name)
        try:
            power_off_server(server)
        except MachineError as exc:
            messages.error(request, f"{server} was not powered off: {exc}")
        else:
            messages.success(request, f"{server} is asked to power off.")
        return _back(request, "clc:servers")
