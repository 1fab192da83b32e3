"""URLs of the metric API (issue 17), included by the role's ``api/urls.py`` under its namespace: list metrics, their
statistics, custom metric data, and the Prometheus text endpoint (with or without its trailing slash, as scrapers
are configured either way)."""

from django.urls import path, re_path

from watch.api.metrics import MetricDataView, MetricListView, PrometheusView, StatisticsView

urlpatterns: list = [
    path("metrics/", MetricListView.as_view(), name="metric-list"),
    path("statistics/", StatisticsView.as_view(), name="statistics"),
    path("metric-data/", MetricDataView.as_view(), name="metric-data"),
    re_path(r"^prometheus/?$", PrometheusView.as_view(), name="prometheus"),
]
