"""Django app config of the Cloudwatch role."""

from django.apps import AppConfig


class WatchConfig(AppConfig):
    name = "watch"
    verbose_name = "Cloudwatch"
