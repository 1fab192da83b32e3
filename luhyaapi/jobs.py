"""The cloud's periodic jobs: Celery tasks that Celery beat (on the CLC's host, its schedules in the CLC's database
through django-celery-beat, editable by a super administrator) sends to the jobs queue of the role that runs them,
where that role's host's worker runs them. What folds status (heartbeats, the sweeper, the placer) stays a daemon
of its host: it keeps state in memory and works every second or two (docs/architecture.md, "Periodic jobs")."""

from __future__ import annotations

from dataclasses import dataclass

from luhyaapi.queues import jobs_queue

MINUTE = 60


@dataclass(frozen=True)
class Job:
    name: str  # the schedule's name, as the administrator sees it
    task: str  # the Celery task it sends
    role: str  # whose hosts run it
    every: int  # seconds between runs, the first schedule (the administrator may change it)
    description: str
    # The host setting (a field of ``luhyaapi.config.Config``) that gives the first schedule instead of ``every``.
    setting: str = ""

    @property
    def queue(self) -> str:
        return jobs_queue(self.role)


JOBS: tuple[Job, ...] = (
    Job("Expire abandoned uploads", "walrus.expire_uploads", "walrus", 15 * MINUTE,
        "Deletes the uploads nobody wrote to for walrus.upload_expiry_seconds, with their partial files."),
    Job("Stop idle remote desktops", "clc.stop_idle_desktops", "clc", MINUTE,
        "Stops the remote desktops unused for clc.idle_stop_minutes (nothing when it is 0)."),
    Job("Keep desktop pools ready", "clc.keep_pools", "clc", MINUTE,
        "Starts the desktops each pool keeps ready (all of them before a lesson of its timetable) and stops the "
        "unused ones after a lesson."),
    Job("Purge old metrics", "watch.purge_metrics", "watch", 15 * MINUTE,
        "Deletes raw metric points older than watch.raw_days and rollups older than watch.rollup_5m_days and "
        "watch.rollup_1h_days."),
    Job("Evaluate alarms", "watch.evaluate_alarms", "watch", MINUTE,
        "Evaluates every alarm on its metric's latest periods, records each change of state and runs its actions; "
        "the guest watchdog among them.", setting="watch_evaluate_seconds"),
)

ROLES_WITH_JOBS = frozenset(job.role for job in JOBS)
