"""URLs of the node controller's API."""

from django.urls import path

from luhyaapi.api import PingView

app_name = "nc-api"
urlpatterns = [
    path("ping/", PingView.as_view(role="nc"), name="ping"),
]
