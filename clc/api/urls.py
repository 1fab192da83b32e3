"""URLs of the cloud controller's API."""

from django.urls import path
from rest_framework.routers import SimpleRouter

from clc.api import views
from luhyaapi.api import PingView

app_name = "clc-api"
urlpatterns = [
    path("ping/", PingView.as_view(role="clc"), name="ping"),
    path("status/", views.StatusView.as_view(), name="status"),
    path("register/server/", views.RegisterServerView.as_view(), name="register-server"),
    path("register/host/", views.RegisterHostView.as_view(), name="register-host"),
    path("nodes/<str:name>/commands/", views.NodeCommandView.as_view(), name="node-commands"),
    path("tasks/<str:tid>/", views.TaskView.as_view(), name="task"),
]
router = SimpleRouter()
router.register("images", views.ImageViewSet, basename="image")
urlpatterns += router.urls
