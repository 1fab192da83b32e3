"""Pages of the admin console."""

from django.contrib.auth import views as auth_views
from django.urls import path

from clc import views

app_name = "clc"
urlpatterns = [
    path("", views.SystemStatusView.as_view(), name="status"),
    path("login/", auth_views.LoginView.as_view(template_name="clc/login.html"), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
]
