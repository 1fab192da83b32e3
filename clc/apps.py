"""Django app config of the cloud controller."""

from django.apps import AppConfig
from django.contrib.auth.signals import user_logged_in


class ClcConfig(AppConfig):
    name = "clc"
    verbose_name = "Cloud controller"

    def ready(self) -> None:
        from clc.services.sessions import start_session

        user_logged_in.connect(start_session, dispatch_uid="clc.services.sessions.start_session")
