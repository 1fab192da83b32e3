"""Django app config of the cloud's records."""

from django.apps import AppConfig
from django.conf import settings

from luhyaapi.datadir import secure_data_dir


class LuhyadbConfig(AppConfig):
    name = "luhyadb"
    verbose_name = "eduCloud records"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Here because every process of a host (web server, daemons, manage.py commands) starts Django before it
        # opens the database: the data dir and the SQLite file are private before anything is written to them.
        secure_data_dir(settings.EDUCLOUD)
