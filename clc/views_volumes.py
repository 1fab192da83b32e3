"""Pages of the admin console for volumes: the list (state, size, where attached), the create form, a volume's page
(its settings, its snapshots; rename, take a snapshot, restore one, delete a snapshot; attach it to a running
instance, detach it) and delete. Thin adapters over ``clc.services.volumes``; who may do what is the rule on type
``volume`` (``clc.services.authz``): taking or restoring a snapshot is writing the volume; attaching or detaching
it is writing the volume and using the instance (``authz.may_use``)."""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.db.models import Q
from django.shortcuts import get_object_or_404, redirect
from django.views.generic import FormView, ListView, TemplateView, View
from django.views.generic.base import TemplateResponseMixin

from clc.forms import AuthorityForm
from clc.services import authz
from clc.services.volumes import (
    ATTACHABLE_STATES,
    MIB,
    VolumeError,
    attach_volume,
    create_snapshot,
    create_volume,
    delete_snapshot,
    delete_volume,
    detach_volume,
    refresh_volume,
    refresh_volumes,
    rename_volume,
    restore_volume,
    storage_controllers,
)
from clc.views import AuthorizedMixin
from clc.views_pools import PoolIdConverter
from luhyaapi.validators import InvalidValue, validate_display_name
from luhyadb.choices import ResourceTypeChoices as Type
from luhyadb.choices import VolumeStateChoices
from luhyadb.models import Instance, Snapshot, Volume

# A volume being made refreshes its page this often (its progress).
REFRESH_SECONDS = 3
# The form's sizes are MiB; at most 16 TiB.
MAX_SIZE_MB = 16 * 2**20


class VolumeIdConverter(PoolIdConverter):
    """A URL part that must be a volume's id."""

    kind = "volume"


class SnapshotIdConverter(PoolIdConverter):
    """A URL part that must be a snapshot's id."""

    kind = "snapshot"


def _display_name(value: str) -> str:
    try:
        return validate_display_name(value, "name")
    except InvalidValue as exc:
        raise forms.ValidationError(exc.message) from None


class VolumeForm(AuthorityForm):
    """A new volume: name, owner-group (those in the person's authority), size in MiB and the cluster of its storage
    controller (those with one online), empty or from an image version the person may read."""

    size_mb = forms.IntegerField(label="Size (MiB)", min_value=1, max_value=MAX_SIZE_MB, initial=1024)
    cluster = forms.ChoiceField(required=False)
    image_version = forms.IntegerField(min_value=0, initial=0, required=False,
                                       help_text="with an image: its version; 0 = the image's current one")

    class Meta:
        model = Volume
        fields = ("name", "owner_group", "size_mb", "cluster", "image", "image_version")
        labels = {"owner_group": "Owner-group", "image": "From image (optional)"}

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        clusters = sorted({server.cluster for server in storage_controllers()})
        self.fields["cluster"].choices = [(cluster, cluster) for cluster in clusters]
        self.fields["image"].required = False

    def clean_name(self) -> str:
        return _display_name(self.cleaned_data["name"])

    def refused(self, exc: VolumeError) -> None:
        """Show a refusal of the service next to its field."""
        field = {"size": "size_mb", "image_id": "image", "version": "image_version"}.get(exc.field, exc.field)
        self.add_error(field if field in self.fields else None, str(exc))


class RenameForm(forms.Form):
    name = forms.CharField(max_length=300)

    def clean_name(self) -> str:
        return _display_name(self.cleaned_data["name"])


class VolumeListView(AuthorizedMixin, ListView):
    """The volumes the person may read, with their state, size and the instance each is attached to; search by
    name or id."""

    template_name = "clc/volumes/list.html"
    paginate_by = 25
    resource_type = Type.VOLUME

    def get_queryset(self):
        volumes = self.readable(Volume.objects.select_related("owner_group", "instance"))
        query = self.request.GET.get("q", "").strip()
        if query:
            volumes = volumes.filter(Q(name__icontains=query) | Q(volume_id__icontains=query))
        return volumes.order_by("name", "volume_id")

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        refresh_volumes(context["page_obj"].object_list)
        return context | {"query": self.request.GET.get("q", ""),
                          "may_create": authz.may_type(self.actor, "create", Type.VOLUME)}


class VolumeCreateView(AuthorizedMixin, FormView):
    """Make a volume in an owner-group where the person may create volumes, on the chosen cluster's storage
    controller."""

    template_name = "clc/volumes/form.html"
    form_class = VolumeForm
    resource_type, action = Type.VOLUME, "create"

    def form_valid(self, form):
        if not self.may_create_in(form, self.resource_type):
            return self.form_invalid(form)
        data = form.cleaned_data
        try:
            volume = create_volume(name=data["name"], owner_group=data["owner_group"], size=data["size_mb"] * MIB,
                                   cluster=data.get("cluster") or "", image=data.get("image"),
                                   image_version=data.get("image_version") or 0)
        except VolumeError as exc:
            form.refused(exc)
            return self.form_invalid(form)
        messages.success(self.request, f"Volume {volume.name} ({volume.volume_id}) made on {volume.sc}.")
        return redirect(volume)


class VolumeMixin(AuthorizedMixin):
    resource_type = Type.VOLUME

    def volume(self, action: str | None = None) -> Volume:
        return self.authorized(Volume.objects.select_related("owner_group", "image", "instance"), action,
                               volume_id=self.kwargs["volume_id"])


def attachable_instances(actor: authz.Actor, volume: Volume):
    """The instances the volume's Attach form offers: running ones of its cluster that the person may use."""
    instances = Instance.objects.filter(cluster=volume.cluster, state__in=ATTACHABLE_STATES)
    return authz.usable_instances(actor, instances).order_by("name")


class VolumeDetailView(VolumeMixin, TemplateView):
    """A volume's settings, state (refreshed while it is made), snapshots and what the person may do to it."""

    template_name = "clc/volumes/detail.html"

    def get_context_data(self, **kwargs):
        volume = refresh_volume(self.volume())
        return super().get_context_data(**kwargs) | {
            "object": volume,
            "snapshots": volume.snapshots.all(),
            "size_mb": volume.size_bytes // MIB,
            "may_write": authz.may(self.actor, "write", volume),
            "may_delete": authz.may(self.actor, "delete", volume),
            "refresh": REFRESH_SECONDS if volume.state == VolumeStateChoices.CREATING else 0,
            "rename_form": RenameForm(initial={"name": volume.name}),
            "attachable": (attachable_instances(self.actor, volume)
                           if volume.state == VolumeStateChoices.AVAILABLE else Instance.objects.none()),
        }


class VolumeActionView(VolumeMixin, View):
    """``POST``: one change to a volume (rename, take a snapshot, restore one, delete a snapshot); the volume's page
    again with what happened."""

    action = "write"
    verb = ""

    def post(self, request, volume_id: str, snapshot_id: str = ""):
        volume = self.volume()
        try:
            messages.success(request, self.perform(volume, snapshot_id))
        except VolumeError as exc:
            messages.error(request, f"Not done: {exc}")
        return redirect(volume)

    def perform(self, volume: Volume, snapshot_id: str) -> str:
        raise NotImplementedError


class VolumeRenameView(VolumeActionView):
    def perform(self, volume: Volume, snapshot_id: str) -> str:
        form = RenameForm(self.request.POST)
        if not form.is_valid():
            raise VolumeError(400, "; ".join(form.errors["name"]), "name")
        rename_volume(volume, form.cleaned_data["name"])
        return f"Volume {volume.volume_id} renamed {volume.name}."


class SnapshotTakeView(VolumeActionView):
    def perform(self, volume: Volume, snapshot_id: str) -> str:
        snapshot = create_snapshot(volume)
        return f"Snapshot {snapshot.snapshot_id} of {volume.name} taken."


class SnapshotRestoreView(VolumeActionView):
    def perform(self, volume: Volume, snapshot_id: str) -> str:
        restore_volume(volume, get_object_or_404(volume.snapshots, snapshot_id=snapshot_id))
        return f"Volume {volume.name} restored to snapshot {snapshot_id}."


class SnapshotDeleteView(VolumeActionView):
    action = "delete"

    def perform(self, volume: Volume, snapshot_id: str) -> str:
        snapshot: Snapshot = get_object_or_404(volume.snapshots, snapshot_id=snapshot_id)
        delete_snapshot(snapshot)
        return f"Snapshot {snapshot_id} deleted."


class VolumeAttachView(VolumeActionView):
    def perform(self, volume: Volume, snapshot_id: str) -> str:
        instance = attachable_instances(self.actor, volume).filter(
            instance_id=self.request.POST.get("instance_id", "")).first()
        if instance is None:
            raise VolumeError(400, "choose a running instance of the volume's cluster that you may use",
                              "instance_id")
        attach_volume(volume, instance)
        return f"Volume {volume.name} is being attached to {instance.name}."


class VolumeDetachView(VolumeActionView):
    def perform(self, volume: Volume, snapshot_id: str) -> str:
        if volume.instance is not None and not authz.may_use(self.actor, volume.instance):
            raise VolumeError(403, f"you may not start or change instance {volume.instance.instance_id}, which the "
                                   "volume is attached to")
        detach_volume(volume)
        return f"Volume {volume.name} is being detached."


class VolumeDeleteView(VolumeMixin, TemplateResponseMixin, View):
    """Ask for confirmation (GET), then delete the volume and its file (POST); refused, with a message on the
    volume's page, while it is attached or has snapshots."""

    template_name = "clc/volumes/confirm_delete.html"
    action = "delete"

    def get(self, request, volume_id: str):
        volume = self.volume()
        return self.render_to_response({"object": volume, "snapshots": volume.snapshots.all(),
                                        "size_mb": volume.size_bytes // MIB})

    def post(self, request, volume_id: str):
        volume = self.volume()
        try:
            delete_volume(volume)
        except VolumeError as exc:
            messages.error(request, f"Not deleted: {exc}")
            return redirect(volume)
        messages.success(request, f"Volume {volume.name} ({volume_id}) deleted.")
        return redirect("clc:volumes")
