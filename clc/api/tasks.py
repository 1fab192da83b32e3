"""API of the cloud controller for the task list: ``GET tasks/`` (the tasks the person may read, newest change
first, ``?show=running|failed|done``, paginated). One task's live status stays ``tasks/<tid>/``."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import exceptions, mixins, serializers, viewsets

from clc.api.authz import AuthorizedViewSetMixin
from clc.services.tasklist import find_tasks, standing
from luhyaapi.openapi import choice_parameter
from luhyadb.choices import ResourceTypeChoices
from luhyadb.models import TaskTransaction


class TaskSerializer(serializers.ModelSerializer):
    """A task's record; ``standing`` is running, failed or done."""

    phase_display = serializers.CharField(source="get_phase_display", read_only=True)
    standing = serializers.SerializerMethodField()

    class Meta:
        model = TaskTransaction
        fields = ("tid", "src_image_id", "dst_image_id", "instance_id", "user", "phase", "phase_display", "state",
                  "standing", "progress", "vmstatus", "message", "failed", "done", "created", "updated")
        read_only_fields = fields

    def get_standing(self, task: TaskTransaction) -> str:
        return standing(task)


@extend_schema_view(list=extend_schema(parameters=[choice_parameter("show", ["running", "failed", "done"])]))
class TaskViewSet(AuthorizedViewSetMixin, mixins.ListModelMixin, viewsets.GenericViewSet):
    serializer_class = TaskSerializer
    resource_type = ResourceTypeChoices.TASK

    def get_queryset(self):
        try:
            return find_tasks(self.request.query_params.get("show", ""))
        except ValueError as exc:
            raise exceptions.ValidationError({"show": [str(exc)]}) from None
