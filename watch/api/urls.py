"""URLs of the Cloudwatch role's API (its own endpoints arrive with its features)."""

from django.urls import path

from luhyaapi.api import PingView
from luhyaapi.reporting import StatusReportView

app_name = "watch-api"
urlpatterns = [
    path("ping/", PingView.as_view(role="watch"), name="ping"),
    path("status/report/", StatusReportView.as_view(role="watch"), name="status-report"),
]
