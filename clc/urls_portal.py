"""Pages of the student portal (``/portal/``): my desktops, start, connect in the browser or with a client, stop; a
desktop from one of my class's pools."""

from django.urls import path

from clc import views_portal as views

app_name = "portal"
urlpatterns = [
    path("", views.DesktopListView.as_view(), name="desktops"),
    path("status/", views.DesktopStatusListView.as_view(), name="status"),
    path("desktops/<str:insid>/", views.DesktopConsoleView.as_view(), name="desktop"),
    path("desktops/<str:insid>/status/", views.DesktopStatusView.as_view(), name="desktop-status"),
    path("desktops/<str:insid>/start/", views.DesktopStartView.as_view(), name="start"),
    path("desktops/<str:insid>/stop/", views.DesktopStopView.as_view(), name="stop"),
    path("desktops/<str:insid>/token/", views.ConsoleTokenView.as_view(), name="token"),
    path("desktops/<str:insid>/client/", views.ClientFileView.as_view(), name="client-file"),
    path("pools/<str:pool_id>/claim/", views.PoolClaimView.as_view(), name="pool-claim"),
    path("novnc/<path:path>", views.NoVNCFileView.as_view(), name="novnc"),
]
