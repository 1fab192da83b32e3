"""The live state of the commands this CC sent its nodes, as Celery's task events show it, and its nodes' Celery
workers, as Celery's inspection finds them (signed, from the CLC: its task pages and its Workers page); adapters
over ``cc.models.CommandTask`` (folded by ``cc.services.command_tasks``) and ``cc.services.workers``."""

from __future__ import annotations

from django.conf import settings
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import exceptions, serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from cc.models import CommandTask
from cc.services.workers import cluster_workers
from luhyaapi.bus import BusUnavailable
from luhyaapi.config import celery_broker_url
from luhyaapi.drf import IsSignedNode, callers
from luhyaapi.validators import validate_name

DEFAULT_LIMIT = 100
MAX_LIMIT = 500
TASK_ID_MAX = 64
TID_MAX = 128


class CommandTaskSerializer(serializers.ModelSerializer):
    class Meta:
        model = CommandTask
        fields = ("task_id", "node", "op", "tid", "instance_id", "seq", "state", "phase", "progress", "worker",
                  "retries", "reason", "queued_at", "updated")


class Filters(serializers.Serializer):
    node = serializers.CharField(required=False, max_length=63)
    tid = serializers.CharField(required=False, max_length=TID_MAX)
    state = serializers.ChoiceField(required=False, choices=CommandTask.STATES)
    limit = serializers.IntegerField(required=False, min_value=1, max_value=MAX_LIMIT, default=DEFAULT_LIMIT)

    def validate_node(self, value: str) -> str:
        validate_name(value, "node")
        return value


class CommandTasksView(APIView):
    """``GET tasks/``: the newest commands first, filtered by ``node``, ``tid`` (the CLC task) and ``state``, at most
    ``limit`` (100 by default, 500 at most); ``count`` is how many match."""

    permission_classes = [IsSignedNode]
    signed_callers = callers("clc")

    @extend_schema(operation_id="tasks_list", parameters=[Filters], responses={200: inline_serializer(
        "CommandTaskPage", {"count": serializers.IntegerField(), "results": CommandTaskSerializer(many=True)})})
    def get(self, request):
        filters = Filters(data=request.query_params)
        filters.is_valid(raise_exception=True)
        wanted = dict(filters.validated_data)
        limit = wanted.pop("limit")
        tasks = CommandTask.objects.filter(**wanted)
        return Response({"count": tasks.count(), "results": CommandTaskSerializer(tasks[:limit], many=True).data})


class CommandTaskView(APIView):
    """``GET tasks/<task_id>/``: one command's live state; 404 for a task this CC did not send or hear of."""

    permission_classes = [IsSignedNode]
    signed_callers = callers("clc")

    @extend_schema(parameters=[OpenApiParameter("task_id", str, OpenApiParameter.PATH)],
                   responses={200: CommandTaskSerializer})
    def get(self, request, task_id: str):
        if len(task_id) > TASK_ID_MAX or not task_id.isalnum():
            raise exceptions.ValidationError({"task_id": ["a task id is letters and digits, 64 at most"]})
        task = CommandTask.objects.filter(task_id=task_id).first()
        if task is None:
            raise exceptions.NotFound(f"no command task {task_id} on this cluster")
        return Response(CommandTaskSerializer(task).data)


class WorkersView(APIView):
    """``GET workers/``: each node controller's Celery worker on the cluster's broker: online (it answered the
    inspection), slots, tasks run since it started, the tasks it runs now; 503 when the broker does not answer."""

    permission_classes = [IsSignedNode]
    signed_callers = callers("clc")

    @extend_schema(responses={200: OpenApiTypes.OBJECT})
    def get(self, request):
        try:
            workers = cluster_workers(celery_broker_url(settings.EDUCLOUD))
        except BusUnavailable as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_503_SERVICE_UNAVAILABLE)
        return Response({"workers": workers})
