"""URLs of the metric API for people (issue 17), included by the role's ``api/urls.py`` under its namespace."""

from django.urls import path

from clc.api.metrics import MetricListView, StatisticsView

urlpatterns: list = [
    path("metrics/", MetricListView.as_view(), name="metric-list"),
    path("metrics/statistics/", StatisticsView.as_view(), name="metric-statistics"),
]
