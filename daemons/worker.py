"""A named background loop that is restarted after a crash, so one failure never silences a role."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from django.db import close_old_connections

logger = logging.getLogger(__name__)


class Worker:
    """Runs ``target(stop)`` in a thread until ``stop`` is set, restarting it with back-off when it raises."""

    def __init__(self, name: str, target: Callable[[threading.Event], None], stop: threading.Event) -> None:
        self.name = name
        self.target = target
        self.stop = stop
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.restarts = 0

    def start(self) -> None:
        self.thread.start()

    def _run(self) -> None:
        delay = 0.5
        while not self.stop.is_set():
            try:
                self.target(self.stop)
                return
            except Exception:
                self.restarts += 1
                logger.exception("daemon %s crashed; restarting in %.1fs", self.name, delay)
                close_old_connections()
                self.stop.wait(delay)
                delay = min(delay * 2, 30.0)

    def join(self, timeout: float | None = None) -> None:
        self.thread.join(timeout)
