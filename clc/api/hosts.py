"""API views of the cloud controller for machines: classroom PCs (by MAC) and servers (by role and name), listed,
woken and powered off; adapters over ``clc.services.hosts``."""

from __future__ import annotations

from django.shortcuts import get_object_or_404
from rest_framework import exceptions, filters, mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from clc.services.hosts import (
    EDITABLE_HOST_FIELDS,
    MachineError,
    change_host,
    delete_host,
    find_hosts,
    find_servers,
    power_off_host,
    power_off_server,
    wake_host,
    wake_server,
)
from luhyaapi.validators import validate_mac, validate_name
from luhyadb.choices import LivenessChoices, RoleChoices
from luhyadb.models import Host, OwnerGroup, Server


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
        if any(ord(char) < 32 or char == "\x7f" for char in value):
            raise serializers.ValidationError("may not contain control characters")
        return value.strip()


class ServerSerializer(serializers.ModelSerializer):
    """A server as it registered and last reported (read-only)."""

    class Meta:
        model = Server
        fields = ("role", "name", "ip", "mac", "cluster", "api_url", "state", "last_seen", "heartbeat_seconds", "cpus",
                  "memory_mb", "disk_mb", "free_cpus", "free_memory_mb", "free_disk_mb", "cpu_usage")
        read_only_fields = fields


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


class MachineViewSet(viewsets.GenericViewSet):
    """What hosts and servers share: refusals of the service become their HTTP status with a ``detail``."""

    filter_backends = [filters.SearchFilter, filters.OrderingFilter]

    def handle_exception(self, exc):
        if isinstance(exc, MachineError):
            return Response({"detail": str(exc)}, status=exc.status)
        return super().handle_exception(exc)


class HostViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.UpdateModelMixin,
                  mixins.DestroyModelMixin, MachineViewSet):
    """Classroom PCs (they add themselves when they start): list (``?search=``, ``?state=``, paginated), get,
    change location, owner-group and flags, delete, and ``wake/`` / ``poweroff/`` (202). A malformed MAC is a 400
    naming ``mac``, an unknown one a 404."""

    serializer_class = HostSerializer
    lookup_field = "mac"
    lookup_value_regex = "[^/]+"
    search_fields = ["name", "mac", "ip", "location", "cluster"]
    ordering_fields = ["name", "cluster", "state", "last_seen"]

    def get_queryset(self):
        return find_hosts(state=_choice(self.request, "state", LivenessChoices.values))

    def get_object(self):
        self.kwargs["mac"] = validate_mac(self.kwargs["mac"], "mac")
        return super().get_object()

    def perform_update(self, serializer):
        values = {field: serializer.validated_data.get(field, getattr(serializer.instance, field))
                  for field in EDITABLE_HOST_FIELDS}
        serializer.instance = change_host(serializer.instance, **values)

    def perform_destroy(self, instance):
        delete_host(instance)

    @action(detail=True, methods=["post"])
    def wake(self, request, mac: str):
        host = self.get_object()
        return Response(wake_host(host, _broadcast(request)), status=status.HTTP_202_ACCEPTED)

    @action(detail=True, methods=["post"])
    def poweroff(self, request, mac: str):
        return Response(power_off_host(self.get_object()), status=status.HTTP_202_ACCEPTED)


class ServerViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, MachineViewSet):
    """Servers: list (``?search=``, ``?role=``, ``?state=``, paginated), get by role and name, and ``wake/`` (nc and
    sc) / ``poweroff/`` (nc) (202). A bad role or name is a 400 naming it, an unknown server a 404."""

    serializer_class = ServerSerializer
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

    def wake(self, request, role: str, name: str):
        server = self.get_object()
        return Response(wake_server(server, _broadcast(request)), status=status.HTTP_202_ACCEPTED)

    def poweroff(self, request, role: str, name: str):
        return Response(power_off_server(self.get_object()), status=status.HTTP_202_ACCEPTED)
