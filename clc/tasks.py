"""The CLC's periodic jobs (``luhyaapi.jobs``), sent by Celery beat to ``jobs.clc``: each an adapter over one
service."""

from __future__ import annotations

from celery import shared_task
from django.conf import settings

from clc.services.lessons import keep_pools
from clc.services.portal import stop_idle_desktops


@shared_task(name="clc.stop_idle_desktops")
def stop_idle() -> list[str]:
    """Stop the remote desktops unused for ``clc.idle_stop_minutes`` (none when it is 0); the ids stopped."""
    minutes = settings.EDUCLOUD.idle_stop_minutes
    return stop_idle_desktops(minutes) if minutes else []


@shared_task(name="clc.keep_pools")
def keep_desktop_pools() -> dict[str, list[str]]:
    """Keep every desktop pool's ready desktops up and stop the unused ones after a lesson; what it did, by pool."""
    return keep_pools()
