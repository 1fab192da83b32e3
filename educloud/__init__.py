"""The Django project that hosts whichever eduCloud roles this machine is configured to run."""

# Loaded with Django, so the tasks of this host's roles are registered and ``shared_task`` binds to this app.
from educloud.celery import app as celery_app

__all__ = ["celery_app"]
