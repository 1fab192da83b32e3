"""API views of the cloud controller for machines: classroom PCs (by MAC) and servers (by role and name), listed,
woken and powered off, and the local desktops a PC's kiosk offers; adapters over ``clc.services.hosts`` and
``clc.services.authz``."""

from __future__ import annotations

from django.db.models import F
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema, extend_schema_view, inline_serializer
from rest_framework import exceptions, filters, mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from clc.api.authz import AuthorizedViewSetMixin, actor, require_create, require_owner_change
from clc.services.authz import ROOT_PATH, kiosk_desktops
from clc.services.hosts import (
    EDITABLE_HOST_FIELDS,
    MachineError,
    add_host,
    change_host,
    delete_host,
    find_hosts,
    find_servers,
    power_off_host,
    power_off_server,
    validate_location,
    wake_host,
    wake_server,
)
from clc.services.servers import drain_server, forget_server, refresh_host, refresh_server
from luhyaapi.drf import IsSignedNode, callers, require_sender
from luhyaapi.filters import SearchFilter
from luhyaapi.openapi import choice_parameter
from luhyaapi.validators import InvalidValue, validate_mac, validate_name
from luhyadb.choices import LivenessChoices, ResourceTypeChoices, RoleChoices
from luhyadb.models import Host, Instance, OwnerGroup, Server


class HostSerializer(serializers.ModelSerializer):
    """A classroom PC: what it reports when it registers (read-only) and what the administrator sets."""

    owner_group = serializers.SlugRelatedField(slug_field="path", queryset=OwnerGroup.objects.all(), allow_null=True,
                                               required=False)

    class Meta:
        model = Host
        fields = ("name", "mac", "ip", "cluster", "location", "owner_group", "state", "last_seen", "heartbeat_seconds",
                  "memory_mb", "disk_mb", "auto_sync", "auto_poweroff", "offline_enabled", "is_pad")
        read_only_fields = ("name", "mac", "ip", "cluster", "state", "last_seen", "heartbeat_seconds", "memory_mb",
                            "disk_mb")

    def validate_location(self, value: str) -> str:
        try:
            return validate_location(value)
        except InvalidValue as exc:
            raise serializers.ValidationError(exc.message) from None


class ServerSerializer(serializers.ModelSerializer):
    """A server as it registered and last reported (read-only)."""

    class Meta:
        model = Server
        fields = ("role", "name", "ip", "mac", "cluster", "api_url", "state", "last_seen", "heartbeat_seconds", "cpus",
                  "memory_mb", "disk_mb", "free_cpus", "free_memory_mb", "free_disk_mb", "cpu_usage", "draining")
        read_only_fields = fields


class DesktopSerializer(serializers.ModelSerializer):
    """A local desktop as a classroom PC's kiosk runs it: the image version to pull (``image``: image_id, version,
    sha256, size), the VM's size and the guest services to forward on the PC."""

    os_type = serializers.CharField(source="image.os_type")
    image = serializers.SerializerMethodField()
    vm_type = serializers.SerializerMethodField()

    class Meta:
        model = Instance
        fields = ("instance_id", "name", "os_type", "image", "vm_type", "services", "persistent", "mac")
        read_only_fields = fields

    def get_image(self, instance: Instance) -> dict:
        image = instance.image
        (version,) = [version for version in image.versions.all() if version.number == image.current_version]
        return {"image_id": image.image_id, "version": version.number, "sha256": version.sha256,
                "size": version.size_bytes}

    def get_vm_type(self, instance: Instance) -> dict:
        return {"name": instance.vm_type.name, "cpus": instance.vm_type.cpus, "memory_mb": instance.vm_type.memory_mb}


class WakeSerializer(serializers.Serializer):
    """The optional body of ``wake/``: another address than the cluster controller's ``cc.wake_broadcast``."""

    broadcast = serializers.CharField(max_length=64, required=False, allow_blank=True, default="")


def _choice(request, name: str, choices: list[str]) -> str:
    value = request.query_params.get(name, "")
    if value and value not in choices:
        raise exceptions.ValidationError({name: [f"must be one of {', '.join(choices)}"]})
    return value


def _broadcast(request) -> str:
    body = WakeSerializer(data=request.data if isinstance(request.data, dict) else {})
    body.is_valid(raise_exception=True)
    return body.validated_data["broadcast"]


WOKEN = inline_serializer("Woken", {
    "mac": serializers.CharField(), "controller": serializers.CharField(), "broadcast": serializers.CharField()})
POWERED_OFF = inline_serializer("PoweredOff", {
    "node": serializers.CharField(), "msg_id": serializers.CharField(), "op": serializers.CharField()})
ASKED = inline_serializer("StatusAsked", {
    "node": serializers.CharField(), "msg_id": serializers.CharField(), "op": serializers.CharField(),
    "last_seen": serializers.DateTimeField(allow_null=True)})
FORGOTTEN = inline_serializer("ServerForgotten", {
    "role": serializers.CharField(), "name": serializers.CharField(), "key_revoked": serializers.BooleanField(),
    "cc_forgot": serializers.BooleanField(allow_null=True)})


class DrainSerializer(serializers.Serializer):
    """The optional body of ``drain/``: ``draining`` false takes a drained node back."""

    draining = serializers.BooleanField(required=False, default=True)


HOST_DESKTOPS = inline_serializer("HostDesktops", {
    "host": inline_serializer("KioskHost", {
        "name": serializers.CharField(), "mac": serializers.CharField(), "cluster": serializers.CharField(),
        "owner_group": serializers.CharField(allow_null=True), "offline_enabled": serializers.BooleanField(),
        "auto_sync": serializers.BooleanField()}),
    "desktops": DesktopSerializer(many=True)})


class MachineViewSet(viewsets.GenericViewSet):
    """What hosts and servers share: refusals of the service become their HTTP status with a ``detail``."""

    filter_backends = [SearchFilter, filters.OrderingFilter]

    def handle_exception(self, exc):
        if isinstance(exc, MachineError):
            return Response({"detail": str(exc)}, status=exc.status)
        return super().handle_exception(exc)


class HostCreateSerializer(HostSerializer):
    """A PC recorded by hand before it first starts: its name, MAC, address and cluster too."""

    class Meta(HostSerializer.Meta):
        read_only_fields = ("state", "last_seen", "heartbeat_seconds", "memory_mb", "disk_mb")


@extend_schema_view(list=extend_schema(parameters=[choice_parameter("state", LivenessChoices.values)]))
class HostViewSet(AuthorizedViewSetMixin, mixins.CreateModelMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin,
                  mixins.UpdateModelMixin, mixins.DestroyModelMixin, MachineViewSet):
    """Classroom PCs (they add themselves when they start; ``POST hosts/`` records one by hand first): list
    (``?search=``, ``?state=``, paginated), get, change location, owner-group and flags, delete, and ``wake/`` /
    ``poweroff/`` (202). A malformed MAC is a 400 naming ``mac``, an unknown one a 404, a known one 409."""

    serializer_class = HostSerializer
    resource_type = ResourceTypeChoices.HOST
    authz_actions = {"wake": "execute", "poweroff": "execute", "refresh": "execute"}
    lookup_field = "mac"
    lookup_value_regex = "[^/]+"
    search_fields = ["name", "mac", "ip", "location", "cluster"]
    ordering_fields = ["name", "cluster", "state", "last_seen"]

    def get_serializer_class(self):
        return HostCreateSerializer if self.action == "create" else HostSerializer

    def perform_create(self, serializer):
        group = serializer.validated_data.get("owner_group")
        require_create(self.request, self.resource_type, group.path if group else ROOT_PATH)
        try:
            serializer.instance = add_host(**serializer.validated_data)
        except InvalidValue as exc:
            raise exceptions.ValidationError({exc.field: [exc.message]}) from None

    def get_queryset(self):
        return find_hosts(state=_choice(self.request, "state", LivenessChoices.values))

    def get_object(self):
        self.kwargs["mac"] = validate_mac(self.kwargs["mac"], "mac")
        return super().get_object()

    def perform_update(self, serializer):
        require_owner_change(self.request, serializer, self.resource_type)
        values = {field: serializer.validated_data.get(field, getattr(serializer.instance, field))
                  for field in EDITABLE_HOST_FIELDS}
        serializer.instance = change_host(serializer.instance, **values)

    def perform_destroy(self, instance):
        delete_host(instance)

    @extend_schema(request=WakeSerializer, responses={202: WOKEN})
    @action(detail=True, methods=["post"])
    def wake(self, request, mac: str):
        host = self.get_object()
        return Response(wake_host(host, _broadcast(request)), status=status.HTTP_202_ACCEPTED)

    @extend_schema(request=None, responses={202: POWERED_OFF})
    @action(detail=True, methods=["post"])
    def poweroff(self, request, mac: str):
        return Response(power_off_host(self.get_object()), status=status.HTTP_202_ACCEPTED)

    @extend_schema(request=None, responses={202: ASKED})
    @action(detail=True, methods=["post"])
    def refresh(self, request, mac: str):
        """Ask the PC for its status now (through the node controller it runs); its report moves ``last_seen``."""
        return Response(refresh_host(self.get_object()), status=status.HTTP_202_ACCEPTED)

    @extend_schema(responses=HOST_DESKTOPS)
    @action(detail=True, methods=["get"], permission_classes=[IsSignedNode], signed_callers=callers("cc"))
    def desktops(self, request, mac: str):
        """``GET hosts/<mac>/desktops/`` (signed only, by the CC of the PC's cluster: the PC's node controller asks
        through it; people get 403): the PC and the local desktops its kiosk offers (``kiosk_desktops``), those
        whose image has a file."""
        host = self.get_object()
        require_sender(request, cluster=host.cluster)
        offered = (kiosk_desktops(host).filter(image__versions__number=F("image__current_version"))
                   .prefetch_related("image__versions").order_by("name", "instance_id"))
        return Response({
            "host": {"name": host.name, "mac": host.mac, "cluster": host.cluster,
                     "owner_group": host.owner_group.path if host.owner_group_id else None,
                     "offline_enabled": host.offline_enabled, "auto_sync": host.auto_sync},
            "desktops": DesktopSerializer(offered, many=True).data})


@extend_schema_view(list=extend_schema(parameters=[choice_parameter("role", RoleChoices.values),
                                                   choice_parameter("state", LivenessChoices.values)]))
class ServerViewSet(AuthorizedViewSetMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin, MachineViewSet):
    """Servers: list (``?search=``, ``?role=``, ``?state=``, paginated), get by role and name, and ``wake/`` (nc and
    sc) / ``poweroff/`` (nc) (202), ``refresh/`` (its status now, 202), ``drain/`` (nc: no new instances) and
    ``DELETE`` (forget it; 409 naming what still needs it). A bad role or name is a 400 naming it, an unknown server
    a 404."""

    serializer_class = ServerSerializer
    resource_type = ResourceTypeChoices.SERVER
    authz_actions = {"wake": "execute", "poweroff": "execute", "refresh": "execute", "drain": "execute"}
    search_fields = ["name", "mac", "ip", "cluster"]
    ordering_fields = ["role", "name", "cluster", "state", "last_seen"]

    def get_queryset(self):
        return find_servers(role=_choice(self.request, "role", RoleChoices.values),
                            state=_choice(self.request, "state", LivenessChoices.values))

    def get_object(self):
        role = self.kwargs["role"]
        if role not in RoleChoices.values:
            raise exceptions.ValidationError({"role": [f"must be one of {', '.join(RoleChoices.values)}"]})
        server = get_object_or_404(Server, role=role, name=validate_name(self.kwargs["name"], "name"))
        self.check_object_permissions(self.request, server)
        return server

    @extend_schema(request=WakeSerializer, responses={202: WOKEN})
    def wake(self, request, role: str, name: str):
        server = self.get_object()
        return Response(wake_server(server, _broadcast(request)), status=status.HTTP_202_ACCEPTED)

    @extend_schema(request=None, responses={202: POWERED_OFF})
    def poweroff(self, request, role: str, name: str):
        return Response(power_off_server(self.get_object()), status=status.HTTP_202_ACCEPTED)

    @extend_schema(request=None, responses={202: ASKED})
    def refresh(self, request, role: str, name: str):
        return Response(refresh_server(self.get_object()), status=status.HTTP_202_ACCEPTED)

    @extend_schema(request=DrainSerializer, responses={200: ServerSerializer})
    def drain(self, request, role: str, name: str):
        server = self.get_object()
        body = DrainSerializer(data=request.data if isinstance(request.data, dict) else {"draining": request.data})
        body.is_valid(raise_exception=True)
        return Response(ServerSerializer(drain_server(server, body.validated_data["draining"])).data)

    @extend_schema(request=None, responses={200: FORGOTTEN})
    def destroy(self, request, role: str, name: str):
        return Response(forget_server(self.get_object(), actor(request)))
