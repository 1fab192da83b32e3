"""API views of the cluster controller: adapters over ``cc.services``."""

from __future__ import annotations

import requests
from django.conf import settings
from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, inline_serializer
from rest_framework import exceptions, permissions, serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from cc.models import ClusterInstance
from cc.services.desktops import pc_may_fetch
from cc.services.image_cache import ImageUnavailable, cluster_cache
from cc.services.instances import (
    InstanceRefused,
    delete_instance,
    run_instance,
    stop_instance,
    submit_instance,
)
from cc.services.nodes import (
    UnknownNode,
    WrongCluster,
    cluster_controller,
    pass_on_enrolment,
    queue_node_command,
    register_cluster_host,
    register_cluster_server,
)
from cc.services.walrus_relay import NotRelayed, relay_to_walrus
from luhyaapi.api import validated
from luhyaapi.client import RemoteError
from luhyaapi.config import celery_broker_url
from luhyaapi.drf import IsSignedNode, callers, require_sender, signed_node
from luhyaapi.ids import validate_id
from luhyaapi.imagecache import CacheFull
from luhyaapi.messages import (
    INT_MAX,
    CommandRequest,
    EnrolmentRequest,
    HostRegistration,
    InstanceRunRequest,
    ServerRegistration,
)
from luhyaapi.ranges import RangeNotSatisfiable, file_response, unsatisfiable_headers, wanted_range
from luhyaapi.trust import registration_refusal
from luhyaapi.validators import validate_name

INSTANCE_ID = OpenApiParameter("insid", str, OpenApiParameter.PATH, pattern=r"^ins-[0-9a-f]{8}$")
SEQ = inline_serializer("InstanceCall", {
    "seq": serializers.IntegerField(min_value=0, max_value=INT_MAX, required=False)})


class SubmitSerializer(serializers.Serializer):
    """The body of ``instances/<insid>/submit/``: the image the disk becomes a version of, and the run's ``seq``."""

    seq = serializers.IntegerField(min_value=0, max_value=INT_MAX, required=False)
    image_id = serializers.RegexField(r"^img-[0-9a-f]{8}$", error_messages={"invalid": "not an image id (img-...)"})


class PlacedInstanceSerializer(serializers.Serializer):
    """Where an instance of this cluster runs and how to reach it (``_instance_answer``)."""

    insid = serializers.CharField()
    node = serializers.CharField()
    state = serializers.CharField()
    seq = serializers.IntegerField()
    access = serializers.DictField(child=serializers.CharField())


def _refusal(exc: Exception) -> Response:
    if isinstance(exc, WrongCluster):
        return Response({"detail": str(exc)}, status=status.HTTP_409_CONFLICT)
    return Response({"detail": f"the cloud controller did not accept it: {exc}"}, status=status.HTTP_502_BAD_GATEWAY)


class RegisterServerView(APIView):
    """An NC or SC of this cluster announces itself (signed by itself; a classroom PC as its node controller)."""

    permission_classes = [IsSignedNode]
    signed_callers = callers("nc", "sc", "pc")

    @extend_schema(request=ServerRegistration, responses={201: inline_serializer("ClusterServer", {
        "role": serializers.CharField(), "name": serializers.CharField()})})
    def post(self, request):
        registration = validated(ServerRegistration, request.data)
        refusal = registration_refusal(signed_node(request), role=registration.role, name=registration.name,
                                       cluster=registration.cluster, classroom_pc=registration.classroom_pc)
        if refusal:
            raise exceptions.PermissionDenied(refusal)
        try:
            node = register_cluster_server(registration)
        except (WrongCluster, RemoteError) as exc:
            return _refusal(exc)
        return Response({"role": node.role, "name": node.name}, status=status.HTTP_201_CREATED)


class EnrolmentView(APIView):
    """``POST enrolments/`` (``EnrolmentRequest``, unsigned: a new host has no trusted key yet): a node or PC of this
    cluster asks to have its key trusted; passed on to the CLC, whose answer (or refusal) comes back as it was."""

    permission_classes = [permissions.AllowAny]

    @extend_schema(request=EnrolmentRequest, responses={200: OpenApiTypes.OBJECT, 202: OpenApiTypes.OBJECT})
    def post(self, request):
        try:
            answer = pass_on_enrolment(validated(EnrolmentRequest, request.data), request.META.get("REMOTE_ADDR", ""))
        except WrongCluster as exc:
            return Response({"cluster": [str(exc)]}, status=status.HTTP_403_FORBIDDEN)
        except RemoteError as exc:
            if 400 <= exc.status < 500:
                return Response(exc.body or {"detail": exc.detail}, status=exc.status)
            return _refusal(exc)
        active = answer.get("state") == "active"
        return Response(answer, status=status.HTTP_200_OK if active else status.HTTP_202_ACCEPTED)


class PeerView(APIView):
    """``GET peers/<name>/`` (signed, by the cluster's nodes and PCs, which may reach only their CC): the public key,
    roles and cluster of a controller of this cluster, to check the commands on their queues; 404 for any other
    host, and for one whose key is not trusted (``luhyaapi.trust``)."""

    permission_classes = [IsSignedNode]
    signed_callers = callers("nc", "sc", "pc")

    @extend_schema(responses=inline_serializer("ClusterPeer", {
        "name": serializers.CharField(), "public_key": serializers.CharField(),
        "roles": serializers.ListField(child=serializers.CharField()), "cluster": serializers.CharField(),
        "mac": serializers.CharField()}))
    def get(self, request, name: str):
        require_sender(request, cluster=settings.EDUCLOUD.cluster)
        found = cluster_controller(validate_name(name, "name"))
        if found is None:
            raise exceptions.NotFound(f"{name} is not a trusted controller of cluster {settings.EDUCLOUD.cluster}")
        return Response(found.as_json())


class RegisterHostView(APIView):
    """A classroom PC of this cluster announces itself (signed by itself); passed on to the CLC."""

    permission_classes = [IsSignedNode]
    signed_callers = callers("pc")

    @extend_schema(request=HostRegistration, responses={201: inline_serializer("ClusterHost", {
        "name": serializers.CharField(), "mac": serializers.CharField()})})
    def post(self, request):
        registration = validated(HostRegistration, request.data)
        require_sender(request, registration.name, mac=registration.mac)
        try:
            register_cluster_host(registration)
        except (WrongCluster, RemoteError) as exc:
            return _refusal(exc)
        return Response({"name": registration.name, "mac": registration.mac}, status=status.HTTP_201_CREATED)


class NodeCommandView(APIView):
    """``POST nodes/<name>/commands/`` (signed, from the CLC): queue a command for one of this cluster's NCs."""

    permission_classes = [IsSignedNode]
    signed_callers = callers("clc")

    @extend_schema(request=CommandRequest, responses={202: inline_serializer("NodeCommand", {
        "msg_id": serializers.CharField(), "op": serializers.CharField()})})
    def post(self, request, name: str):
        validate_name(name, "name")
        try:
            command = queue_node_command(celery_broker_url(settings.EDUCLOUD), name,
                                         validated(CommandRequest, request.data))
        except UnknownNode as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_404_NOT_FOUND)
        return Response({"msg_id": command.msg_id, "op": command.op}, status=status.HTTP_202_ACCEPTED)


def _instance_answer(record: ClusterInstance) -> dict:
    return {"insid": record.instance_id, "node": record.node, "state": record.state, "seq": record.seq,
            "access": record.access}


def _seq(request) -> int:
    raw = request.data.get("seq", 0) if hasattr(request.data, "get") else 0
    if not isinstance(raw, int) or isinstance(raw, bool) or not 0 <= raw <= INT_MAX:
        raise exceptions.ValidationError({"seq": [f"must be a whole number from 0 to {INT_MAX}"]})
    return raw


class InstancesView(APIView):
    """``POST instances/`` (signed, from the CLC): place an instance on a node and run it; 409 says why not.
    ``GET instances/``: this cluster's placed instances."""

    permission_classes = [IsSignedNode]
    signed_callers = callers("clc")

    @extend_schema(operation_id="instances_list", responses=PlacedInstanceSerializer(many=True))
    def get(self, request):
        return Response([_instance_answer(record) for record in ClusterInstance.objects.all()])

    @extend_schema(request=InstanceRunRequest, responses={201: PlacedInstanceSerializer})
    def post(self, request):
        try:
            record = run_instance(celery_broker_url(settings.EDUCLOUD), validated(InstanceRunRequest, request.data))
        except InstanceRefused as exc:
            return Response({"detail": str(exc)}, status=exc.status)
        return Response(_instance_answer(record), status=status.HTTP_201_CREATED)


def _instance_call(request, insid: str, operation) -> Response:
    validate_id(insid, "instance")
    try:
        record = operation(celery_broker_url(settings.EDUCLOUD), insid, _seq(request))
    except InstanceRefused as exc:
        return Response({"detail": str(exc)}, status=exc.status)
    return Response(_instance_answer(record), status=status.HTTP_202_ACCEPTED)


class InstanceStopView(APIView):
    """``POST instances/<insid>/stop/`` (signed, from the CLC): stop it; its ports return to the pool."""

    permission_classes = [IsSignedNode]
    signed_callers = callers("clc")

    @extend_schema(parameters=[INSTANCE_ID], request=SEQ, responses={202: PlacedInstanceSerializer})
    def post(self, request, insid: str):
        return _instance_call(request, insid, stop_instance)


class InstanceSubmitView(APIView):
    """``POST instances/<insid>/submit/`` (signed, from the CLC): ``{"seq": n, "image_id": "img-..."}``; the node
    uploads the instance's disk as a new version of that image, then removes the instance."""

    permission_classes = [IsSignedNode]
    signed_callers = callers("clc")

    @extend_schema(parameters=[INSTANCE_ID], request=SubmitSerializer, responses={202: PlacedInstanceSerializer})
    def post(self, request, insid: str):
        body = SubmitSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        image_id = body.validated_data["image_id"]
        return _instance_call(request, insid, lambda broker, insid, seq: submit_instance(broker, insid, seq, image_id))


class InstanceView(APIView):
    """``DELETE instances/<insid>/`` (signed, from the CLC): remove its VM and disk from the node."""

    permission_classes = [IsSignedNode]
    signed_callers = callers("clc")

    @extend_schema(parameters=[INSTANCE_ID], request=SEQ, responses={202: PlacedInstanceSerializer})
    def delete(self, request, insid: str):
        return _instance_call(request, insid, delete_instance)


RELAYED = OpenApiParameter("rest", str, OpenApiParameter.PATH,
                           description="walrus's path below /walrus/api/1.0/ (only uploads/... is relayed)")
RELAYED_ANSWER = OpenApiResponse(OpenApiTypes.OBJECT, description="walrus's answer, status and body as it gave them")


class WalrusRelayView(APIView):
    """``/cc/api/1.0/relay/walrus/api/1.0/uploads/...`` (signed, from this cluster's nodes): an upload of an edited
    image passed on to walrus (nc -> cc -> walrus), data streamed through."""

    permission_classes = [IsSignedNode]
    signed_callers = callers("nc")
    unsigned_payload = True  # data PUTs are streamed on, not read into memory to check a body hash

    def _relay(self, request, rest: str):
        require_sender(request, cluster=settings.EDUCLOUD.cluster)
        django_request = request._request
        query = django_request.META.get("QUERY_STRING", "")
        try:
            if request.method == "PUT":
                length = int(django_request.META.get("CONTENT_LENGTH") or 0)
                answer = relay_to_walrus("PUT", rest, query, None, stream=(django_request.read, length))
            else:
                answer = relay_to_walrus(request.method, rest, query, django_request.body)
        except NotRelayed as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_404_NOT_FOUND)
        except requests.RequestException as exc:
            return Response({"detail": f"walrus cannot be reached: {exc}"}, status=status.HTTP_502_BAD_GATEWAY)
        return HttpResponse(answer.content, status=answer.status_code,
                            content_type=answer.headers.get("Content-Type", "application/json"))

    @extend_schema(parameters=[RELAYED], responses=RELAYED_ANSWER)
    def get(self, request, rest: str):
        return self._relay(request, rest)

    @extend_schema(parameters=[RELAYED], request=OpenApiTypes.OBJECT, responses=RELAYED_ANSWER)
    def post(self, request, rest: str):
        return self._relay(request, rest)

    @extend_schema(parameters=[RELAYED], request={"application/octet-stream": OpenApiTypes.BINARY},
                   responses=RELAYED_ANSWER)
    def put(self, request, rest: str):
        return self._relay(request, rest)


class ImageDataView(APIView):
    """``GET images/<image_id>/versions/<n|current>/data`` (signed, from the cluster's NCs): the image file from the
    cluster cache (sent by the web server straight from the disk), fetched from walrus once and streamed to every NC
    that asks meanwhile; ``Range`` resumes. While the version arrives, a request with ``Range`` is answered with
    the part that has arrived (a 206 that may end before the range asked for; the NC asks again for the rest).
    A classroom PC gets the images of the desktops its kiosk offers only."""

    permission_classes = [IsSignedNode]
    signed_callers = callers("nc", "pc")

    @extend_schema(parameters=[
        OpenApiParameter("image_id", str, OpenApiParameter.PATH, pattern=r"^img-[0-9a-f]{8}$"),
        OpenApiParameter("version", str, OpenApiParameter.PATH, pattern=r"^([1-9][0-9]{0,18}|current)$")],
        responses={(200, "application/octet-stream"): OpenApiTypes.BINARY,
                   (206, "application/octet-stream"): OpenApiTypes.BINARY})
    def get(self, request, image_id: str, version: str):
        validate_id(image_id, "image")
        if version != "current" and not (version.isdigit() and int(version) > 0):
            raise exceptions.ValidationError({"version": ["a version number or 'current'"]})
        require_sender(request, cluster=settings.EDUCLOUD.cluster)
        node = signed_node(request)
        if "pc" in node.roles and not pc_may_fetch(node.mac, image_id):
            raise exceptions.PermissionDenied(f"{image_id} is not the image of a desktop {node.name} offers")
        cache = cluster_cache()
        try:
            info = cache.describe(image_id, version)
        except ImageUnavailable as exc:
            return Response({"detail": str(exc)}, status=exc.status)
        try:
            span = wanted_range(request.headers, info.size, info.sha256)
        except RangeNotSatisfiable as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_416_REQUESTED_RANGE_NOT_SATISFIABLE,
                            headers=unsatisfiable_headers(info.size, info.sha256))
        first, last = span if span else (0, info.size - 1)
        try:
            body = cache.open(info, first, last, may_shorten=span is not None)
        except ImageUnavailable as exc:
            return Response({"detail": str(exc)}, status=exc.status)
        except CacheFull as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_507_INSUFFICIENT_STORAGE)
        response = file_response(body, size=info.size, sha256=info.sha256, partial=span is not None)
        response["X-Educloud-Version"] = str(info.version)
        return response
