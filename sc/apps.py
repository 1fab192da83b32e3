"""Django app config of the Storage controller role."""

from django.apps import AppConfig


class ScConfig(AppConfig):
    name = "sc"
    verbose_name = "Storage controller"
