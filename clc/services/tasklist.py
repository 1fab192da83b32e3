"""The task list of the console and the API: task records, newest change first, filtered by how they stand. The
status folder writes every change of phase, state and progress to the record, so the records are current."""

from __future__ import annotations

from django.db.models import Q, QuerySet

from luhyadb.models import TaskTransaction

# How a task stands: failed (whatever its phase), running (neither failed nor done), done (finished well).
TASK_FILTERS: dict[str, Q] = {
    "failed": Q(failed=True),
    "running": Q(failed=False, done=False),
    "done": Q(failed=False, done=True),
}


def find_tasks(show: str = "") -> QuerySet:
    """Tasks that stand as ``show`` (a key of ``TASK_FILTERS``; "" for all), newest change first. Raises ValueError
    for another ``show``."""
    tasks = TaskTransaction.objects.order_by("-updated", "-pk")
    if not show:
        return tasks
    if show not in TASK_FILTERS:
        raise ValueError(f"show must be one of {', '.join(TASK_FILTERS)}")
    return tasks.filter(TASK_FILTERS[show])


def standing(task: TaskTransaction) -> str:
    """The ``TASK_FILTERS`` key a task falls under."""
    if task.failed:
        return "failed"
    return "done" if task.done else "running"
