"""Django app config of the Cluster controller role."""

from django.apps import AppConfig


class CcConfig(AppConfig):
    name = "cc"
    verbose_name = "Cluster controller"
