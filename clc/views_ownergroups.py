"""Pages of the admin console for owner-groups: the tree (search), a new group inside one's authority, a group's
name, description and permission matrix, and delete (refused while anything uses the group). Thin adapters over
``clc.services.ownergroups``; who may see and change which group is ``clc.services.authz``'s rule."""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.db.models import Count, Q
from django.shortcuts import redirect
from django.views.generic import FormView, ListView, View
from django.views.generic.base import TemplateResponseMixin

from clc.services.ownergroups import (
    ACTIONS,
    DEFAULT_KIND,
    KINDS,
    OwnerGroupRefused,
    change_owner_group,
    create_owner_group,
    delete_owner_group,
    permissions_of,
    tree,
    users_of,
)
from clc.views import AuthorizedMixin
from luhyaapi.validators import OWNER_PATH_RE
from luhyadb.choices import ResourceTypeChoices as Type
from luhyadb.models import OwnerGroup

FULL = "full"


class OwnerPathConverter:
    """A URL part that must be an owner-group path (dotted words); anything else is a plain 404."""

    regex = OWNER_PATH_RE.pattern.removeprefix("^").removesuffix("$")

    def to_python(self, value: str) -> str:
        return value

    def to_url(self, value: str) -> str:
        return value


class GroupFormMixin:
    def refused(self, exc: OwnerGroupRefused) -> None:
        """Show a refusal of the service next to its field."""
        self.add_error(exc.field if exc.field in self.fields else None, str(exc))


class GroupCreateForm(GroupFormMixin, forms.Form):
    path = forms.CharField(max_length=255, help_text="where it sits: its parent's path and one more word, e.g. "
                                                     "edu.school.class1")
    name = forms.CharField(max_length=100)
    kind = forms.ChoiceField(choices=[(kind, label) for kind, (label, _) in KINDS.items()], initial=DEFAULT_KIND,
                             help_text="the permissions it starts with; change them on its page next")
    description = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 3}))


class GroupForm(GroupFormMixin, forms.Form):
    """A group's name and description and its permission matrix: one row per resource type, a checkbox per action
    and ``full`` for all five."""

    name = forms.CharField(max_length=100)
    description = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 3}))

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        for resource_type, label in Type.choices:
            for action in (*ACTIONS, FULL):
                self.fields[_cell(resource_type, action)] = forms.BooleanField(
                    required=False, label=f"{label}: {action}")

    @classmethod
    def initial_for(cls, group: OwnerGroup) -> dict:
        initial = {"name": group.name, "description": group.description}
        for resource_type, actions in permissions_of(group).items():
            initial |= {_cell(resource_type, action): True for action in actions}
            initial[_cell(resource_type, FULL)] = len(actions) == len(ACTIONS)
        return initial

    def matrix(self) -> list[tuple[str, list]]:
        """``(type label, [bound checkboxes of read..delete, full])`` per resource type, for the template."""
        return [(label, [self[_cell(resource_type, action)] for action in (*ACTIONS, FULL)])
                for resource_type, label in Type.choices]

    def permissions(self) -> dict[str, list[str]]:
        """The ticked cells as ``{type: [actions]}``. Ticking ``full`` gives all five; a ``full`` that was already
        ticked and stays so does not undo the unticking of one of the five."""
        granted = {}
        for resource_type in Type.values:
            full = _cell(resource_type, FULL)
            if self.cleaned_data.get(full) and full in self.changed_data:
                granted[resource_type] = [FULL]
            else:
                granted[resource_type] = [action for action in ACTIONS
                                          if self.cleaned_data.get(_cell(resource_type, action))]
        return granted


def _cell(resource_type: str, action: str) -> str:
    return f"perm_{resource_type}_{action}"


class GroupListView(AuthorizedMixin, ListView):
    """The owner-groups in the person's authority as a tree (indented by depth), each with its accounts and
    permissions; search by name, path or description."""

    template_name = "clc/groups/list.html"
    paginate_by = 25
    resource_type = Type.OWNERGROUP

    def get_queryset(self):
        groups = self.readable(OwnerGroup.objects.annotate(account_count=Count("accounts"))
                               .prefetch_related("permissions"))
        query = self.request.GET.get("q", "").strip()
        if query:
            groups = groups.filter(Q(name__icontains=query) | Q(path__icontains=query)
                                   | Q(description__icontains=query))
        return tree(groups)

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        for group in context["page_obj"]:
            group.granted = permissions_of(group)
        return context | {"query": self.request.GET.get("q", "")}


class GroupCreateView(AuthorizedMixin, FormView):
    """A new owner-group inside the person's authority (``?parent=`` starts its path), with the preset permissions
    of its kind; they can be changed on its page next."""

    template_name = "clc/groups/create.html"
    form_class = GroupCreateForm
    resource_type, action = Type.OWNERGROUP, "create"

    def get_initial(self):
        parent = self.request.GET.get("parent", "")
        return {"path": f"{parent}." if OWNER_PATH_RE.fullmatch(parent) else self.actor.path + "."}

    def get_context_data(self, **kwargs):
        return super().get_context_data(**kwargs) | {"authority": self.actor.path}

    def form_valid(self, form):
        try:
            group = create_owner_group(self.actor, **form.cleaned_data)
        except OwnerGroupRefused as exc:
            form.refused(exc)
            return self.form_invalid(form)
        messages.success(self.request, f"Owner-group {group.path} created with the permissions of its kind "
                                       f"({form.cleaned_data['kind']}): check or change them here.")
        return redirect("clc:group-edit", path=group.path)


class GroupMixin(AuthorizedMixin):
    resource_type = Type.OWNERGROUP

    def group(self) -> OwnerGroup:
        return self.authorized(OwnerGroup.objects.prefetch_related("permissions"), path=self.kwargs["path"])


class GroupUpdateView(GroupMixin, FormView):
    """Change a group's name and description and its permission matrix."""

    template_name = "clc/groups/form.html"
    form_class = GroupForm
    action = "write"

    def get_form_kwargs(self):
        self.object = self.group()
        return super().get_form_kwargs()

    def get_initial(self):
        return GroupForm.initial_for(self.object)

    def get_context_data(self, **kwargs):
        return super().get_context_data(**kwargs) | {"object": self.object, "actions": (*ACTIONS, FULL)}

    def form_valid(self, form):
        try:
            change_owner_group(self.object, name=form.cleaned_data["name"],
                               description=form.cleaned_data["description"], permissions=form.permissions())
        except OwnerGroupRefused as exc:
            form.refused(exc)
            return self.form_invalid(form)
        messages.success(self.request, f"Owner-group {self.object.path} saved.")
        return redirect("clc:groups")


class GroupDeleteView(GroupMixin, TemplateResponseMixin, View):
    """Ask for confirmation (GET, saying what still uses the group), then delete (POST; refused while in use)."""

    template_name = "clc/groups/confirm_delete.html"
    action = "delete"

    def get(self, request, path: str):
        group = self.group()
        return self.render_to_response({"object": group, "users": users_of(group)})

    def post(self, request, path: str):
        group = self.group()
        try:
            delete_owner_group(group)
        except OwnerGroupRefused as exc:
            messages.error(request, f"Not deleted: {exc}")
            return redirect("clc:group-delete", path=path)
        messages.success(request, f"Owner-group {path} deleted.")
        return redirect("clc:groups")
