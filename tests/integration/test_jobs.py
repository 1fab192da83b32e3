"""The periodic jobs on the embedded default, as ``run_cloud`` runs them: ``init_cloud``'s schedules in the CLC's
database (given once, an administrator's change kept), Celery beat (``clc-beat``) sending the upload expiry on its
schedule to ``jobs.walrus``, and the host's worker (``celery-worker``) running it: the abandoned upload is gone."""

from __future__ import annotations

import threading
from dataclasses import replace

import pytest
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from clc.services.jobs import ensure_job_schedules
from daemons.celery_worker import celery_beat, celery_worker
from luhyaapi.jobs import JOBS
from luhyaapi.queues import jobs_queue
from tests.services import wait_for
from walrus.models import Upload
from walrus.tests.test_expiry import idle_for, open_upload

pytestmark = [pytest.mark.database, pytest.mark.django_db(transaction=True)]

EXPIRY = next(job for job in JOBS if job.task == "walrus.expire_uploads")


def test_each_job_gets_its_first_schedule_once_and_an_administrators_change_is_kept():
    assert ensure_job_schedules() == [job.name for job in JOBS]
    scheduled = {task.name: task for task in PeriodicTask.objects.filter(name__in=[job.name for job in JOBS])}
    for job in JOBS:
        task = scheduled[job.name]
        assert (task.task, task.queue, task.routing_key, task.interval.every, task.enabled) == (
            job.task, jobs_queue(job.role), jobs_queue(job.role), job.every, True)
    PeriodicTask.objects.filter(name=EXPIRY.name).update(enabled=False)
    assert ensure_job_schedules() == []
    assert PeriodicTask.objects.get(name=EXPIRY.name).enabled is False


def test_a_job_with_a_host_setting_gets_its_first_schedule_from_it(settings):
    settings.EDUCLOUD = replace(settings.EDUCLOUD, watch_evaluate_seconds=10)
    ensure_job_schedules()
    alarms = next(job for job in JOBS if job.task == "watch.evaluate_alarms")
    assert alarms.setting == "watch_evaluate_seconds"
    assert PeriodicTask.objects.get(name=alarms.name).interval.every == 10
    assert PeriodicTask.objects.get(name=EXPIRY.name).interval.every == EXPIRY.every


def test_beat_sends_the_upload_expiry_on_its_schedule_and_the_walrus_hosts_worker_runs_it(settings):
    ensure_job_schedules()
    every_second, _ = IntervalSchedule.objects.get_or_create(every=1, period=IntervalSchedule.SECONDS)
    PeriodicTask.objects.filter(name=EXPIRY.name).update(interval=every_second)
    abandoned = open_upload()
    idle_for(abandoned, 24 * 8)

    stop = threading.Event()
    loops = [threading.Thread(target=celery_worker("jobs@test", [jobs_queue("walrus")], 2), args=(stop,),
                              daemon=True),
             threading.Thread(target=celery_beat(), args=(stop,), daemon=True)]
    for loop in loops:
        loop.start()
    try:
        wait_for("beat to send the expiry and the worker to run it",
                 lambda: not Upload.objects.filter(upload_id=abandoned).exists(), 60)
    finally:
        stop.set()
        for loop in loops:
            loop.join(timeout=30)
    assert not any(loop.is_alive() for loop in loops), "beat and the worker stop when the host does"
    assert PeriodicTask.objects.get(name=EXPIRY.name).total_run_count >= 1


def test_a_super_administrator_edits_the_schedules_in_the_admin_pages_and_nobody_else_sees_them(admin_client,
                                                                                                  client):
    from django.contrib.auth import get_user_model

    ensure_job_schedules()
    page = admin_client.get("/admin/django_celery_beat/periodictask/")
    assert page.status_code == 200
    assert all(job.name in page.content.decode() for job in JOBS)
    staff = get_user_model().objects.create_user("school-admin", password="Pw-school-1", is_staff=True)
    client.force_login(staff)
    assert client.get("/admin/django_celery_beat/periodictask/").status_code == 403


def test_the_idle_stop_job_does_nothing_while_the_cloud_stops_no_idle_desktop(settings):
    from dataclasses import replace

    from clc.tasks import stop_idle

    settings.EDUCLOUD = replace(settings.EDUCLOUD, idle_stop_minutes=0)
    assert stop_idle.apply().result == []
