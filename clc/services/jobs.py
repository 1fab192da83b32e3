"""The periodic jobs' schedules (``luhyaapi.jobs``) in the CLC's database, where Celery beat reads them and a super
administrator edits them (django-celery-beat's admin pages): each job gets its first schedule once; what an
administrator changed afterwards (the interval, disabling it) is kept."""

from __future__ import annotations

from django.conf import settings
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from luhyaapi.jobs import JOBS


def ensure_job_schedules() -> list[str]:
    """Schedule every job that has no schedule yet, every ``job.every`` seconds or as its host setting says
    (``job.setting``); the names of those scheduled now."""
    made = []
    for job in JOBS:
        if PeriodicTask.objects.filter(name=job.name).exists():
            continue
        every = getattr(settings.EDUCLOUD, job.setting) if job.setting else job.every
        interval, _ = IntervalSchedule.objects.get_or_create(every=every, period=IntervalSchedule.SECONDS)
        PeriodicTask.objects.create(name=job.name, task=job.task, interval=interval, queue=job.queue,
                                    exchange=job.queue, routing_key=job.queue, description=job.description)
        made.append(job.name)
    return made
