"""URLs of the Storage controller role's API: volumes, their iSCSI export, snapshots, WebDAV share usage.

Id segments match anything, slashes included, so a hostile id (``../x``, ``%2e%2e%2fx``, 300 characters) reaches its
view and is refused with a 400 naming the field, rather than falling through to a bare 404."""

from django.urls import path, re_path

from luhyaapi.api import PingView
from luhyaapi.reporting import StatusReportView
from sc.api import views

app_name = "sc-api"
urlpatterns = [
    path("ping/", PingView.as_view(role="sc"), name="ping"),
    path("status/report/", StatusReportView.as_view(role="sc"), name="status-report"),
    path("space/", views.SpaceView.as_view(), name="space"),
    path("volumes/", views.VolumeListView.as_view(), name="volume-list"),
    re_path(r"^volumes/(?P<volume_id>.+)/export/$", views.VolumeExportView.as_view(), name="volume-export"),
    re_path(r"^volumes/(?P<volume_id>.+)/restore/$", views.VolumeRestoreView.as_view(), name="volume-restore"),
    re_path(r"^volumes/(?P<volume_id>.+)/$", views.VolumeDetailView.as_view(), name="volume-detail"),
    path("snapshots/", views.SnapshotListView.as_view(), name="snapshot-list"),
    re_path(r"^snapshots/(?P<snapshot_id>.+)/$", views.SnapshotDetailView.as_view(), name="snapshot-detail"),
    path("shares/", views.ShareUsageListView.as_view(), name="share-list"),
]
