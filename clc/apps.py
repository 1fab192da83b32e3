"""Django app config of the cloud controller."""

from django.apps import AppConfig


class ClcConfig(AppConfig):
    name = "clc"
    verbose_name = "Cloud controller"
