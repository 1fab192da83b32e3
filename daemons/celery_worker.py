"""A Celery worker in a thread of the host's process (``manage.py run_cloud``), as ``celery -A educloud worker``
runs one in a process of its own: the same tasks, queues and pool."""

from __future__ import annotations

import logging
import threading

logger = logging.getLogger(__name__)

# Threads, not processes: a node's commands share its per-instance locks and its image cache's in-process state, and
# they mostly wait (downloads, guests booting), so a thread each is what they need.
POOL = "threads"
BEAT_MAX_INTERVAL = 5.0
# How often the worker's timer thread looks at its schedule, and so how long its stop waits for that thread (Celery's
# default is a second).
TIMER_PRECISION = 0.1
WAKE_SECONDS = 0.2


def celery_worker(hostname: str, queues: list[str], concurrency: int):
    """A loop for ``daemons.worker.Worker``: runs a worker consuming ``queues`` until ``stop`` is set."""

    def loop(stop: threading.Event) -> None:
        from celery.platforms import EX_OK
        from celery.worker import state as celery_state

        from educloud.celery import app

        worker = app.WorkController(hostname=hostname, queues=queues, pool=POOL, concurrency=concurrency,
                                    without_mingle=True, without_gossip=True, loglevel="WARNING",
                                    timer_precision=TIMER_PRECISION)

        ended = threading.Event()

        def stop_when_asked() -> None:
            stop.wait()
            # Asked as Celery's own signal handlers ask (a warm shutdown): the worker's loop sees the flag and stops
            # in its own thread. worker.stop() from here raced that loop for the broker connection (the loop read
            # the confirm of the goodbye event that stop() waited for, and both hung).
            celery_state.should_stop = EX_OK
            # The loop looks at the flag between two waits for the broker, and waits once more after it has seen
            # it; a wait on a polled transport (the embedded SQLite broker) lasts two seconds unless a message
            # comes. A ping to this worker is one, so it is knocked on until it has stopped.
            while not ended.is_set():
                _wake(app, hostname)
                ended.wait(WAKE_SECONDS)

        celery_state.should_stop = None  # a worker this process ran before was stopped by this flag
        threading.Thread(target=stop_when_asked, name=f"{hostname}-stopper", daemon=True).start()
        logger.info("celery worker %s consumes %s (%d slots)", hostname, ", ".join(queues), concurrency)
        try:
            worker.start()
        finally:
            ended.set()
        if not stop.is_set():
            raise RuntimeError(f"the celery worker {hostname} stopped (exit code {worker.exitcode})")

    return loop


def _wake(app, hostname: str) -> None:
    """Ends the worker's wait for the broker with a message of no consequence. Without a broker to take it, the
    wait just runs out."""
    try:
        app.control.broadcast("ping", destination=[hostname], reply=False)
    except Exception as error:  # the broker is away: nothing to wake the loop with
        logger.debug("could not wake the celery worker %s to stop it: %s", hostname, error)


def celery_beat():
    """A loop for ``daemons.worker.Worker``: Celery beat, sending the periodic jobs (``luhyaapi.jobs``) on the
    schedules in this host's database (django-celery-beat, editable by a super administrator) until ``stop`` is
    set. Runs on the CLC's host, one per cloud, as ``celery -A educloud beat`` would
    (deploy/systemd/educloud-beat.service)."""

    def loop(stop: threading.Event) -> None:
        from celery.beat import Service

        from educloud.celery import app

        # Checks the schedules at least every few seconds, so an administrator's change is taken up soon.
        # The scheduler named, as ``celery beat`` passes it (Service alone would keep a shelve file instead).
        service = Service(app, max_interval=BEAT_MAX_INTERVAL, scheduler_cls=app.conf.beat_scheduler)

        def stop_when_asked() -> None:
            stop.wait()
            service.stop()

        threading.Thread(target=stop_when_asked, name="beat-stopper", daemon=True).start()
        logger.info("celery beat sends the periodic jobs (scheduler %s)", app.conf.beat_scheduler)
        service.start(embedded_process=False)

    return loop
