"""URLs of the Cloudwatch role's API: the metric queries (``metric_urls``) and the alarms (``alarm_urls``)."""

from django.urls import include, path

from luhyaapi.api import PingView
from luhyaapi.reporting import StatusReportView

app_name = "watch-api"
urlpatterns = [
    path("ping/", PingView.as_view(role="watch"), name="ping"),
    path("status/report/", StatusReportView.as_view(role="watch"), name="status-report"),
    path("", include("watch.api.metric_urls")),
    path("", include("watch.api.alarm_urls")),
]
