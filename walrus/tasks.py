"""Walrus's periodic job (``luhyaapi.jobs``), sent by Celery beat to ``jobs.walrus``: an adapter over one service."""

from __future__ import annotations

from celery import shared_task
from django.conf import settings

from walrus.services.store import expire_uploads


@shared_task(name="walrus.expire_uploads")
def expire_abandoned_uploads() -> list[str]:
    """Delete the uploads nobody wrote to for ``walrus.upload_expiry_seconds``; the ids deleted."""
    return expire_uploads(settings.EDUCLOUD.upload_expiry_seconds)
