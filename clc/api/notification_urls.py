"""URLs of this part of the API (issue 17), included by the role's ``api/urls.py`` under its namespace: the watch's
alarm actions and the notifications people see (``clc.api.notifications``)."""

from django.urls import path

from clc.api.notifications import AlarmActionView, NotificationListView, NotificationReadView

urlpatterns = [
    path("alarm-actions/", AlarmActionView.as_view(), name="alarm-actions"),
    path("notifications/", NotificationListView.as_view(), name="notification-list"),
    path("notifications/<str:pk>/read/", NotificationReadView.as_view(), name="notification-read"),
]
