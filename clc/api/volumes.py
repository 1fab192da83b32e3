"""The API of volumes and their snapshots: thin adapters over ``clc.services.volumes``; who may do what is the rule
on type ``volume`` (``clc.services.authz``): taking a snapshot of a volume or restoring one is writing the volume;
attaching one to an instance or detaching it is writing the volume and using the instance (execute or write)."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import exceptions, filters, mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from clc.api.authz import AuthorizedViewSetMixin, actor, require, require_create
from clc.api.serializers import (
    AttachSerializer,
    RestoreSerializer,
    SnapshotSerializer,
    VolumeChangeSerializer,
    VolumeSerializer,
)
from clc.services import authz
from clc.services.volumes import (
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
)
from luhyaapi.filters import SearchFilter
from luhyaapi.ids import InvalidId, validate_id
from luhyadb.choices import ResourceTypeChoices
from luhyadb.models import Instance, Snapshot, Volume


def _volume_error(exc: VolumeError) -> Response:
    """The refusal as JSON: ``detail`` says why, and the field at fault (if any) names it too."""
    return Response({"detail": str(exc)} | ({exc.field: [str(exc)]} if exc.field else {}), status=exc.status)


def _validated_id(value: str, kind: str, field: str) -> str:
    try:
        return validate_id(value, kind)
    except InvalidId as exc:
        raise exceptions.ValidationError({field: [str(exc)]}) from None


def readable_snapshot(request, snapshot_id: str) -> Snapshot:
    """The snapshot named in a request's body, if the person may read it; else a 400 naming ``snapshot_id`` (an
    unknown one and one out of their authority alike)."""
    snapshot_id = _validated_id(snapshot_id, "snapshot", "snapshot_id")
    snapshots = Snapshot.objects.select_related("volume", "owner_group").filter(snapshot_id=snapshot_id)
    snapshot = authz.readable(actor(request), snapshots).first()
    if snapshot is None:
        raise exceptions.ValidationError({"snapshot_id": [f"no snapshot {snapshot_id} that you may read"]})
    return snapshot


def usable_instance(request, instance_id: str) -> Instance:
    """The instance named in a request's body, if the person may use it (start or change it: ``authz.may_use``);
    a 400 naming ``instance_id`` for an unknown one and one they may not read alike, a 403 naming it for one they
    may read only."""
    instance_id = _validated_id(instance_id, "instance", "instance_id")
    person = actor(request)
    instances = Instance.objects.filter(instance_id=instance_id)
    instance = (authz.readable(person, instances) | authz.usable_instances(person, instances)).first()
    if instance is None:
        raise exceptions.ValidationError({"instance_id": [f"no instance {instance_id} that you may use"]})
    if not authz.may_use(person, instance):
        raise exceptions.PermissionDenied({"instance_id": [f"you may not start or change instance {instance_id}, so "
                                                           "you may not attach volumes to it or detach them"]})
    return instance


class VolumeErrorMixin:
    def handle_exception(self, exc):
        if isinstance(exc, VolumeError):
            return _volume_error(exc)
        return super().handle_exception(exc)


class VolumeViewSet(VolumeErrorMixin, AuthorizedViewSetMixin, viewsets.ModelViewSet):
    """Volumes: list (``?search=``, paginated), make (201; ``creating`` with its ``progress`` when made from an
    image), get (a volume being made refreshed from its storage controller), rename (PATCH ``name``), delete (409
    while attached or with snapshots); ``snapshots/`` (GET: its snapshots; POST: take one) and ``restore/`` (POST
    ``snapshot_id``: its content becomes the snapshot's; 409 while attached), ``attach/`` (POST ``instance_id``: 202,
    ``attaching`` until the node reports it plugged in) and ``detach/`` (POST: 202, ``detaching``)."""

    queryset = Volume.objects.select_related("owner_group", "image", "instance").prefetch_related("snapshots")
    serializer_class = VolumeSerializer
    resource_type = ResourceTypeChoices.VOLUME
    authz_actions = {"snapshots": "read", "take_snapshot": "write", "restore": "write", "attach": "write",
                     "detach": "write"}
    lookup_field = "volume_id"
    lookup_value_regex = "[^/]+"
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]
    filter_backends = [SearchFilter, filters.OrderingFilter]
    search_fields = ["name", "volume_id"]
    ordering_fields = ["name", "created", "size_bytes"]

    def get_serializer_class(self):
        if self.action == "partial_update":
            return VolumeChangeSerializer
        return super().get_serializer_class()

    def get_object(self):
        _validated_id(self.kwargs["volume_id"], "volume", "volume_id")
        return refresh_volume(super().get_object())

    def list(self, request, *args, **kwargs):
        page = self.paginate_queryset(self.filter_queryset(self.get_queryset()))
        return self.get_paginated_response(VolumeSerializer(refresh_volumes(page), many=True).data)

    def perform_create(self, serializer):
        data = dict(serializer.validated_data)
        require_create(self.request, self.resource_type, data["owner_group"].path)
        snapshot = None
        if "snapshot_id" in data:
            snapshot = readable_snapshot(self.request, data.pop("snapshot_id"))
        if data.get("image") is not None:
            require(self.request, "read", data["image"])
        serializer.instance = create_volume(
            name=data["name"], owner_group=data["owner_group"], size=data.get("size_bytes"),
            cluster=data.get("cluster", ""), snapshot=snapshot, image=data.get("image"),
            image_version=data.get("image_version", 0))

    def update(self, request, *args, **kwargs):
        volume = self.get_object()
        serializer = VolumeChangeSerializer(volume, data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        if "name" in serializer.validated_data:
            rename_volume(volume, serializer.validated_data["name"])
        return Response(VolumeSerializer(volume).data)

    def perform_destroy(self, instance):
        delete_volume(instance)

    @extend_schema(responses=SnapshotSerializer(many=True))
    @action(detail=True, methods=["get"])
    def snapshots(self, request, volume_id: str):
        """The volume's snapshots, newest first."""
        snapshots = self.get_object().snapshots.select_related("volume", "owner_group")
        return Response(SnapshotSerializer(snapshots, many=True).data)

    @extend_schema(request=None, responses={201: SnapshotSerializer})
    @snapshots.mapping.post
    def take_snapshot(self, request, volume_id: str):
        """Take a snapshot of the volume (crash-consistent while it is attached)."""
        snapshot = create_snapshot(self.get_object())
        return Response(SnapshotSerializer(snapshot).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=RestoreSerializer, responses=VolumeSerializer)
    @action(detail=True, methods=["post"])
    def restore(self, request, volume_id: str):
        """Make the volume's content one of its snapshots' (409 while attached)."""
        volume = self.get_object()
        body = RestoreSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        snapshot = readable_snapshot(request, body.validated_data["snapshot_id"])
        return Response(VolumeSerializer(restore_volume(volume, snapshot)).data)

    @extend_schema(request=AttachSerializer, responses={202: VolumeSerializer})
    @action(detail=True, methods=["post"])
    def attach(self, request, volume_id: str):
        """Attach the volume to a running instance of its cluster (202, ``attaching``; ``in-use`` with its device
        once the node reports it). 409 for a volume that is not available or an instance that does not run, 400
        naming ``instance_id`` for an unknown one, one you may not read or one of another cluster."""
        volume = self.get_object()
        body = AttachSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        instance = usable_instance(request, body.validated_data["instance_id"])
        return Response(VolumeSerializer(attach_volume(volume, instance)).data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(request=None, responses={202: VolumeSerializer})
    @action(detail=True, methods=["post"])
    def detach(self, request, volume_id: str):
        """Detach the volume from its running instance (202, ``detaching``; ``available`` once the node reports it
        unplugged). 409 for a volume that is not attached, or attached to an instance that does not run."""
        volume = self.get_object()
        if volume.instance is not None and not authz.may_use(actor(request), volume.instance):
            raise exceptions.PermissionDenied({"instance_id": [
                f"you may not start or change instance {volume.instance.instance_id}, which the volume is "
                "attached to"]})
        return Response(VolumeSerializer(detach_volume(volume)).data, status=status.HTTP_202_ACCEPTED)


class SnapshotViewSet(VolumeErrorMixin, AuthorizedViewSetMixin, mixins.RetrieveModelMixin,
                      mixins.DestroyModelMixin, viewsets.GenericViewSet):
    """A snapshot: get, delete (its file on the storage controller; volumes made from it are copies and stay). Take
    one with ``POST volumes/<id>/snapshots/``."""

    queryset = Snapshot.objects.select_related("volume", "owner_group")
    serializer_class = SnapshotSerializer
    resource_type = ResourceTypeChoices.VOLUME
    lookup_field = "snapshot_id"
    lookup_value_regex = "[^/]+"

    def get_object(self):
        _validated_id(self.kwargs["snapshot_id"], "snapshot", "snapshot_id")
        return super().get_object()

    def perform_destroy(self, instance):
        delete_snapshot(instance)
