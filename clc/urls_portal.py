"""Pages of the student portal (``/portal/``): my desktops, start, connect in the browser or with a client (a .vnc
file, or the .rdp file of a guest's Remote Desktop), stop; a desktop from one of my class's pools; the published apps
of my pools' and desktops' images, each opened on my desktop as a RemoteApp file or a SeamlessRDP command line."""

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
    path("desktops/<str:insid>/rdp/", views.RdpFileView.as_view(), name="rdp-file"),
    path("desktops/<str:insid>/apps/<int:app_id>/open/", views.DesktopAppOpenView.as_view(), name="desktop-app-open"),
    path("desktops/<str:insid>/apps/<int:app_id>/rdp/", views.AppFileView.as_view(), name="app-file"),
    path("pools/<str:pool_id>/claim/", views.PoolClaimView.as_view(), name="pool-claim"),
    path("pools/<str:pool_id>/apps/<int:app_id>/open/", views.PoolAppOpenView.as_view(), name="pool-app-open"),
    path("apps/", views.AppListView.as_view(), name="apps"),
    path("novnc/<path:path>", views.NoVNCFileView.as_view(), name="novnc"),
]
