"""API building blocks every role shares: the error format, request validation against shared schemas, ping."""

from __future__ import annotations

import re

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.defaults import page_not_found
from drf_spectacular.utils import extend_schema, inline_serializer
from pydantic import BaseModel, ValidationError
from rest_framework import exceptions, permissions, serializers
from rest_framework.response import Response
from rest_framework.views import APIView
from rest_framework.views import exception_handler as drf_exception_handler

from luhyaapi.ids import InvalidId
from luhyaapi.routes import encoded_slash_refusal
from luhyaapi.validators import InvalidValue


class BadRequest(exceptions.APIException):
    """A 400 with a ``detail`` text."""

    status_code = 400
    default_code = "invalid"


def exception_handler(exc, context):
    """DRF's handler, plus a JSON body for every error (``{"detail": ...}`` or ``{field: [messages]}``)."""
    if isinstance(exc, InvalidValue):
        exc = exceptions.ValidationError({exc.field: [exc.message]})
    elif isinstance(exc, InvalidId):
        exc = exceptions.ValidationError({"id": [str(exc)]})
    elif isinstance(exc, exceptions.ValidationError) and isinstance(exc.detail, list):
        # A refusal raised outside a serializer, without a field: said as the one "detail" every client reads.
        exc = BadRequest(" ".join(str(message) for message in exc.detail))
    return drf_exception_handler(exc, context)


def validated(schema: type[BaseModel], data) -> BaseModel:
    """Validate request data against a shared pydantic schema; errors become a 400 naming each field."""
    try:
        return schema.model_validate(data)
    except ValidationError as exc:
        fields: dict[str, list[str]] = {}
        for error in exc.errors():
            fields.setdefault(".".join(map(str, error["loc"])) or "non_field_errors", []).append(error["msg"])
        raise exceptions.ValidationError(fields) from None


class PingView(APIView):
    """``GET /<role>/api/1.0/ping/``: answers for every role, unauthenticated, with who is answering."""

    role = ""
    authentication_classes: list = []
    permission_classes = [permissions.AllowAny]

    @extend_schema(responses=inline_serializer("Ping", {
        "role": serializers.CharField(), "name": serializers.CharField(), "cluster": serializers.CharField(),
        "roles": serializers.ListField(child=serializers.CharField())}))
    def get(self, request):
        config = settings.EDUCLOUD
        return Response({"role": self.role, "name": config.name, "cluster": config.cluster, "roles": config.roles})


_API_PATH = re.compile(r"^/[a-z]+/api/")


def not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    """404 for a URL no route matches: JSON under ``/<role>/api/``, Django's page elsewhere. An API URL that matches
    no route only because an id in it has an encoded '/' is a 400 naming that id's parameter."""
    if _API_PATH.match(request.path):
        return encoded_slash_refusal(request, routed=False) or JsonResponse(
            {"detail": f"no such API endpoint: {request.path}"}, status=404)
    return page_not_found(request, exception)
