"""API views of the cloud controller: adapters that validate, call one service and map its errors."""

from __future__ import annotations

from rest_framework import exceptions, filters, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response
from rest_framework.views import APIView

from clc.api.serializers import ImageSerializer, PrepareSerializer, UploadCompleteSerializer, UploadStartSerializer
from clc.services.commands import CommandError, send_node_command
from clc.services.images import ImageError, create_image, delete_image, finish_upload, prepare_on_node, start_upload
from clc.services.registry import cloud_status, register_host, register_server
from clc.services.tasks import TaskNotFound, task_status
from luhyaapi.api import validated
from luhyaapi.drf import IsSignedNode
from luhyaapi.ids import InvalidId, validate_id
from luhyaapi.messages import CommandRequest, HostRegistration, ServerRegistration
from luhyaapi.validators import validate_name
from luhyadb.choices import LivenessChoices, RoleChoices
from luhyadb.models import Image


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


class ImageViewSet(viewsets.ModelViewSet):
    """Images: list (``?search=``, paginated), create, get, change properties, delete (409 while in use), and
    their file uploads (``uploads/`` to start one, ``uploads/<upload_id>/complete/`` to finish it)."""

    queryset = Image.objects.select_related("owner_group").prefetch_related("versions")
    serializer_class = ImageSerializer
    lookup_field = "image_id"
    lookup_value_regex = "[^/]+"
    filter_backends = [filters.SearchFilter, filters.OrderingFilter]
    search_fields = ["name", "description", "image_id"]
    ordering_fields = ["name", "pub_date", "size_bytes"]

    def get_object(self):
        try:
            validate_id(self.kwargs["image_id"], "image")
        except InvalidId as exc:
            raise exceptions.ValidationError({"image_id": [str(exc)]}) from None
        return super().get_object()

    def perform_create(self, serializer):
        serializer.instance = create_image(**serializer.validated_data)

    def perform_destroy(self, instance):
        delete_image(instance)

    def handle_exception(self, exc):
        if isinstance(exc, ImageError):
            return Response({"detail": str(exc)}, status=exc.status)
        return super().handle_exception(exc)

    @action(detail=True, methods=["post"], url_path="uploads")
    def start_upload(self, request, image_id: str):
        request_data = UploadStartSerializer(data=request.data)
        request_data.is_valid(raise_exception=True)
        upload = start_upload(self.get_object(), **request_data.validated_data)
        return Response(upload, status=status.HTTP_201_CREATED)

    @action(detail=True, methods=["post"], url_path="prepare")
    def prepare(self, request, image_id: str):
        """Pull the image into a node's cache (``{"node": "nc-1", "version": 2}``); follow ``tasks/<tid>/``."""
        request_data = PrepareSerializer(data=request.data)
        request_data.is_valid(raise_exception=True)
        task = prepare_on_node(self.get_object(), request_data.validated_data["node"],
                               request_data.validated_data.get("version"))
        return Response({"tid": task.tid, "phase": task.phase, "state": task.state}, status=status.HTTP_202_ACCEPTED)

    @action(detail=True, methods=["post"], url_path=r"uploads/(?P<upload_id>[^/]+)/complete")
    def complete_upload(self, request, image_id: str, upload_id: str):
        UploadCompleteSerializer(data={"upload_id": upload_id}).is_valid(raise_exception=True)
        version = finish_upload(self.get_object(), upload_id)
        return Response(ImageSerializer(version.image).data, status=status.HTTP_201_CREATED)


class TaskView(APIView):
    """``GET tasks/<tid>/``: a task's record with its live progress from the status cache."""

    def get(self, request, tid: str):
        if len(tid) > 128 or not tid.replace(":", "").replace("-", "").isalnum():
            raise exceptions.ValidationError({"tid": ["not a task id (srcid:dstid:insid)"]})
        try:
            return Response(task_status(tid))
        except TaskNotFound as exc:
            raise exceptions.NotFound(str(exc)) from None
