"""Pages of the admin console."""

from django.contrib.auth import views as auth_views
from django.urls import path

from clc import views

app_name = "clc"
urlpatterns = [
    path("", views.SystemStatusView.as_view(), name="status"),
    path("login/", auth_views.LoginView.as_view(template_name="clc/login.html"), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("images/", views.ImageListView.as_view(), name="images"),
    path("images/new/", views.ImageCreateView.as_view(), name="image-create"),
    path("images/<str:image_id>/", views.ImageDetailView.as_view(), name="image-detail"),
    path("images/<str:image_id>/edit/", views.ImageUpdateView.as_view(), name="image-edit"),
    path("images/<str:image_id>/delete/", views.ImageDeleteView.as_view(), name="image-delete"),
]
