"""The CLC's periodic job (``luhyaapi.jobs``), sent by Celery beat to ``jobs.clc``: an adapter over one service."""

from __future__ import annotations

from celery import shared_task
from django.conf import settings

from clc.services.portal import stop_idle_desktops


@shared_task(name="clc.stop_idle_desktops")
def stop_idle() -> list[str]:
    """Stop the remote desktops unused for ``clc.idle_stop_minutes`` (none when it is 0); the ids stopped."""
    minutes = settings.EDUCLOUD.idle_stop_minutes
    return stop_idle_desktops(minutes) if minutes else []
