"""The CLC's side of the watch's alarms (issue 17): ``POST alarm-actions/`` (signed by a watch host only: an alarm
entered ALARM, carry out one of its actions) and the notifications people see (``GET notifications/``, ``POST
notifications/<id>/read/``). Adapters over ``clc.services.alarm_actions`` and ``clc.services.notifications``."""

from __future__ import annotations

import math

from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import exceptions, generics, serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from clc.api.authz import SignedOrPerson, actor, check_person, require_type
from clc.services.alarm_actions import ACTIONS, AlarmAction, AlarmActionError, take_alarm_action
from clc.services.notifications import NotificationNotFound, mark_read, visible_notifications
from luhyaapi.drf import IsSignedNode, callers
from luhyaapi.ids import InvalidId, validate_id
from luhyaapi.validators import InvalidValue, validate_owner_path
from luhyadb.choices import ResourceTypeChoices as Type
from luhyadb.models import Notification

ALARM_STATES = ("ALARM", "OK", "INSUFFICIENT_DATA")
MAX_DATAPOINTS = 100


class AlarmActionSerializer(serializers.Serializer):
    """One action of an alarm, as the watch posts it when the alarm enters ALARM."""

    alarm = serializers.CharField(max_length=255)
    action = serializers.ChoiceField(choices=ACTIONS)
    instance_id = serializers.CharField(max_length=12, required=False, allow_blank=True, default="")
    reason = serializers.CharField(max_length=2000, required=False, allow_blank=True, default="")
    state = serializers.ChoiceField(choices=ALARM_STATES, required=False, default="ALARM")
    datapoints = serializers.ListField(required=False, default=list,
                                       max_length=MAX_DATAPOINTS, help_text="the datapoints that made the alarm "
                                       "change (objects: timestamp and statistics)")
    time = serializers.FloatField(min_value=0)
    owner_group = serializers.CharField(max_length=255, required=False, allow_blank=True, default="",
                                        help_text="who sees the notification when it names no instance (an "
                                                  "administrator's alarm for a group); default the root's")

    def validate_instance_id(self, value: str) -> str:
        if not value:
            return value
        try:
            return validate_id(value, "instance")
        except InvalidId as exc:
            raise serializers.ValidationError(str(exc)) from None

    def validate_owner_group(self, value: str) -> str:
        if not value:
            return value
        try:
            return validate_owner_path(value)
        except InvalidValue as exc:
            raise serializers.ValidationError(exc.message) from None

    def validate_datapoints(self, value: list) -> list:
        if not all(isinstance(point, dict) for point in value):
            raise serializers.ValidationError("each datapoint must be an object (timestamp and statistics)")
        return value

    def validate_time(self, value: float) -> float:
        if not math.isfinite(value):
            raise serializers.ValidationError("must be a finite number of epoch seconds")
        return value


ALARM_ACTION_ANSWER = inline_serializer("AlarmActionAnswer", {
    "result": serializers.ChoiceField(choices=("done", "nothing to do", "failed")),
    "repeated": serializers.BooleanField(), "notification": serializers.IntegerField(),
    "title": serializers.CharField(), "message": serializers.CharField()})


class AlarmActionView(APIView):
    """``POST alarm-actions/`` (signed, watch hosts only): carry out one action of an alarm that entered ALARM
    (``clc.services.alarm_actions``). 202 for every action taken, whatever came of it: ``result`` "done", "nothing
    to do" (the instance is not running, or was stopped by someone: recorded too) or "failed" (its cluster refused;
    posting again would not change that); ``repeated`` when the same alarm, action, instance and time were posted
    before (nothing done again). 400 naming a malformed field; 404 for an unknown instance."""

    permission_classes = [IsSignedNode]
    signed_callers = callers("watch")

    @extend_schema(request=AlarmActionSerializer, responses={202: ALARM_ACTION_ANSWER})
    def post(self, request):
        body = AlarmActionSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        event = AlarmAction(alarm=data["alarm"], action=data["action"], time=data["time"],
                            instance_id=data["instance_id"], reason=data["reason"], state=data["state"],
                            owner_group=data["owner_group"], datapoints=tuple(data["datapoints"]))
        try:
            outcome = take_alarm_action(event)
        except AlarmActionError as exc:
            return Response({"detail": str(exc), exc.field: [str(exc)]}, status=exc.status)
        note = outcome.notification
        return Response({"result": outcome.result, "repeated": outcome.repeated, "notification": note.pk,
                         "title": note.title, "message": note.message}, status=status.HTTP_202_ACCEPTED)


class NotificationSerializer(serializers.ModelSerializer):
    class Meta:
        model = Notification
        fields = ("id", "time", "level", "title", "message", "instance_id", "owner_group", "alarm", "action", "read")
        read_only_fields = fields


def _flag(request, name: str) -> bool | None:
    raw = request.query_params.get(name)
    if raw is None:
        return None
    if raw not in ("true", "false", "1", "0"):
        raise exceptions.ValidationError({name: ["must be true or false"]})
    return raw in ("true", "1")


class NotificationListView(generics.ListAPIView):
    """``GET notifications/`` (people): the notifications of the owner-groups whose instances the person may read
    (a student: their own desktops'), unread first, newest first; ``?unread=true`` only unread ones,
    ``?instance_id=`` one instance's. 403 for someone who may not read instances at all."""

    permission_classes = [SignedOrPerson]
    serializer_class = NotificationSerializer

    @extend_schema(parameters=[
        OpenApiParameter("unread", bool, description="only unread ones"),
        OpenApiParameter("instance_id", str, description="only this instance's", pattern=r"^ins-[0-9a-f]{8}$")])
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    def get_queryset(self):
        person = check_person(self.request)
        require_type(self.request, "read", Type.INSTANCE)
        rows = visible_notifications(person)
        unread = _flag(self.request, "unread")
        if unread is not None:
            rows = rows.filter(read=not unread)
        instance_id = self.request.query_params.get("instance_id")
        if instance_id is not None:
            try:
                rows = rows.filter(instance_id=validate_id(instance_id, "instance"))
            except InvalidId as exc:
                raise exceptions.ValidationError({"instance_id": [str(exc)]}) from None
        return rows


class NotificationReadView(APIView):
    """``POST notifications/<id>/read/`` (people): mark it read, for all who see it. 404 unless the person may see
    it."""

    permission_classes = [SignedOrPerson]

    @extend_schema(request=None, responses={200: NotificationSerializer})
    def post(self, request, pk: str):
        check_person(request)
        require_type(request, "read", Type.INSTANCE)
        try:
            note = mark_read(actor(request), pk)
        except NotificationNotFound as exc:
            raise exceptions.NotFound(str(exc)) from None
        return Response(NotificationSerializer(note).data)
