"""Django app config of the cloud's records."""

from django.apps import AppConfig


class LuhyadbConfig(AppConfig):
    name = "luhyadb"
    verbose_name = "eduCloud records"
    default_auto_field = "django.db.models.BigAutoField"
