"""Pages of the admin console for the clusters' network settings: thin adapters over ``clc.services.networks``."""

from __future__ import annotations

from django.contrib import messages
from django.shortcuts import redirect
from django.views.generic import FormView, ListView, View
from django.views.generic.base import TemplateResponseMixin

from clc.forms import ClusterNetworkForm
from clc.services.networks import (
    NetworkInUse,
    NetworkInvalid,
    busy_instances,
    delete_network,
    save_network,
    suggested_port_pool,
    unconfigured_clusters,
)
from clc.views import AuthorizedMixin
from luhyaapi.validators import NAME_RE
from luhyadb.choices import ResourceTypeChoices as Type
from luhyadb.models import ClusterNetwork


class ClusterNameConverter:
    """A URL part that must be a cluster name: anything else (``..``, metacharacters) does not match: a plain 404."""

    regex = NAME_RE.pattern.removeprefix("^").removesuffix("$")

    def to_python(self, value: str) -> str:
        return value

    def to_url(self, value: str) -> str:
        return value


class NetworkListView(AuthorizedMixin, ListView):
    """Every cluster's network settings (kind, mode, public address, pools), and the registered clusters that
    have none yet."""

    template_name = "clc/networks/list.html"
    context_object_name = "networks"
    resource_type = Type.NETWORK

    def get_queryset(self):
        return self.readable(ClusterNetwork.objects.all())

    def get_context_data(self, **kwargs):
        return super().get_context_data(**kwargs) | {"unconfigured": unconfigured_clusters()}


class _NetworkFormView(AuthorizedMixin, FormView):
    """The settings form: problems are shown next to their fields, and nothing is stored until there are none."""

    template_name = "clc/networks/form.html"
    form_class = ClusterNetworkForm
    resource_type, action = Type.NETWORK, "create"

    def get_network(self) -> ClusterNetwork | None:
        """The record being changed; None for a new one."""
        return None

    def get_form_kwargs(self):
        return super().get_form_kwargs() | {"instance": self.get_network()}

    def form_valid(self, form):
        try:
            network = save_network(form.values, instance=form.instance)
        except NetworkInvalid as exc:  # another cluster took an address since the form was checked
            form.add_problems(exc)
            return self.form_invalid(form)
        messages.success(self.request, f"Network settings of cluster {network.cluster} saved; its CC picks them up "
                                       "when it next asks.")
        return redirect("clc:networks")


class NetworkCreateView(_NetworkFormView):
    """Network settings for a cluster that has none (``?cluster=`` fills in its name)."""

    def get_initial(self):
        low, high = suggested_port_pool()
        return {"cluster": self.request.GET.get("cluster", "")[:63], "mode": "private", "port_low": low,
                "port_high": high}


class NetworkUpdateView(_NetworkFormView):
    """Change a cluster's network settings."""

    action = "write"

    def get_network(self) -> ClusterNetwork:
        return self.authorized(ClusterNetwork.objects.all(), cluster=self.kwargs["cluster"])


class NetworkDeleteView(AuthorizedMixin, TemplateResponseMixin, View):
    """Ask for confirmation (GET), then delete (POST); refused while the cluster's instances run."""

    template_name = "clc/networks/confirm_delete.html"
    resource_type, action = Type.NETWORK, "delete"

    def get(self, request, cluster: str):
        network = self.authorized(ClusterNetwork.objects.all(), cluster=cluster)
        return self.render_to_response({"network": network, "busy": busy_instances(network)})

    def post(self, request, cluster: str):
        network = self.authorized(ClusterNetwork.objects.all(), cluster=cluster)
        try:
            delete_network(network)
        except NetworkInUse as exc:
            messages.error(request, f"Not deleted: {exc}")
            return redirect("clc:network-delete", cluster=cluster)
        messages.success(request, f"Network settings of cluster {cluster} deleted.")
        return redirect("clc:networks")
