"""URLs of the Storage controller role's API (its own endpoints arrive with its features)."""

from django.urls import path

from luhyaapi.api import PingView

app_name = "sc-api"
urlpatterns = [
    path("ping/", PingView.as_view(role="sc"), name="ping"),
]
