"""URLs of the Walrus role's API (its own endpoints arrive with its features)."""

from django.urls import path

from luhyaapi.api import PingView

app_name = "walrus-api"
urlpatterns = [
    path("ping/", PingView.as_view(role="walrus"), name="ping"),
]
