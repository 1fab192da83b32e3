"""URLs of the cluster controller's API."""

from django.urls import path

from cc.api import views
from luhyaapi.api import PingView

app_name = "cc-api"
urlpatterns = [
    path("ping/", PingView.as_view(role="cc"), name="ping"),
    path("register/server/", views.RegisterServerView.as_view(), name="register-server"),
    path("register/host/", views.RegisterHostView.as_view(), name="register-host"),
    path("nodes/<str:name>/commands/", views.NodeCommandView.as_view(), name="node-commands"),
    path("images/<str:image_id>/versions/<str:version>/data", views.ImageDataView.as_view(), name="image-data"),
]
