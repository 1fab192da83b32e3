"""URLs of the Walrus role's API.

Id segments match anything, slashes included, so a hostile id (``../x``, ``%2e%2e%2fx``, ``/abs``) reaches its view
and is refused with a 400 naming the field, rather than falling through to a bare 404.
"""

from django.urls import path, re_path

from luhyaapi.api import PingView
from luhyaapi.reporting import StatusReportView
from walrus.api import views

app_name = "walrus-api"
urlpatterns = [
    path("ping/", PingView.as_view(role="walrus"), name="ping"),
    path("status/report/", StatusReportView.as_view(role="walrus"), name="status-report"),
    path("uploads/", views.UploadListView.as_view(), name="upload-list"),
    re_path(r"^uploads/(?P<upload_id>.+)/data$", views.UploadDataView.as_view(), name="upload-data"),
    re_path(r"^uploads/(?P<upload_id>.+)/complete/$", views.UploadCompleteView.as_view(), name="upload-complete"),
    re_path(r"^uploads/(?P<upload_id>.+)/$", views.UploadDetailView.as_view(), name="upload-detail"),
    path("images/", views.ImageListView.as_view(), name="image-list"),
    re_path(r"^images/(?P<image_id>.+?)/versions/(?P<version>.+)/data$", views.VersionDataView.as_view(),
            name="version-data"),
    re_path(r"^images/(?P<image_id>.+?)/versions/(?P<version>.+)/$", views.VersionDetailView.as_view(),
            name="version-detail"),
    re_path(r"^images/(?P<image_id>.+)/$", views.ImageDetailView.as_view(), name="image-detail"),
]
