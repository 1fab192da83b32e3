"""API views of the cluster controller: adapters over ``cc.services``."""

from __future__ import annotations

from django.conf import settings
from django.http import StreamingHttpResponse
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import APIView

from cc.services.image_cache import ImageUnavailable, cluster_cache
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
from luhyaapi.ids import validate_id
from luhyaapi.imagecache import CacheFull
from luhyaapi.messages import CommandRequest, HostRegistration, ServerRegistration
from luhyaapi.ranges import RangeNotSatisfiable, set_file_headers, unsatisfiable_headers, wanted_range
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


class ImageDataView(APIView):
    """``GET images/<image_id>/versions/<n|current>/data`` (signed, from the cluster's NCs): the image file from the
    cluster cache, fetched from walrus once and streamed to every NC that asks meanwhile; ``Range`` resumes."""

    def get(self, request, image_id: str, version: str):
        validate_id(image_id, "image")
        if version != "current" and not (version.isdigit() and int(version) > 0):
            raise exceptions.ValidationError({"version": ["a version number or 'current'"]})
        cache = cluster_cache()
        try:
            info = cache.describe(image_id, version)
            cached, fetch = cache.open(info)
        except ImageUnavailable as exc:
            return Response({"detail": str(exc)}, status=exc.status)
        except CacheFull as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_507_INSUFFICIENT_STORAGE)
        try:
            span = wanted_range(request.headers, info.size, info.sha256)
        except RangeNotSatisfiable as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_416_REQUESTED_RANGE_NOT_SATISFIABLE,
                            headers=unsatisfiable_headers(info.size, info.sha256))
        first, last = span if span else (0, info.size - 1)
        response = StreamingHttpResponse(cache.read(cached, fetch, first, last),
                                         content_type="application/octet-stream")
        set_file_headers(response, size=info.size, sha256=info.sha256, first=first, last=last,
                         partial=span is not None)
        response["X-Educloud-Version"] = str(info.version)
        return response
