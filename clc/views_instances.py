"""Pages of the admin console for instances (virtual servers, remote and local desktops): thin adapters over
``clc.services.instances``; the detail page's state, console and task progress refresh from the API."""

from __future__ import annotations

from urllib.parse import urlsplit

from django.contrib import messages
from django.db.models import Q
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.generic import CreateView, DetailView, ListView, UpdateView, View

from clc.forms import InstanceChangeForm, InstanceForm
from clc.services import authz
from clc.services.instances import (
    EDITABLE_STATES,
    STOPPABLE_STATES,
    InstanceError,
    change_instance,
    define_instance,
    delete_instance,
    on_a_node,
    run_instance,
    stop_instance,
    switch_watching,
)
from clc.services.portal import console_password
from clc.services.push import PushRefused, push_desktop, push_targets, validate_push_hosts
from clc.services.tasks import TaskNotFound, task_status
from clc.views import AuthorizedMixin
from luhyaapi.ids import validate_id
from luhyaapi.validators import InvalidValue
from luhyadb.choices import InstanceKindChoices
from luhyadb.choices import InstanceStateChoices as State
from luhyadb.choices import ResourceTypeChoices as Type
from luhyadb.models import Instance

# The states in which each action is offered, from the service's rules. The detail page's script gets this same
# table, so one rule enables the buttons whether the page was just loaded or refreshed in place.
ACTION_STATES = {
    "run": [str(state) for state in EDITABLE_STATES],
    "edit": [str(state) for state in EDITABLE_STATES],
    "stop": [str(state) for state in STOPPABLE_STATES],
    "delete": [state for state in State.values if state not in (State.DELETING, State.DELETED)],
}
# A console port is leased from scheduling on, but answers only once the VM is started: booting (the node reports it
# after the start) or running. While it boots, the console is how the administrator sees what it does.
CONSOLE_STATES = [State.BOOTING.value, State.RUNNING.value]


class InstanceIdConverter:
    """A URL part that must be an instance id: anything else does not match, so a malformed id is a plain 404."""

    regex = "[^/]+"

    def to_python(self, value: str) -> str:
        return validate_id(value, "instance")  # InvalidId is a ValueError, which Django takes as "no match"

    def to_url(self, value: str) -> str:
        return value


def allowed_actions(state: str) -> dict[str, bool]:
    """Which of run, stop, edit and delete an instance in ``state`` offers."""
    return {action: state in states for action, states in ACTION_STATES.items()}


def _href(url: str, schemes: tuple[str, ...]) -> str:
    """``url`` when it uses one of ``schemes``, else "": a value from a node never becomes a ``javascript:`` link."""
    return url if urlsplit(url).scheme.lower() in schemes else ""


def reach(instance: Instance) -> dict:
    """How to reach an instance, for the pages: its console while it runs, and its forwarded services."""
    console = instance.console_url if instance.state in CONSOLE_STATES else ""
    access = [{"name": name, "url": str(url), "href": _href(str(url), ("http", "https"))}
              for name, url in sorted(instance.access.items()) if name != "console"]
    return {"console": console, "console_href": _href(console, ("vnc",)), "access": access}


class InstanceListView(AuthorizedMixin, ListView):
    """Instances with state, node and how to reach them; search by name, id or node, filter by kind and state."""

    template_name = "clc/instances/list.html"
    paginate_by = 25
    resource_type = Type.INSTANCE

    def get(self, request, *args, **kwargs):
        if authz.uses_portal(self.actor):
            return redirect("portal:desktops")
        return super().get(request, *args, **kwargs)

    def get_queryset(self):
        instances = self.readable(Instance.objects.select_related("image", "vm_type"))
        query = self.request.GET.get("q", "").strip()
        if query:
            instances = instances.filter(Q(name__icontains=query) | Q(instance_id__icontains=query)
                                         | Q(node__icontains=query))
        for name, choices in (("kind", InstanceKindChoices.values), ("state", State.values)):
            value = self.request.GET.get(name, "")
            if value in choices:
                instances = instances.filter(**{name: value})
        return instances

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        for instance in context["page_obj"]:
            instance.reach = reach(instance)
        return context | {
            "query": self.request.GET.get("q", ""),
            "kind": self.request.GET.get("kind", ""),
            "state": self.request.GET.get("state", ""),
            "kinds": InstanceKindChoices.choices,
            "states": State.choices,
            "may_create": authz.may_type(self.actor, "create", Type.INSTANCE),
        }


class InstanceCreateView(AuthorizedMixin, CreateView):
    """Define a new instance; it runs when asked to on its page."""

    template_name = "clc/instances/form.html"
    form_class = InstanceForm
    resource_type, action = Type.INSTANCE, "create"

    def form_valid(self, form):
        if not self.may_create_in(form, self.resource_type):
            return self.form_invalid(form)
        self.object = define_instance(**form.cleaned_data)
        messages.success(self.request, f"Instance {self.object.name} ({self.object.instance_id}) defined: "
                                       "press Run to start it.")
        return redirect(self.object)


class InstanceDetailView(AuthorizedMixin, DetailView):
    """An instance's properties, where it runs, how to reach it, its current run's progress and its actions."""

    resource_type = Type.INSTANCE
    template_name = "clc/instances/detail.html"
    slug_field = "instance_id"
    slug_url_kwarg = "insid"
    queryset = Instance.objects.select_related("image", "vm_type", "owner_group")

    def get_context_data(self, **kwargs):
        instance = self.object
        try:
            task = task_status(instance.tid) if instance.runs else None
        except TaskNotFound:
            task = None
        return super().get_context_data(**kwargs) | {
            "actions": allowed_actions(instance.state),
            "reach": reach(instance),
            "console_password": console_password(self.actor, instance),
            "task": task,
            "may_write": authz.may(self.actor, "write", instance),
            # Its volumes the person may read (attached, or going with its next run); one may read the instance
            # and not volumes.
            "volumes": authz.readable(self.actor, instance.volumes.order_by("name")),
            "live": {
                "instance": reverse("clc-api:instance-detail", args=[instance.instance_id]),
                "task": reverse("clc-api:task", args=[instance.tid]),
                "list": reverse("clc:instances"),
                "actions": ACTION_STATES,
                "console": CONSOLE_STATES,
                "labels": dict(State.choices),
            },
        }


class InstanceUpdateView(AuthorizedMixin, UpdateView):
    """Change an instance that is not running (name, size, persistence, ports, pinned node)."""

    resource_type, action = Type.INSTANCE, "write"
    template_name = "clc/instances/form.html"
    form_class = InstanceChangeForm
    slug_field = "instance_id"
    slug_url_kwarg = "insid"
    queryset = Instance.objects.all()

    def get(self, request, *args, **kwargs):
        return self._refused() or super().get(request, *args, **kwargs)

    def post(self, request, *args, **kwargs):
        return self._refused() or super().post(request, *args, **kwargs)

    def _refused(self):
        instance = self.get_object()
        if allowed_actions(instance.state)["edit"]:
            return None
        messages.warning(self.request, f"{instance.name} is {instance.state}; stop it before changing it.")
        return redirect(instance)

    def form_valid(self, form):
        if change_instance(self.object, **{field: form.cleaned_data[field] for field in form.Meta.fields}):
            messages.success(self.request, "Changes saved.")
        else:
            messages.warning(self.request, "Not saved: the instance was started meanwhile; stop it before changing it.")
        return redirect(self.object)


class InstanceRunView(AuthorizedMixin, View):
    """Run on POST; a refusal (busy, no node fits, no cluster controller) is shown on the instance's page."""

    resource_type, action = Type.INSTANCE, "execute"

    def post(self, request, insid: str):
        instance = self.authorized(Instance.objects.all(), instance_id=insid)
        try:
            instance = run_instance(instance)
        except InstanceError as exc:
            messages.error(request, f"{instance.name} was not started: {exc}")
        else:
            if instance.placing:
                messages.info(request, f"{instance.name} is scheduled: {instance.message}; follow its progress below.")
            else:
                messages.success(request, f"{instance.name} is scheduled on {instance.node} (cluster "
                                          f"{instance.cluster}); follow its progress below.")
        return redirect(instance)


class InstanceStopView(AuthorizedMixin, View):
    """Stop on POST (gracefully, then forced by the node)."""

    resource_type, action = Type.INSTANCE, "execute"

    def post(self, request, insid: str):
        instance = self.authorized(Instance.objects.all(), instance_id=insid)
        try:
            instance = stop_instance(instance)
        except InstanceError as exc:
            messages.error(request, f"{instance.name} was not stopped: {exc}")
        else:
            messages.success(request, f"{instance.name} is stopping.")
        return redirect(instance)


class InstanceMonitoringView(AuthorizedMixin, View):
    """Turn monitoring on or off on POST (``monitoring`` on or off), in any state: the node of a run at work is told
    at once."""

    resource_type, action = Type.INSTANCE, "write"
    SWITCH = {"on": True, "off": False}

    def post(self, request, insid: str):
        instance = self.authorized(Instance.objects.all(), instance_id=insid)
        wanted = self.SWITCH.get(request.POST.get("monitoring", ""))
        if wanted is None:
            messages.error(request, "Monitoring not switched: monitoring must be on or off.")
            return redirect(instance)
        word = "on" if wanted else "off"
        if wanted == instance.monitoring:
            messages.info(request, f"Monitoring of {instance.name} is {word} already.")
        elif switch_watching(instance, monitoring=wanted):
            messages.success(request, f"Monitoring of {instance.name} is {word}; node {instance.node} is told at once.")
        elif on_a_node(instance):
            messages.warning(request, f"Monitoring of {instance.name} is {word} from its next start: its node could "
                                      "not be told now (see the system status page).")
        else:
            messages.success(request, f"Monitoring of {instance.name} is {word}.")
        return redirect(instance)


class InstanceDeleteView(AuthorizedMixin, View):
    """Delete on POST: at once if it never ran, else once its node has removed it. Either way the list is next (a
    node may confirm before the browser follows a redirect, and the instance's page would then be a 404)."""

    resource_type, action = Type.INSTANCE, "delete"

    def post(self, request, insid: str):
        instance = self.authorized(Instance.objects.all(), instance_id=insid)
        already = instance.state == State.DELETING
        try:
            gone = delete_instance(instance)
        except InstanceError as exc:
            messages.error(request, f"{instance.name} was not deleted: {exc}")
            return redirect(instance)
        if gone:
            messages.success(request, f"Instance {instance.name} ({insid}) deleted.")
        elif already:
            messages.info(request, f"{instance.name} is already being deleted; it leaves this list when its node "
                                   "confirms.")
        else:
            messages.success(request, f"{instance.name} is being removed from {instance.node}; it leaves this list "
                                      "when the node confirms.")
        return redirect("clc:instances")


class InstancePushView(AuthorizedMixin, View):
    """Push a local desktop to classroom PCs: a checkbox for each PC the person may execute on whose owner-group's
    kiosk offers the desktop (those that cannot take it now say why); pushing asks each chosen PC to pull the
    desktop's image and shows the tasks to follow. A refusal names each PC and why, and nothing is pushed."""

    resource_type, action = Type.INSTANCE, "execute"
    template_name = "clc/instances/push.html"

    def get(self, request, insid: str):
        desktop = self._desktop(insid)
        if desktop.kind != InstanceKindChoices.LVD:
            messages.warning(request, f"{desktop.name} is a {desktop.get_kind_display().lower()}: only local desktops "
                                      "are pushed to classroom PCs.")
            return redirect(desktop)
        return self._page(desktop)

    def post(self, request, insid: str):
        desktop = self._desktop(insid)
        chosen = request.POST.getlist("hosts")
        try:
            pushed = push_desktop(self.actor, desktop, validate_push_hosts(chosen))
        except InvalidValue as exc:
            messages.error(request, f"Nothing was pushed: {exc.message}.")
        except PushRefused as exc:
            messages.error(request, f"{exc}.")
        else:
            messages.success(request, f"{desktop.name}: {len(pushed)} classroom PC(s) pull its image now; follow "
                                      "each task below.")
            return self._page(desktop, pushed=pushed)
        return self._page(desktop, chosen=chosen)

    def _desktop(self, insid: str) -> Instance:
        return self.authorized(Instance.objects.select_related("image", "owner_group"), instance_id=insid)

    def _page(self, desktop: Instance, chosen: list[str] | None = None, pushed: list | None = None):
        tasks = [{"item": item, "url": reverse("clc-api:task", args=[item.tid])} for item in pushed or ()]
        return render(self.request, self.template_name, {
            "object": desktop, "targets": [] if pushed else push_targets(self.actor, desktop),
            "chosen": set(chosen or ()), "pushed": tasks})
