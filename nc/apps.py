"""Django app config of the Node controller role."""

from django.apps import AppConfig


class NcConfig(AppConfig):
    name = "nc"
    verbose_name = "Node controller"
