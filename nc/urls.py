"""URLs of the node controller's pages under ``/nc/``: the classroom kiosk (served only with ``nc.kiosk`` on)."""

from django.urls import path

from nc import views_kiosk

app_name = "nc"
urlpatterns = [
    path("kiosk/", views_kiosk.kiosk_page, name="kiosk"),
    path("kiosk/desktops/", views_kiosk.desktop_list, name="kiosk-desktops"),
    path("kiosk/desktops/<str:insid>/start/", views_kiosk.desktop_start, name="kiosk-start"),
    path("kiosk/desktops/<str:insid>/stop/", views_kiosk.desktop_stop, name="kiosk-stop"),
]
