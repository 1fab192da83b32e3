"""The watch role's periodic jobs (``luhyaapi.jobs``), sent by Celery beat to ``jobs.watch``: adapters over one
service each."""

from __future__ import annotations

import time

from celery import shared_task

from watch.services import alarms, store


@shared_task(name="watch.purge_metrics")
def purge_metrics() -> dict[str, int]:
    """Delete the points and rollups past their days; how many rows of each kind went."""
    return store.purge(time.time())


@shared_task(name="watch.evaluate_alarms")
def evaluate_alarms() -> dict[str, int]:
    """Evaluate every alarm now; how many were evaluated and how many changed state."""
    return alarms.evaluate_alarms(time.time())
