"""Reading tasks back: the task record, overlaid with the newest progress from the status cache."""

from __future__ import annotations

from django.core.cache import cache

from clc.services.status import task_key
from luhyadb.models import TaskTransaction

TASK_FIELDS = ("tid", "phase", "state", "progress", "vmstatus", "ccip", "ncip", "message", "failed", "done")


class TaskNotFound(LookupError):
    """Neither the database nor the cache knows the task."""


def task_status(tid: str) -> dict:
    """The task's phase, state and progress; the cache's report wins over the record, which is written less often."""
    record = TaskTransaction.objects.filter(tid=tid).values(*TASK_FIELDS, "updated").first()
    live = cache.get(task_key(tid))
    if record is None and live is None:
        raise TaskNotFound(f"no task {tid!r}")
    status = dict(record or {"tid": tid})
    if record:
        status["updated"] = record["updated"].timestamp()
    if live:
        status.update({field: live[field] for field in ("phase", "state", "progress", "vmstatus", "failed", "done")})
        status["message"] = live.get("errormsg") or status.get("message", "")
        status["updated"] = live["folded_at"]
    return status
