"""The watch role's metric API in CloudWatch's terms (docs/watch.md "API"): thin adapters over
``watch.services.query`` and ``store``. Signed hosts of every role and the Django administrator call it; people
go through the CLC, which asks the owner-group rule first. Bad input is a 400 naming the field (``QueryError``'s
field, or the parameter's), never a 5xx."""

from __future__ import annotations

import hmac
import logging

from django.conf import settings
from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import exceptions, permissions, status
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.response import Response
from rest_framework.views import APIView

from luhyaapi.api import validated
from luhyaapi.config import ROLES
from luhyaapi.drf import caller_allowed, callers, signed_node
from luhyaapi.metric_params import MetricListQuery, MetricListSerializer, StatisticsQuery, StatisticsSerializer
from luhyaapi.openapi import JsonRefusals
from watch.api.serializers import MetricDataPut, put_samples
from watch.services.prometheus import CONTENT_TYPE, exposition
from watch.services.query import (
    QueryError,
    count_metrics,
    get_aggregate_statistics,
    get_statistics,
    list_metrics,
)
from watch.services.store import store

security = logging.getLogger("educloud.security")


def _query(serializer_class, request) -> dict:
    serializer = serializer_class(data=request.query_params)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


class MetricView(APIView):
    """Signed calls of any role's host (a host's own data, the CLC's forwarded queries) or the Django
    administrator; a ``QueryError`` is the 400 naming its field."""

    signed_callers = callers(*ROLES)

    def handle_exception(self, exc):
        if isinstance(exc, QueryError):
            exc = exceptions.ValidationError({exc.field: [exc.message]})
        return super().handle_exception(exc)


class MetricListView(MetricView):
    """``GET metrics/?namespace=&name=&dimensions=&limit=&offset=``: the series having the dimensions of the filter
    (CloudWatch's ListMetrics), ``{"count", "results": [{"namespace", "name", "dimensions", "unit"}]}``."""

    @extend_schema(parameters=[MetricListQuery], responses=MetricListSerializer)
    def get(self, request):
        query = _query(MetricListQuery, request)
        found = {"namespace": query.get("namespace"), "name": query.get("name"), "dimensions": query["dimensions"]}
        rows = list_metrics(**found, limit=query["limit"], offset=query["offset"])
        return Response({"count": count_metrics(**found), "results": rows})


class StatisticsView(MetricView):
    """``GET statistics/?namespace=&name=&dimensions=&start=&end=&period=&statistics=&match=``: per period, the
    asked statistics of the one series with exactly these dimensions (``match=exact``) or of every series having
    them taken together (``match=filter``, the default)."""

    @extend_schema(parameters=[StatisticsQuery], responses=StatisticsSerializer)
    def get(self, request):
        query = _query(StatisticsQuery, request)
        asked = (query["namespace"], query["name"], query["dimensions"], query["start"], query["end"],
                 query["period"], query["statistics"])
        points = get_statistics(*asked) if query["match"] == "exact" else get_aggregate_statistics(*asked)
        unit = points[0]["unit"] if points else "None"
        return Response({"namespace": query["namespace"], "name": query["name"], "dimensions": query["dimensions"],
                         "period": query["period"], "unit": unit,
                         "datapoints": [{key: value for key, value in point.items() if key != "unit"}
                                        for point in points]})


class MetricDataView(MetricView):
    """``POST metric-data/`` ``{"namespace": "Custom/<name>", "metric_data": [{"name", "dimensions", "timestamp",
    "value", "unit"}]}``: store up to 1,000 values of custom metrics (201 ``{"stored": n}``; a value already
    stored for its series and time is not stored twice)."""

    @extend_schema(request=MetricDataPut, responses={201: OpenApiResponse(OpenApiTypes.OBJECT,
                                                                          description='{"stored": n}')})
    def post(self, request):
        samples = put_samples(validated(MetricDataPut, request.data))
        return Response({"stored": store(samples)}, status=status.HTTP_201_CREATED)


class PrometheusPermission(permissions.BasePermission):
    """The endpoint is for a scraper with the token, not for hosts: a signed call is refused (403) as every view
    refuses a role it does not take."""

    def has_permission(self, request, view) -> bool:
        if signed_node(request) is not None:
            self.message = "this endpoint is for a Prometheus scraper with its bearer token, not for signed calls"
            return caller_allowed(request, view)
        return True


class AnyAccept(BaseContentNegotiation):
    """The text format whatever the scraper accepts (Prometheus asks for OpenMetrics first, some scrapers for
    ``text/plain`` only): no 406 before the view answers; refusals are JSON as everywhere under ``/api/``."""

    def select_parser(self, request, parsers):
        return parsers[0] if parsers else None

    def select_renderer(self, request, renderers, format_suffix=None):
        return renderers[0], renderers[0].media_type


class PrometheusView(JsonRefusals, APIView):
    """``GET prometheus``: the latest value (last 10 minutes) of every series in Prometheus' text format, for
    ``Authorization: Bearer <watch.prometheus_token>``; 404 while that setting is empty, 401 for a wrong token."""

    permission_classes = [PrometheusPermission]
    content_negotiation_class = AnyAccept

    @extend_schema(responses={200: OpenApiResponse(OpenApiTypes.STR, description="text exposition format 0.0.4")})
    def get(self, request):
        token = settings.EDUCLOUD.watch_prometheus_token
        if not token:
            return Response({"detail": "the Prometheus endpoint is disabled (watch.prometheus_token)"},
                            status=status.HTTP_404_NOT_FOUND)
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), token.encode()):
            security.warning("refused a Prometheus scrape from %s: %s", request.META.get("REMOTE_ADDR"),
                             "a wrong token" if scheme.lower() == "bearer" else "no bearer token")
            return Response({"detail": "give the token of watch.prometheus_token as Authorization: Bearer <token>"},
                            status=status.HTTP_401_UNAUTHORIZED, headers={"WWW-Authenticate": "Bearer"})
        return HttpResponse(exposition(), content_type=CONTENT_TYPE)
