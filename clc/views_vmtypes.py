"""Pages of the admin console for VM types (the sizes instances have): everyone of the console reads the list; the
root's super administrators create, change and delete them (delete refused while instances use the type). Thin
adapters over ``clc.services.vmtypes``; who may do what is ``clc.services.authz``'s rule."""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.db.models import Count
from django.shortcuts import redirect
from django.views.generic import FormView, ListView, View
from django.views.generic.base import TemplateResponseMixin

from clc.services import authz
from clc.services.vmtypes import (
    LIMITS,
    VMTypeInUse,
    change_vm_type,
    create_vm_type,
    delete_vm_type,
    users_of,
    vm_type_problems,
)
from clc.views import AuthorizedMixin
from luhyaapi.validators import NAME_RE, InvalidValue
from luhyadb.choices import ResourceTypeChoices as Type
from luhyadb.models import VMType


class VMTypeNameConverter:
    """A URL part that must be a VM type's name; anything else is a plain 404."""

    regex = NAME_RE.pattern.removeprefix("^").removesuffix("$")

    def to_python(self, value: str) -> str:
        return value

    def to_url(self, value: str) -> str:
        return value


class VMTypeForm(forms.Form):
    """A VM type's name and sizes, checked by ``vm_type_problems`` (the API's rule too)."""

    name = forms.CharField(max_length=40, help_text="lower-case letters, digits and '-', e.g. medium")
    cpus = forms.IntegerField(label="CPUs", min_value=LIMITS["cpus"][0], max_value=LIMITS["cpus"][1])
    memory_mb = forms.IntegerField(label="Memory (MB)", min_value=LIMITS["memory_mb"][0],
                                   max_value=LIMITS["memory_mb"][1])
    disk_gb = forms.IntegerField(label="Disk (GB)", min_value=LIMITS["disk_gb"][0], max_value=LIMITS["disk_gb"][1])

    def __init__(self, *args, vm_type: VMType | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.vm_type = vm_type

    def clean(self):
        cleaned = super().clean()
        for problem in vm_type_problems(**{field: cleaned.get(field) for field in self.fields}, vm_type=self.vm_type):
            if problem.field not in self.errors:
                self.add_error(problem.field, problem.message)
        return cleaned


class VMTypeListView(AuthorizedMixin, ListView):
    """Every VM type with its CPUs, memory and disk, and how many instances use it."""

    template_name = "clc/vmtypes/list.html"
    context_object_name = "vm_types"
    resource_type = Type.VMTYPE

    def get_queryset(self):
        return self.readable(VMType.objects.annotate(used_by=Count("instances")))

    def get_context_data(self, **kwargs):
        return super().get_context_data(**kwargs) | {
                "can_change": authz.allows(self.actor, "write", Type.VMTYPE, authz.ROOT_PATH),
                "can_create": authz.allows(self.actor, "create", Type.VMTYPE, authz.ROOT_PATH)}


class RootOnlyMixin:
    """VM types belong to the whole cloud: creating one needs the right to create at the root path."""

    def dispatch(self, request, *args, **kwargs):
        try:
            authz.require_create(self.actor, Type.VMTYPE, authz.ROOT_PATH)
        except authz.Denied as denied:
            raise PermissionDenied(str(denied)) from None
        return super().dispatch(request, *args, **kwargs)


class VMTypeCreateView(AuthorizedMixin, RootOnlyMixin, FormView):
    template_name = "clc/vmtypes/form.html"
    form_class = VMTypeForm
    resource_type, action = Type.VMTYPE, "create"

    def form_valid(self, form):
        try:
            vm_type = create_vm_type(**form.cleaned_data)
        except InvalidValue as exc:  # another type took the name since the form was checked
            form.add_error(exc.field, exc.message)
            return self.form_invalid(form)
        messages.success(self.request, f"VM type {vm_type.name} created.")
        return redirect("clc:vmtypes")


class VMTypeMixin(AuthorizedMixin):
    resource_type = Type.VMTYPE

    def vm_type(self) -> VMType:
        return self.authorized(VMType.objects.all(), name=self.kwargs["name"])


class VMTypeUpdateView(VMTypeMixin, FormView):
    template_name = "clc/vmtypes/form.html"
    form_class = VMTypeForm
    action = "write"

    def get_form_kwargs(self):
        self.object = self.vm_type()
        return super().get_form_kwargs() | {"vm_type": self.object}

    def get_initial(self):
        return {field: getattr(self.object, field) for field in ("name", "cpus", "memory_mb", "disk_gb")}

    def get_context_data(self, **kwargs):
        return super().get_context_data(**kwargs) | {"object": self.object}

    def form_valid(self, form):
        try:
            change_vm_type(self.object, **form.cleaned_data)
        except InvalidValue as exc:
            form.add_error(exc.field, exc.message)
            return self.form_invalid(form)
        messages.success(self.request, f"VM type {self.object.name} saved; running instances keep their size until "
                                       "they next start.")
        return redirect("clc:vmtypes")


class VMTypeDeleteView(VMTypeMixin, TemplateResponseMixin, View):
    """Ask for confirmation (GET, naming the instances that use it), then delete (POST; refused while in use)."""

    template_name = "clc/vmtypes/confirm_delete.html"
    action = "delete"

    def get(self, request, name: str):
        vm_type = self.vm_type()
        return self.render_to_response({"object": vm_type, "users": users_of(vm_type)})

    def post(self, request, name: str):
        vm_type = self.vm_type()
        try:
            delete_vm_type(vm_type)
        except VMTypeInUse as exc:
            messages.error(request, f"Not deleted: {exc}")
            return redirect("clc:vmtype-delete", name=name)
        messages.success(request, f"VM type {name} deleted.")
        return redirect("clc:vmtypes")
