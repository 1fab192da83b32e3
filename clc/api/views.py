"""API views of the cloud controller: adapters that validate, call one service and map its errors."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view, inline_serializer
from rest_framework import exceptions, filters, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response
from rest_framework.reverse import reverse
from rest_framework.views import APIView

from clc.api.authz import (
    AuthorizedViewSetMixin,
    SignedOrPerson,
    actor,
    check_person,
    is_signed,
    require,
    require_create,
    require_owner_change,
    require_type,
)
from clc.api.serializers import (
    BuildStartSerializer,
    ImageSerializer,
    InstanceSerializer,
    PrepareSerializer,
    UploadCompleteSerializer,
    UploadStartSerializer,
    VMTypeSerializer,
)
from clc.services import authz
from clc.services.builds import (
    begin_build,
    build_steps,
    cancel_build,
    prepare_build,
    run_build,
    stop_build,
    submit_build,
)
from clc.services.commands import CommandError, send_direct_command
from clc.services.images import ImageError, create_image, delete_image, finish_upload, prepare_on_node, start_upload
from clc.services.instances import InstanceError, define_instance, delete_instance, run_instance, stop_instance
from clc.services.portal import PortalError, console_details
from clc.services.push import PushRefused, push_desktop, validate_push_hosts
from clc.services.registry import cloud_status, may_see_status, register_host, register_server
from clc.services.tasks import TaskNotFound, task_status
from clc.services.vmtypes import VMTypeInUse, change_vm_type, create_vm_type, delete_vm_type
from luhyaapi.api import validated
from luhyaapi.drf import IsSignedNode, callers, require_sender, signed_node
from luhyaapi.filters import SearchFilter
from luhyaapi.ids import InvalidId, TaskId, validate_id
from luhyaapi.messages import CommandRequest, HostRegistration, ServerRegistration
from luhyaapi.openapi import choice_parameter, number_parameter
from luhyaapi.trust import registration_refusal
from luhyaapi.validators import validate_name
from luhyadb.choices import InstanceKindChoices, InstanceStateChoices, LivenessChoices, ResourceTypeChoices, RoleChoices
from luhyadb.models import Image, Instance, TaskTransaction, VMType


def _int_param(request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query_params.get(name, str(default))
    if not raw.isdigit() or not low <= int(raw) <= high:
        raise exceptions.ValidationError({name: [f"must be a whole number from {low} to {high}"]})
    return int(raw)


TASK_ID = OpenApiParameter("tid", str, OpenApiParameter.PATH, description="the task id srcid:dstid:insid",
                           pattern=r"^img-[0-9a-f]{8}:img-[0-9a-f]{8}:ins-[0-9a-f]{8}$")
TASK_STATUS = inline_serializer("TaskStatus", {
    "tid": serializers.CharField(), "phase": serializers.CharField(), "state": serializers.CharField(),
    "progress": serializers.IntegerField(), "vmstatus": serializers.CharField(), "ccip": serializers.CharField(),
    "ncip": serializers.CharField(), "message": serializers.CharField(), "failed": serializers.BooleanField(),
    "done": serializers.BooleanField(), "updated": serializers.FloatField()})
BUILD = inline_serializer("Build", {
    "tid": serializers.CharField(), "phase": serializers.CharField(), "state": serializers.CharField(),
    "progress": serializers.IntegerField(), "src_image_id": serializers.CharField(),
    "dst_image_id": serializers.CharField(), "create": serializers.BooleanField(),
    "steps": serializers.DictField(child=serializers.BooleanField()),
    "instance": InstanceSerializer(allow_null=True)})


def _choice_param(request, name: str, choices: list[str]) -> str:
    value = request.query_params.get(name, "")
    if value and value not in choices:
        raise exceptions.ValidationError({name: [f"must be one of {', '.join(choices)}"]})
    return value


class RegisterServerView(APIView):
    """A server announces itself (signed): ``POST register/server/``; a CC passes on its own cluster's nodes and
    storage controllers."""

    permission_classes = [IsSignedNode]
    signed_callers = callers("clc", "walrus", "cc", "watch")

    @extend_schema(request=ServerRegistration, responses={201: inline_serializer("RegisteredServer", {
        "role": serializers.CharField(), "name": serializers.CharField(), "state": serializers.CharField()})})
    def post(self, request):
        registration = validated(ServerRegistration, request.data)
        sender = signed_node(request)
        relayed = (sender.name != registration.name and "cc" in sender.roles
                   and registration.role in ("nc", "sc") and registration.cluster == sender.cluster)
        refusal = "" if relayed else registration_refusal(
            sender, role=registration.role, name=registration.name, cluster=registration.cluster,
            classroom_pc=registration.classroom_pc)
        if refusal:
            raise exceptions.PermissionDenied(refusal)
        server = register_server(registration)
        return Response({"role": server.role, "name": server.name, "state": server.state},
                        status=status.HTTP_201_CREATED)


class RegisterHostView(APIView):
    """A classroom PC announces itself through its CC (signed): ``POST register/host/``."""

    permission_classes = [IsSignedNode]
    signed_callers = callers("cc")

    @extend_schema(request=HostRegistration, responses={201: inline_serializer("RegisteredHost", {
        "name": serializers.CharField(), "mac": serializers.CharField(), "state": serializers.CharField()})})
    def post(self, request):
        registration = validated(HostRegistration, request.data)
        require_sender(request, cluster=registration.cluster)
        host = register_host(registration)
        return Response({"name": host.name, "mac": host.mac, "state": host.state}, status=status.HTTP_201_CREATED)


class StatusView(APIView):
    """``GET status/``: services and hosts with state, last seen and resources (filters role, state; paginated)."""

    permission_classes = [SignedOrPerson]

    @extend_schema(
        parameters=[choice_parameter("role", RoleChoices.values), choice_parameter("state", LivenessChoices.values),
                    number_parameter("limit", 1, 5000, description="at most this many services"),
                    number_parameter("offset", 0, 10**9, description="services to skip")],
        responses=inline_serializer("CloudStatus", {
            "generated_at": serializers.FloatField(), "count": serializers.IntegerField(),
            "limit": serializers.IntegerField(), "offset": serializers.IntegerField(),
            "services": serializers.ListField(child=serializers.DictField()),
            "hosts": serializers.ListField(child=serializers.DictField())}))
    def get(self, request):
        person = None if is_signed(request) else check_person(request)
        if person is not None and not may_see_status(person):
            raise exceptions.PermissionDenied("you may not read servers or classroom PCs")
        return Response(cloud_status(
            person,
            role=_choice_param(request, "role", RoleChoices.values),
            state=_choice_param(request, "state", LivenessChoices.values),
            limit=_int_param(request, "limit", 500, 1, 5000),
            offset=_int_param(request, "offset", 0, 0, 10**9),
        ))


class NodeCommandView(APIView):
    """``POST nodes/<name>/commands/``: queue a command that changes no record (``DIRECT_OPS``: ask for a report
    now) for a node controller through its cluster controller; servers are the root's, so is this."""

    permission_classes = [SignedOrPerson]

    @extend_schema(request=CommandRequest, responses={202: inline_serializer("QueuedCommand", {
        "msg_id": serializers.CharField(), "op": serializers.CharField()})})
    def post(self, request, name: str):
        require_type(request, "execute", ResourceTypeChoices.SERVER)
        validate_name(name, "name")
        command = validated(CommandRequest, request.data)
        try:
            answer = send_direct_command(name, command.op, command.paras)
        except CommandError as exc:
            return Response({exc.field: [str(exc)]} if exc.field else {"detail": str(exc)}, status=exc.status)
        return Response(answer, status=status.HTTP_202_ACCEPTED)


class ImageViewSet(AuthorizedViewSetMixin, viewsets.ModelViewSet):
    """Images: list (``?search=``, paginated), create, get, change properties, delete (409 while in use), and
    their file uploads (``uploads/`` to start one, ``uploads/<upload_id>/complete/`` to finish it)."""

    queryset = Image.objects.select_related("owner_group").prefetch_related("versions", "apps")
    serializer_class = ImageSerializer
    resource_type = ResourceTypeChoices.IMAGE
    authz_actions = {"start_upload": "write", "complete_upload": "write", "prepare": "execute"}
    lookup_field = "image_id"
    lookup_value_regex = "[^/]+"
    filter_backends = [SearchFilter, filters.OrderingFilter]
    search_fields = ["name", "description", "image_id"]
    ordering_fields = ["name", "pub_date", "size_bytes"]

    def get_object(self):
        try:
            validate_id(self.kwargs["image_id"], "image")
        except InvalidId as exc:
            raise exceptions.ValidationError({"image_id": [str(exc)]}) from None
        return super().get_object()

    def perform_create(self, serializer):
        require_create(self.request, self.resource_type, serializer.validated_data["owner_group"].path)
        serializer.instance = create_image(**serializer.validated_data)

    def perform_update(self, serializer):
        require_owner_change(self.request, serializer, self.resource_type)
        serializer.save()

    def perform_destroy(self, instance):
        delete_image(instance, actor(self.request))

    def handle_exception(self, exc):
        if isinstance(exc, ImageError):
            return Response({"detail": str(exc)} | ({"reason": exc.reason} if exc.reason else {}), status=exc.status)
        return super().handle_exception(exc)

    @extend_schema(request=UploadStartSerializer, responses={201: inline_serializer("ImageUpload", {
        "upload_id": serializers.CharField(), "image_id": serializers.CharField(), "size": serializers.IntegerField(),
        "offset": serializers.IntegerField(), "state": serializers.CharField(), "data_url": serializers.CharField(),
        "walrus_url": serializers.CharField()})})
    @action(detail=True, methods=["post"], url_path="uploads")
    def start_upload(self, request, image_id: str):
        request_data = UploadStartSerializer(data=request.data)
        request_data.is_valid(raise_exception=True)
        upload = start_upload(self.get_object(), **request_data.validated_data)
        return Response(upload, status=status.HTTP_201_CREATED)

    @extend_schema(request=PrepareSerializer, responses={202: inline_serializer("StartedTask", {
        "tid": serializers.CharField(), "phase": serializers.CharField(), "state": serializers.CharField()})})
    @action(detail=True, methods=["post"], url_path="prepare")
    def prepare(self, request, image_id: str):
        """Pull the image into a node's cache (``{"node": "nc-1", "version": 2}``); follow ``tasks/<tid>/``."""
        request_data = PrepareSerializer(data=request.data)
        request_data.is_valid(raise_exception=True)
        task = prepare_on_node(self.get_object(), request_data.validated_data["node"],
                               request_data.validated_data.get("version"))
        return Response({"tid": task.tid, "phase": task.phase, "state": task.state}, status=status.HTTP_202_ACCEPTED)

    @extend_schema(request=None, responses={201: ImageSerializer},
                   parameters=[OpenApiParameter("upload_id", str, OpenApiParameter.PATH, pattern=r"^upl-[0-9a-f]{8}$")])
    @action(detail=True, methods=["post"], url_path=r"uploads/(?P<upload_id>[^/]+)/complete")
    def complete_upload(self, request, image_id: str, upload_id: str):
        """Complete a finished upload: the image with its new version (201). A repeated call answers the same."""
        UploadCompleteSerializer(data={"upload_id": upload_id}).is_valid(raise_exception=True)
        version = finish_upload(self.get_object(), upload_id)
        return Response(ImageSerializer(version.image).data, status=status.HTTP_201_CREATED)


@extend_schema_view(list=extend_schema(parameters=[choice_parameter("kind", InstanceKindChoices.values),
                                                   choice_parameter("state", InstanceStateChoices.values)]))
class InstanceViewSet(AuthorizedViewSetMixin, viewsets.ModelViewSet):
    """Instances: list (``?search=``, ``?kind=``, ``?state=``, paginated), define, get, change (when not running),
    delete (202 while its node removes it), ``run/`` / ``stop/`` (202; follow ``state`` or ``tasks/<tid>/``),
    ``console/`` (GET: the running console's URL and password), and for a local desktop ``push/``
    ``{"hosts": [mac, ...]}`` (202): those classroom PCs pull its image, one task each."""

    queryset = Instance.objects.select_related("image", "vm_type", "owner_group", "assigned_to")
    serializer_class = InstanceSerializer
    resource_type = ResourceTypeChoices.INSTANCE
    authz_actions = {"run": "execute", "stop": "execute", "push": "execute", "console": "execute"}
    lookup_field = "instance_id"
    lookup_value_regex = "[^/]+"
    filter_backends = [SearchFilter, filters.OrderingFilter]
    search_fields = ["name", "instance_id", "node", "image__name"]
    ordering_fields = ["name", "created", "state"]

    def get_queryset(self):
        queryset = super().get_queryset()
        for name, choices in (("kind", InstanceKindChoices.values), ("state", InstanceStateChoices.values)):
            value = _choice_param(self.request, name, choices)
            if value:
                queryset = queryset.filter(**{name: value})
        return queryset

    def get_object(self):
        try:
            validate_id(self.kwargs["instance_id"], "instance")
        except InvalidId as exc:
            raise exceptions.ValidationError({"instance_id": [str(exc)]}) from None
        return super().get_object()

    def perform_create(self, serializer):
        require_create(self.request, self.resource_type, serializer.validated_data["owner_group"].path)
        require(self.request, "read", serializer.validated_data["image"])
        serializer.instance = define_instance(**serializer.validated_data)

    def perform_update(self, serializer):
        require_owner_change(self.request, serializer, self.resource_type)
        if "image" in serializer.validated_data:
            require(self.request, "read", serializer.validated_data["image"])
        serializer.save()

    @extend_schema(responses={204: None, 202: inline_serializer("Deleting", {"state": serializers.CharField()})})
    def destroy(self, request, *args, **kwargs):
        gone = delete_instance(self.get_object())
        if gone:
            return Response(status=status.HTTP_204_NO_CONTENT)
        return Response({"state": "deleting"}, status=status.HTTP_202_ACCEPTED)

    def handle_exception(self, exc):
        if isinstance(exc, InstanceError):
            return Response({"detail": str(exc)}, status=exc.status)
        if isinstance(exc, PushRefused):
            return Response({"detail": str(exc), "reasons": exc.reasons}, status=exc.status)
        if isinstance(exc, PortalError):
            return Response({"detail": str(exc)}, status=exc.status)
        return super().handle_exception(exc)

    @extend_schema(responses=inline_serializer("Console", {
        "url": serializers.CharField(), "protocol": serializers.CharField(), "password": serializers.CharField()}))
    @action(detail=True, methods=["get"])
    def console(self, request, instance_id: str):
        """``{"url", "protocol", "password"}`` of the running console, for who may execute the instance: what a
        native VNC client needs (the password is new for each run)."""
        return Response(console_details(self.get_object()))

    @extend_schema(request=None, responses={202: InstanceSerializer})
    @action(detail=True, methods=["post"])
    def run(self, request, instance_id: str):
        """202 with the instance: placed (its node and console), or still waiting for a cluster (``placing``
        queued or asked, ``detail`` says which); 409/503 when it was refused, and it is then as it was."""
        instance = run_instance(self.get_object())
        body = InstanceSerializer(instance).data
        if instance.placing:
            body["detail"] = instance.message
        return Response(body, status=status.HTTP_202_ACCEPTED)

    @extend_schema(
        request=inline_serializer("PushRequest", {
            "hosts": serializers.ListField(child=serializers.RegexField(r"^[0-9a-f]{2}(?::[0-9a-f]{2}){5}$"),
                                           min_length=1)}),
        responses={202: inline_serializer("Pushed", {
            "instance_id": serializers.CharField(),
            "pushed": serializers.ListField(child=serializers.DictField(child=serializers.CharField()))})})
    @action(detail=True, methods=["post"])
    def push(self, request, instance_id: str):
        """The PCs are each checked with host execute; nothing is pushed if one is refused."""
        desktop = self.get_object()
        hosts = validate_push_hosts(request.data.get("hosts") if isinstance(request.data, dict) else None)
        pushed = push_desktop(actor(request), desktop, hosts)
        return Response({"instance_id": desktop.instance_id, "pushed": [
            {"host": item.host.name, "mac": item.host.mac, "node": item.node, "tid": item.tid,
             "task": reverse("clc-api:task", args=[item.tid], request=request)} for item in pushed]},
            status=status.HTTP_202_ACCEPTED)

    @extend_schema(request=None, responses={202: InstanceSerializer})
    @action(detail=True, methods=["post"])
    def stop(self, request, instance_id: str):
        instance = stop_instance(self.get_object())
        return Response(InstanceSerializer(instance).data, status=status.HTTP_202_ACCEPTED)


class VMTypeViewSet(AuthorizedViewSetMixin, viewsets.ModelViewSet):
    """VM types (sizes) an instance may have: list (paginated) and get for every console role; create, change and
    delete for the root's super administrators (a bad value is a 400 naming the field, delete a 409 while instances
    use the type)."""

    queryset = VMType.objects.all()
    resource_type = ResourceTypeChoices.VMTYPE
    serializer_class = VMTypeSerializer
    lookup_field = "name"

    def perform_create(self, serializer):
        require_create(self.request, self.resource_type, authz.ROOT_PATH)
        serializer.instance = create_vm_type(**serializer.validated_data)

    def perform_update(self, serializer):
        serializer.instance = change_vm_type(serializer.instance, **serializer.validated_data)

    def perform_destroy(self, instance):
        delete_vm_type(instance)

    def handle_exception(self, exc):
        if isinstance(exc, VMTypeInUse):
            return Response({"detail": str(exc)}, status=status.HTTP_409_CONFLICT)
        return super().handle_exception(exc)


def _require_build(request, image: Image, *, create: bool) -> None:
    """Starting the wizard on ``image``: it must be visible to the person, then the wizard's rule."""
    require(request, "read", image)
    _require_may_build(request, image, create=create)


def _require_may_build(request, image: Image, *, create: bool) -> None:
    if not is_signed(request) and not authz.may_build(actor(request), image, create=create):
        raise exceptions.PermissionDenied("you may not change this image or create images in its owner-group")


def _task(tid: str) -> TaskTransaction:
    try:
        TaskId.parse(tid)
    except InvalidId as exc:
        raise exceptions.ValidationError({"tid": [str(exc)]}) from None
    task = TaskTransaction.objects.filter(tid=tid).first()
    if task is None:
        raise exceptions.NotFound(f"no task {tid!r}")
    return task


def _build_answer(task: TaskTransaction) -> dict:
    instance = Instance.objects.filter(build_tid=task.tid).first()
    return task_status(task.tid) | {
        "src_image_id": task.src_image_id, "dst_image_id": task.dst_image_id,
        "create": bool(task.runtime_option.get("create")), "steps": build_steps(instance),
        "instance": InstanceSerializer(instance).data if instance else None}


class BuildListView(APIView):
    """``POST builds/``: start the image wizard (``{"image", "vm_type", "new_name"?, "node"?}``): 201 with the
    task id ``src:dst:ins``; then ``builds/<tid>/prepare/``, ``run/``, ``stop/``, ``submit/`` or ``cancel/``."""

    permission_classes = [SignedOrPerson]

    @extend_schema(request=BuildStartSerializer, responses={201: BUILD})
    def post(self, request):
        data = BuildStartSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        fields = data.validated_data
        _require_build(request, fields["image"], create=bool(fields.get("new_name")))
        try:
            task = begin_build(fields["image"], fields["vm_type"], new_name=fields.get("new_name", ""),
                               node=fields.get("node", ""), user=getattr(request.user, "username", ""))
        except InstanceError as exc:
            return Response({"detail": str(exc)}, status=exc.status)
        return Response(_build_answer(task), status=status.HTTP_201_CREATED)


class BuildView(APIView):
    """``GET builds/<tid>/``: the wizard's phase, state, progress and its VM (state, console)."""

    permission_classes = [SignedOrPerson]

    @extend_schema(parameters=[TASK_ID], responses=BUILD)
    def get(self, request, tid: str):
        task = _task(tid)
        require(request, "read", task)
        return Response(_build_answer(task))


class BuildStepView(APIView):
    """``POST builds/<tid>/<step>/`` with step prepare, run, stop, submit or cancel: 202, or 409 saying why not."""

    permission_classes = [SignedOrPerson]

    steps = {"prepare": prepare_build, "run": run_build, "stop": stop_build, "submit": submit_build,
             "cancel": cancel_build}

    @extend_schema(operation_id="builds_step", request=None, responses={202: BUILD}, parameters=[
        TASK_ID, OpenApiParameter("step", str, OpenApiParameter.PATH, enum=list(steps))])
    def post(self, request, tid: str, step: str):
        if step not in self.steps:
            raise exceptions.ValidationError({"step": [f"must be one of {', '.join(self.steps)}"]})
        task = _task(tid)
        require(request, "read", task)
        source = Image.objects.filter(image_id=task.src_image_id).select_related("owner_group").first()
        if source is None:
            raise exceptions.NotFound(f"the image of task {tid!r} is gone")
        # The task is the record here (read above); on its image only the wizard's rule counts, as on the console's
        # step page: changing an image needs write on it, not read as well.
        _require_may_build(request, source, create=bool(task.runtime_option.get("create")))
        try:
            self.steps[step](task)
        except InstanceError as exc:
            return Response({"detail": str(exc)}, status=exc.status)
        task.refresh_from_db()
        return Response(_build_answer(task), status=status.HTTP_202_ACCEPTED)


class TaskView(APIView):
    """``GET tasks/<tid>/``: a task's record with its live progress from the status cache."""

    permission_classes = [SignedOrPerson]

    @extend_schema(parameters=[TASK_ID], responses=TASK_STATUS)
    def get(self, request, tid: str):
        if len(tid) > 128 or not tid.replace(":", "").replace("-", "").isalnum():
            raise exceptions.ValidationError({"tid": ["not a task id (srcid:dstid:insid)"]})
        task = TaskTransaction.objects.filter(tid=tid).first()
        if task is None:  # known only to the status cache so far: owned like its instance or image
            try:
                parts = TaskId.parse(tid)
            except InvalidId as exc:
                raise exceptions.ValidationError({"tid": [str(exc)]}) from None
            task = TaskTransaction(tid=tid, src_image_id=parts.src, dst_image_id=parts.dst, instance_id=parts.ins)
        require(request, "read", task)
        try:
            return Response(task_status(tid))
        except TaskNotFound as exc:
            raise exceptions.NotFound(str(exc)) from None
