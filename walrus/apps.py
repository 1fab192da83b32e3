"""Django app config of the Walrus role."""

from django.apps import AppConfig


class WalrusConfig(AppConfig):
    name = "walrus"
    verbose_name = "Walrus"
