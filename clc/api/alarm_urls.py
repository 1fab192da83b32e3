"""URLs of the alarms API for people (issue 17), included by the role's ``api/urls.py`` under its namespace:
``alarm-list``, ``alarm-detail`` and ``alarm-history``."""

from django.urls import path

from clc.api.alarms import AlarmDetailView, AlarmHistoryView, AlarmListView

urlpatterns = [
    path("alarms/", AlarmListView.as_view(), name="alarm-list"),
    path("alarms/<str:name>/", AlarmDetailView.as_view(), name="alarm-detail"),
    path("alarms/<str:name>/history/", AlarmHistoryView.as_view(), name="alarm-history"),
]
