"""The alarms API for people, ``/clc/api/1.0/alarms/``: thin adapters over ``clc.services.alarms``, which asks the
owner-group rule and forwards to the watch role. List (paginated, what the person may see, each row with its
``history_url``), make (POST), get, change (PUT, PATCH) and delete by name, and ``alarms/<name>/history/``. 503 when
no watch host is online."""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.reverse import reverse
from rest_framework.views import APIView

from clc.api.authz import SignedOrPerson, as_api_error, check_person
from clc.services import authz
from clc.services.alarms import (
    AlarmCallError,
    alarm_history,
    alarm_path,
    all_alarms,
    create_alarm,
    delete_alarm,
    get_alarm,
    owner_for_new,
    readable_alarms,
    require_alarm,
    update_alarm,
)
from luhyaapi.pagination import BoundedLimitOffsetPagination


def _body(request) -> dict:
    if not isinstance(request.data, dict):
        raise exceptions.ValidationError({"non_field_errors": ["send the alarm as a JSON object"]})
    return dict(request.data)


class AlarmAPIView(APIView):
    """People only (a signed host has no alarms of its own here); refusals of the rule and of the watch mapped to
    their answers."""

    permission_classes = [SignedOrPerson]

    def handle_exception(self, exc):
        if isinstance(exc, AlarmCallError):
            return Response(exc.body, status=exc.status)
        if isinstance(exc, authz.Denied):
            exc = as_api_error(exc)
        return super().handle_exception(exc)

    def shown(self, alarm: dict) -> dict:
        return alarm | {"history_url": reverse("clc-api:alarm-history", args=[alarm["name"]], request=self.request)}

    def visible(self, person: authz.Actor, name: str, action: str = "read") -> dict:
        """The alarm, if the person may ``action`` it; 404 when they may not see it (as for one that is not)."""
        alarm_path(name)
        try:
            alarm = get_alarm(name)
        except AlarmCallError as exc:
            if exc.status == 404:
                raise authz.Denied(f"no alarm {name} that you may see", status=404) from None
            raise
        require_alarm(person, action, alarm)
        return alarm


class AlarmListView(AlarmAPIView):
    """GET: the alarms the person may see, sorted by name, paginated; POST: make one (201). The watch checks each
    field; the CLC sets ``owner_group`` and ``created_by``."""

    @extend_schema(operation_id="alarms_list", responses={200: OpenApiTypes.OBJECT})
    def get(self, request):
        person = check_person(request)
        paginator = BoundedLimitOffsetPagination()
        page = paginator.paginate_queryset(readable_alarms(person, all_alarms()), request, view=self)
        return paginator.get_paginated_response([self.shown(alarm) for alarm in page])

    @extend_schema(operation_id="alarms_create", request=OpenApiTypes.OBJECT, responses={201: OpenApiTypes.OBJECT})
    def post(self, request):
        person = check_person(request)
        body = _body(request)
        owner = owner_for_new(person, body.get("dimensions"))
        alarm = create_alarm(body | {"owner_group": owner, "created_by": person.username})
        return Response(self.shown(alarm), status=status.HTTP_201_CREATED)


class AlarmDetailView(AlarmAPIView):
    """GET (read), PUT and PATCH (write the alarm; its dimensions after the change must be the person's to alarm
    too), DELETE (write; 204)."""

    @extend_schema(operation_id="alarms_retrieve", responses={200: OpenApiTypes.OBJECT})
    def get(self, request, name: str):
        return Response(self.shown(self.visible(check_person(request), name)))

    def _update(self, request, name: str, *, partial: bool) -> Response:
        person = check_person(request)
        alarm = self.visible(person, name, "write")
        body = _body(request)
        body.pop("created_by", None)
        if alarm.get("builtin"):
            body.pop("owner_group", None)  # the watch files its watchdog under the instance's group
        else:
            body["owner_group"] = owner_for_new(person, body.get("dimensions", alarm.get("dimensions")))
        return Response(self.shown(update_alarm(name, body, partial=partial)))

    @extend_schema(request=OpenApiTypes.OBJECT, responses={200: OpenApiTypes.OBJECT})
    def put(self, request, name: str):
        return self._update(request, name, partial=False)

    @extend_schema(request=OpenApiTypes.OBJECT, responses={200: OpenApiTypes.OBJECT})
    def patch(self, request, name: str):
        return self._update(request, name, partial=True)

    @extend_schema(responses={204: None})
    def delete(self, request, name: str):
        self.visible(check_person(request), name, "write")
        delete_alarm(name)
        return Response(status=status.HTTP_204_NO_CONTENT)


class AlarmHistoryView(AlarmAPIView):
    """GET: the alarm's history, newest first, paginated as the watch pages it (``?limit=``, ``?offset=``)."""

    @extend_schema(operation_id="alarms_history", responses={200: OpenApiTypes.OBJECT})
    def get(self, request, name: str):
        self.visible(check_person(request), name)
        paginator = BoundedLimitOffsetPagination()
        limit, offset = paginator.get_limit(request), paginator.get_offset(request)
        answer = alarm_history(name, limit or paginator.default_limit, offset)
        return Response({"count": answer.get("count", 0), "results": answer.get("results", [])})
