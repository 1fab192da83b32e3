"""The metric API for people (issue 17): the watch role's ``metrics/`` and ``statistics/`` with the same parameters
and answers, after the owner-group rule (``clc.services.metrics``: the dimensions must name what the person may
read); the console's charts call ``metrics/statistics/`` with the browser's session. People only: hosts ask the
watch role itself."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework.response import Response
from rest_framework.views import APIView

from clc.api.authz import SignedOrPerson, as_api_error, check_person
from clc.services import authz
from clc.services.metrics import MetricQueryError, query_watch, require_metric_read
from luhyaapi.metric_params import MetricListQuery, MetricListSerializer, StatisticsQuery, StatisticsSerializer


class WatchQueryView(APIView):
    """Validate the query as the watch will read it, ask the rule, forward it; the watch's 400 comes back as it
    was, 503 when no watch host is online."""

    permission_classes = [SignedOrPerson]
    query_class: type = MetricListQuery
    endpoint = ""

    def get(self, request):
        query = self.query_class(data=request.query_params)
        query.is_valid(raise_exception=True)
        try:
            require_metric_read(check_person(request), query.validated_data["dimensions"])
        except authz.Denied as denied:
            raise as_api_error(denied) from None
        try:
            return Response(query_watch(self.endpoint, query.validated_data))
        except MetricQueryError as exc:
            return Response(exc.body, status=exc.status)


class MetricListView(WatchQueryView):
    """``GET metrics/?namespace=&name=&dimensions=&limit=&offset=``: the series the person may read that have these
    dimensions (name an InstanceId or OwnerGroup; host and cluster metrics are for the cloud's administrators)."""

    endpoint = "metrics/"

    @extend_schema(parameters=[MetricListQuery], responses=MetricListSerializer)
    def get(self, request):
        return super().get(request)


class StatisticsView(WatchQueryView):
    """``GET metrics/statistics/?namespace=&name=&dimensions=&start=&end=&period=&statistics=&match=``: the
    datapoints of a metric the person may read, as the watch's ``statistics/`` answers them."""

    query_class = StatisticsQuery
    endpoint = "statistics/"

    @extend_schema(parameters=[StatisticsQuery], responses=StatisticsSerializer)
    def get(self, request):
        return super().get(request)
