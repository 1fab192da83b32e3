"""Pages of the admin console for machines: classroom PCs (edit, delete) and servers, each woken or powered off
from its row, with the state of its key (revoked from the row: ``clc.views_keys``); thin adapters over
``clc.services.hosts``."""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.http import Http404
from django.shortcuts import redirect
from django.views.generic import CreateView, ListView, UpdateView, View

from clc.forms import AuthorityForm
from clc.services import enrolment
from clc.services.hosts import (
    EDITABLE_HOST_FIELDS,
    MachineError,
    add_host,
    change_host,
    delete_host,
    find_hosts,
    find_servers,
    nodes_of,
    power_off_host,
    power_off_server,
    running_desktops,
    server_actions,
    validate_location,
    wake_host,
    wake_server,
)
from clc.services.servers import admin_actions, with_reported_times
from clc.views import AuthorizedMixin, back_to_list
from luhyaapi import trust
from luhyaapi.validators import InvalidValue, validate_mac
from luhyadb.choices import LivenessChoices, RoleChoices
from luhyadb.choices import ResourceTypeChoices as Type
from luhyadb.models import Host, Server


class HostForm(AuthorityForm):
    """What the administrator sets of a classroom PC; the rest it reports itself."""

    class Meta:
        model = Host
        fields = EDITABLE_HOST_FIELDS

    def clean_location(self) -> str:
        try:
            return validate_location(self.cleaned_data["location"])
        except InvalidValue as exc:
            raise forms.ValidationError(exc.message) from None


class HostAddForm(HostForm):
    """A PC recorded by hand before it first starts: also its name, MAC, address and cluster."""

    class Meta(HostForm.Meta):
        fields = ("name", "mac", "ip", "cluster", *EDITABLE_HOST_FIELDS)
        help_texts = {"mac": "its network card's address, for wake-on-LAN (like 52:54:00:12:34:56)",
                      "cluster": "the cluster whose controller shares its LAN"}

    def _post_clean(self) -> None:
        pass  # add_host checks the values (and the MAC's uniqueness) and says which field is wrong


class HostMixin(AuthorizedMixin):
    """Pages of one classroom PC, found by its MAC among those the person may see."""

    resource_type = Type.HOST

    def host(self, mac: str) -> Host:
        try:
            mac = validate_mac(mac)
        except InvalidValue:
            raise Http404("no such host") from None
        return self.authorized(Host.objects.select_related("owner_group"), mac=mac)


class HostListView(AuthorizedMixin, ListView):
    """Classroom PCs with address, cluster, owner-group, state and last seen, the node controller each runs and its
    key; search by name, MAC, IP, location or cluster, filter by state."""

    template_name = "clc/hosts/list.html"
    paginate_by = 25
    resource_type = Type.HOST

    def get_queryset(self):
        state = self.request.GET.get("state", "")
        query = self.request.GET.get("q", "").strip()
        return self.readable(find_hosts(query, state if state in LivenessChoices.values else ""))

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        hosts = list(context["page_obj"])
        with_reported_times(hosts)
        nodes, running = nodes_of(hosts), running_desktops(self.actor, hosts)
        keys = enrolment.keys_by_mac(self.actor, [host.mac for host in hosts])
        for host in hosts:
            host.node, host.running, host.key = nodes.get(host.name), running.get(host.name), keys.get(host.mac)
        return context | {"query": self.request.GET.get("q", ""), "state": self.request.GET.get("state", ""),
                          "states": LivenessChoices.choices}


class HostCreateView(AuthorizedMixin, CreateView):
    """Record a classroom PC before it first starts (to wake it, or to give it its owner-group first)."""

    template_name = "clc/hosts/new.html"
    form_class = HostAddForm
    resource_type, action = Type.HOST, "create"

    def form_valid(self, form):
        if not self.may_create_in(form, self.resource_type):
            return self.form_invalid(form)
        try:
            host = add_host(**form.cleaned_data)
        except InvalidValue as exc:
            form.add_error(exc.field, exc.message)
            return self.form_invalid(form)
        except MachineError as exc:
            form.add_error("mac", str(exc))
            return self.form_invalid(form)
        messages.success(self.request, f"{host.name} ({host.mac}) added; it shows online once it has started.")
        return redirect("clc:hosts")


class HostUpdateView(HostMixin, UpdateView):
    """Change a PC's location, owner-group and flags; delete it from here too."""

    template_name = "clc/hosts/form.html"
    form_class = HostForm
    action = "write"

    def get_object(self, queryset=None):
        return self.host(self.kwargs["mac"])

    def form_valid(self, form):
        if "owner_group" in form.changed_data and not self.may_create_in(form, self.resource_type):
            return self.form_invalid(form)
        change_host(self.object, **{field: form.cleaned_data[field] for field in EDITABLE_HOST_FIELDS})
        messages.success(self.request, f"{self.object.name} saved.")
        return redirect("clc:hosts")


class HostDeleteView(HostMixin, View):
    """Delete on POST; the PC is added again when it next registers."""

    action = "delete"

    def post(self, request, mac: str):
        host = self.host(mac)
        delete_host(host)
        messages.success(request, f"{host.name} ({host.mac}) deleted; it is added again when it next starts.")
        return redirect("clc:hosts")


def _woken(who: str, sent: dict) -> str:
    return (f"Magic packet for {who} ({sent['mac']}) sent by cluster controller {sent['controller']} to "
            f"{sent['broadcast']}; it shows online once it has started.")


class HostWakeView(HostMixin, View):
    """Wake on POST: the PC's cluster controller sends the magic packet; a refusal says why."""

    action = "execute"

    def post(self, request, mac: str):
        host = self.host(mac)
        try:
            sent = wake_host(host)
        except MachineError as exc:
            messages.error(request, f"{host.name} was not woken: {exc}")
        else:
            messages.success(request, _woken(host.name, sent))
        return back_to_list(request, "clc:hosts")


class HostPowerOffView(HostMixin, View):
    """Power off on POST, through the node controller the PC runs; a refusal says why."""

    action = "execute"

    def post(self, request, mac: str):
        host = self.host(mac)
        try:
            power_off_host(host)
        except MachineError as exc:
            messages.error(request, f"{host.name} was not powered off: {exc}")
        else:
            messages.success(request, f"{host.name} is asked to power off.")
        return back_to_list(request, "clc:hosts")


class ServerListView(AuthorizedMixin, ListView):
    """Servers of every role with address, cluster, state, last seen and key (the CLC's is its own); search by
    name, MAC, IP or cluster, filter by role and state."""

    template_name = "clc/hosts/servers.html"
    paginate_by = 25
    resource_type = Type.SERVER

    def get_queryset(self):
        role, state = self.request.GET.get("role", ""), self.request.GET.get("state", "")
        return self.readable(find_servers(self.request.GET.get("q", "").strip(),
                                          role if role in RoleChoices.values else "",
                                          state if state in LivenessChoices.values else ""))

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        with_reported_times(list(context["page_obj"]))
        keys = enrolment.keys_by_name(self.actor, [server.name for server in context["page_obj"]])
        for server in context["page_obj"]:
            server.actions, server.key = server_actions(server) | admin_actions(server), keys.get(server.name)
        return context | {
            "query": self.request.GET.get("q", ""), "role": self.request.GET.get("role", ""),
            "state": self.request.GET.get("state", ""), "roles": RoleChoices.choices,
            "states": LivenessChoices.choices, "clc_key": trust.own_key()}


class ServerWakeView(AuthorizedMixin, View):
    """Wake a node or storage controller on POST, as a PC is woken."""

    resource_type, action = Type.SERVER, "execute"

    def post(self, request, role: str, name: str):
        server = self.authorized(Server.objects.all(), role=role, name=name)
        try:
            sent = wake_server(server)
        except MachineError as exc:
            messages.error(request, f"{server} was not woken: {exc}")
        else:
            messages.success(request, _woken(str(server), sent))
        return back_to_list(request, "clc:servers")


class ServerPowerOffView(AuthorizedMixin, View):
    """Power a node controller's machine off on POST; a refusal says why."""

    resource_type, action = Type.SERVER, "execute"

    def post(self, request, role: str, name: str):
        server = self.authorized(Server.objects.all(), role=role, name=name)
        try:
            power_off_server(server)
        except MachineError as exc:
            messages.error(request, f"{server} was not powered off: {exc}")
        else:
            messages.success(request, f"{server} is asked to power off.")
        return back_to_list(request, "clc:servers")
