"""Django app config of the daemons (entry points only, no models)."""

from django.apps import AppConfig


class DaemonsConfig(AppConfig):
    name = "daemons"
    verbose_name = "eduCloud daemons"
