"""API views of the cloud controller: adapters that validate, call one service and map its errors."""

from __future__ import annotations

from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import APIView

from clc.services.commands import CommandError, send_node_command
from clc.services.registry import cloud_status, register_host, register_server
from luhyaapi.api import validated
from luhyaapi.drf import IsSignedNode
from luhyaapi.messages import CommandRequest, HostRegistration, ServerRegistration
from luhyaapi.validators import validate_name
from luhyadb.choices import LivenessChoices, RoleChoices


def _int_param(request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query_params.get(name, str(default))
    if not raw.isdigit() or not low <= int(raw) <= high:
        raise exceptions.ValidationError({name: [f"must be a whole number from {low} to {high}"]})
    return int(raw)


def _choice_param(request, name: str, choices: list[str]) -> str:
    value = request.query_params.get(name, "")
    if value and value not in choices:
        raise exceptions.ValidationError({name: [f"must be one of {', '.join(choices)}"]})
    return value


class RegisterServerView(APIView):
    """A server announces itself (signed): ``POST register/server/``."""

    permission_classes = [IsSignedNode]

    def post(self, request):
        server = register_server(validated(ServerRegistration, request.data))
        return Response({"role": server.role, "name": server.name, "state": server.state},
                        status=status.HTTP_201_CREATED)


class RegisterHostView(APIView):
    """A classroom PC announces itself through its CC (signed): ``POST register/host/``."""

    permission_classes = [IsSignedNode]

    def post(self, request):
        host = register_host(validated(HostRegistration, request.data))
        return Response({"name": host.name, "mac": host.mac, "state": host.state}, status=status.HTTP_201_CREATED)


class StatusView(APIView):
    """``GET status/``: services and hosts with state, last seen and resources (filters role, state; paginated)."""

    def get(self, request):
        return Response(cloud_status(
            role=_choice_param(request, "role", RoleChoices.values),
            state=_choice_param(request, "state", LivenessChoices.values),
            limit=_int_param(request, "limit", 500, 1, 5000),
            offset=_int_param(request, "offset", 0, 0, 10**9),
        ))


class NodeCommandView(APIView):
    """``POST nodes/<name>/commands/``: queue a command for a node controller through its cluster controller."""

    def post(self, request, name: str):
        validate_name(name, "name")
        command = validated(CommandRequest, request.data)
        try:
            answer = send_node_command(name, command.op, command.paras)
        except CommandError as exc:
            return Response({"detail": str(exc)}, status=exc.status)
        return Response(answer, status=status.HTTP_202_ACCEPTED)
