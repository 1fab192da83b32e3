"""API views of the cluster controller: adapters over ``cc.services``."""

from __future__ import annotations

from django.conf import settings
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import APIView

from cc.services.nodes import (
    UnknownNode,
    WrongCluster,
    queue_node_command,
    register_cluster_host,
    register_cluster_server,
)
from luhyaapi.api import validated
from luhyaapi.bus import get_bus
from luhyaapi.client import RemoteError
from luhyaapi.drf import IsSignedNode
from luhyaapi.messages import CommandRequest, HostRegistration, ServerRegistration
from luhyaapi.validators import validate_name


def _refusal(exc: Exception) -> Response:
    if isinstance(exc, WrongCluster):
        return Response({"detail": str(exc)}, status=status.HTTP_409_CONFLICT)
    return Response({"detail": f"the cloud controller did not accept it: {exc}"}, status=status.HTTP_502_BAD_GATEWAY)


class RegisterServerView(APIView):
    """An NC or SC of this cluster announces itself (signed)."""

    permission_classes = [IsSignedNode]

    def post(self, request):
        try:
            node = register_cluster_server(validated(ServerRegistration, request.data))
        except (WrongCluster, RemoteError) as exc:
            return _refusal(exc)
        return Response({"role": node.role, "name": node.name}, status=status.HTTP_201_CREATED)


class RegisterHostView(APIView):
    """A classroom PC of this cluster announces itself (signed); passed on to the CLC."""

    permission_classes = [IsSignedNode]

    def post(self, request):
        registration = validated(HostRegistration, request.data)
        try:
            register_cluster_host(registration)
        except (WrongCluster, RemoteError) as exc:
            return _refusal(exc)
        return Response({"name": registration.name, "mac": registration.mac}, status=status.HTTP_201_CREATED)


class NodeCommandView(APIView):
    """``POST nodes/<name>/commands/`` (signed, from the CLC): queue a command for one of this cluster's NCs."""

    permission_classes = [IsSignedNode]

    def post(self, request, name: str):
        validate_name(name, "name")
        try:
            command = queue_node_command(get_bus(settings.EDUCLOUD.bus_url), name,
                                         validated(CommandRequest, request.data))
        except UnknownNode as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_404_NOT_FOUND)
        return Response({"msg_id": command.msg_id, "op": command.op}, status=status.HTTP_202_ACCEPTED)
