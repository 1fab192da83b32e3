"""The watch role's alarms API, ``/watch/api/1.0/alarms/``: list, make, get, change and delete alarms by name, and
``alarms/<name>/history/``. For the CLC (signed), which applies the owner-group rule for people first, and for the
Django administrator. Each bad field is a 400 naming it; the metric's checks are the store's own
(``watch.services.query``), asked of the alarm's window."""

from __future__ import annotations

import math
import re
import time

from django.db import IntegrityError, transaction
from pydantic import TypeAdapter, ValidationError
from rest_framework import exceptions, serializers, viewsets
from rest_framework.decorators import action

from luhyaapi.drf import callers
from luhyaapi.metrics import (
    DIMENSION_NAME_ADAPTER,
    DIMENSION_VALUE_ADAPTER,
    MAX_DIMENSIONS,
    METRIC_NAME_ADAPTER,
    NAMESPACE_ADAPTER,
    STATISTICS,
)
from watch.models import Alarm, AlarmComparison, AlarmHistory
from watch.services import alarm_hooks
from watch.services.alarms import ACTIONS, HOOK_PREFIX, WATCHDOG_ACTION, WATCHDOG_PREFIX, Rule, window
from watch.services.query import QueryError, get_aggregate_statistics

ALARM_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,127}$")
OWNER_GROUP = re.compile(r"^[A-Za-z0-9_-]{1,64}(\.[A-Za-z0-9_-]{1,64}){0,15}$")
MAX_ACTIONS = 10
MAX_PERIOD = 86400
MAX_EVALUATION_PERIODS = 100
# Actions that act on one instance: the alarm must name it.
INSTANCE_ACTIONS = ("stop", "reboot")


def _valid(adapter: TypeAdapter, value, message: str):
    try:
        return adapter.validate_python(value)
    except ValidationError:
        raise serializers.ValidationError(message) from None


def _flat(detail) -> list[str]:
    """A DictField's or ListField's errors by key or index, as one list of messages naming each."""
    if isinstance(detail, dict):
        return [f"{f'item {key}' if isinstance(key, int) else repr(key)}: {message}"
                for key, messages in detail.items() for message in _flat(messages)]
    if isinstance(detail, list):
        return [message for item in detail for message in _flat(item)]
    return [str(detail)]


class _FlatErrors:
    """A collection field whose errors are a list of messages under the field's name (the API's one error
    format), not a mapping by key or index."""

    def to_internal_value(self, data):
        try:
            return super().to_internal_value(data)
        except serializers.ValidationError as exc:
            raise serializers.ValidationError(_flat(exc.detail)) from None


class DimensionsField(_FlatErrors, serializers.DictField):
    pass


class ActionsField(_FlatErrors, serializers.ListField):
    pass


class AlarmSerializer(serializers.ModelSerializer):
    """An alarm as the API shows and takes it; the state and its reason are the evaluation's (read-only)."""

    name = serializers.CharField(max_length=128)
    dimensions = DimensionsField(child=serializers.CharField(max_length=128, allow_blank=True), required=False)
    statistic = serializers.ChoiceField(choices=STATISTICS)
    comparison = serializers.ChoiceField(choices=AlarmComparison.values)
    threshold = serializers.FloatField()
    period = serializers.IntegerField(min_value=60, max_value=MAX_PERIOD)
    evaluation_periods = serializers.IntegerField(min_value=1, max_value=MAX_EVALUATION_PERIODS)
    actions = ActionsField(child=serializers.CharField(max_length=80), max_length=MAX_ACTIONS, required=False)
    owner_group = serializers.CharField(max_length=255, required=False, allow_blank=True)
    created_by = serializers.CharField(max_length=150, required=False, allow_blank=True)

    class Meta:
        model = Alarm
        fields = ("name", "namespace", "metric", "dimensions", "statistic", "comparison", "threshold", "period",
                  "evaluation_periods", "actions", "enabled", "state", "state_reason", "state_changed", "builtin",
                  "owner_group", "created_by", "created")
        read_only_fields = ("state", "state_reason", "state_changed", "builtin", "created")

    def validate_name(self, value: str) -> str:
        if self.instance is not None:
            if value != self.instance.name:
                raise serializers.ValidationError("an alarm's name does not change: make a new alarm instead")
            return value
        if not ALARM_NAME.match(value):
            raise serializers.ValidationError("lowercase letters, digits, _ and -, starting with a letter or digit, "
                                              "at most 128")
        if value.startswith(WATCHDOG_PREFIX):
            raise serializers.ValidationError(f"names starting {WATCHDOG_PREFIX!r} are the guest watchdog's")
        if Alarm.objects.filter(name=value).exists():
            raise serializers.ValidationError(f"there is an alarm {value!r} already")
        return value

    def validate_namespace(self, value: str) -> str:
        return _valid(NAMESPACE_ADAPTER, value, "eduCloud/Instance, eduCloud/Host or Custom/<name>")

    def validate_metric(self, value: str) -> str:
        return _valid(METRIC_NAME_ADAPTER, value, "a metric name: a letter, then letters, digits and _.- (at most 64)")

    def validate_dimensions(self, value: dict) -> dict:
        if len(value) > MAX_DIMENSIONS:
            raise serializers.ValidationError(f"{len(value)} dimensions, more than {MAX_DIMENSIONS}")
        for name, dimension in value.items():
            _valid(DIMENSION_NAME_ADAPTER, name,
                   f"{name!r} is not a dimension name (a letter, then letters and digits)")
            _valid(DIMENSION_VALUE_ADAPTER, dimension,
                   f"{name}={dimension!r}: a value is letters, digits and _.:- (1 to 128)")
        return value

    def validate_threshold(self, value: float) -> float:
        if not math.isfinite(value):
            raise serializers.ValidationError("a finite number")
        return value

    def validate_period(self, value: int) -> int:
        if value % 60:
            raise serializers.ValidationError(f"{value} is not a multiple of 60 seconds")
        return value

    def validate_actions(self, value: list[str]) -> list[str]:
        builtin = self.instance is not None and self.instance.builtin
        for item in value:
            hook = item.removeprefix(HOOK_PREFIX)
            if item in ACTIONS or (builtin and item == WATCHDOG_ACTION):
                continue
            if item.startswith(HOOK_PREFIX) and alarm_hooks.HOOK_NAME.match(hook):
                continue
            raise serializers.ValidationError(f"{item!r}: an action is one of {', '.join(ACTIONS)} or "
                                              "hook:<name> (lowercase letters, digits and _.-)")
        if len(set(value)) != len(value):
            raise serializers.ValidationError("an action is given twice")
        return value

    def validate_owner_group(self, value: str) -> str:
        if value and not OWNER_GROUP.match(value):
            raise serializers.ValidationError(f"{value!r} is not an owner-group path (names joined by '.')")
        return value

    def validate(self, attrs: dict) -> dict:
        merged = {field: getattr(self.instance, field) for field in self.Meta.fields if self.instance is not None}
        merged |= attrs
        actions = merged.get("actions") or []
        if any(item in INSTANCE_ACTIONS for item in actions) and "InstanceId" not in (merged.get("dimensions") or {}):
            raise serializers.ValidationError({"actions": ["stop and reboot act on one instance: give the alarm an "
                                                           "InstanceId dimension"]})
        rule = Rule(merged["statistic"], merged["comparison"], merged["threshold"], merged["period"],
                    merged["evaluation_periods"])
        now = time.time()
        start, end = window(rule, now)
        try:
            # The store's own checks, on the window the evaluation will ask: what it could not answer is refused now.
            get_aggregate_statistics(merged["namespace"], merged["metric"], merged.get("dimensions") or {}, start,
                                     end, rule.period, [rule.statistic], now=now)
        except QueryError as exc:
            field = {"name": "metric", "statistics": "statistic", "start": "period", "end": "period"}.get(
                exc.field, exc.field)
            message = exc.message if field != "period" else f"{exc.message} (period x evaluation_periods is the window)"
            raise serializers.ValidationError({field: [message]}) from None
        return attrs


class AlarmHistorySerializer(serializers.ModelSerializer):
    # Plain text in the document: the two states are one choice set, which would otherwise be named twice.
    old_state = serializers.CharField(read_only=True, help_text="OK, ALARM or INSUFFICIENT_DATA")
    new_state = serializers.CharField(read_only=True, help_text="OK, ALARM or INSUFFICIENT_DATA")

    class Meta:
        model = AlarmHistory
        fields = ("time", "kind", "old_state", "new_state", "reason", "datapoints")


class AlarmViewSet(viewsets.ModelViewSet):
    """Alarms by name (paginated list sorted by name, ``?state=`` to narrow it); ``history/``: the alarm's changes
    and the fate of its actions, newest first. Signed CLC calls and the Django administrator."""

    queryset = Alarm.objects.order_by("name")
    serializer_class = AlarmSerializer
    signed_callers = callers("clc")
    lookup_field = "name"
    lookup_value_regex = "[^/]+"
    http_method_names = ["get", "post", "put", "patch", "delete", "head", "options"]

    def get_queryset(self):
        queryset = super().get_queryset()
        state = self.request.query_params.get("state")
        if state is not None and self.action == "list":
            if state not in {"OK", "ALARM", "INSUFFICIENT_DATA"}:
                raise exceptions.ValidationError({"state": ["one of OK, ALARM, INSUFFICIENT_DATA"]})
            queryset = queryset.filter(state=state)
        return queryset

    def perform_create(self, serializer):
        try:
            with transaction.atomic():
                serializer.save()
        except IntegrityError:  # the same name made by another call meanwhile
            raise exceptions.ValidationError({"name": [f"there is an alarm {serializer.validated_data['name']!r} "
                                                       "already"]}) from None

    def get_object(self):
        if not ALARM_NAME.match(self.kwargs["name"]):
            raise exceptions.ValidationError({"name": [f"{self.kwargs['name'][:130]!r} is not an alarm name"]})
        return super().get_object()

    @action(detail=True, methods=["get"], serializer_class=AlarmHistorySerializer)
    def history(self, request, name: str):
        alarm = self.get_object()
        page = self.paginate_queryset(AlarmHistory.objects.filter(alarm=alarm).order_by("-time", "-id"))
        return self.get_paginated_response(AlarmHistorySerializer(page, many=True).data)
