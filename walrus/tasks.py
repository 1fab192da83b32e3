"""Walrus's periodic work, run as a daemon of the host (``daemons/roles.py``): adapters that call one service."""

from __future__ import annotations

import threading
from collections.abc import Callable

from django.db import close_old_connections

from walrus.services.store import expire_uploads

# Abandoned uploads are looked for this often at most (and four times per expiry time when that is shorter).
EXPIRY_CHECK_SECONDS = 3600.0


def expire_uploads_loop(max_idle_seconds: float) -> Callable[[threading.Event], None]:
    """A daemon loop that deletes abandoned uploads (``expire_uploads``) at start and then periodically, until
    ``stop`` is set."""
    period = min(EXPIRY_CHECK_SECONDS, max(1.0, max_idle_seconds / 4))

    def loop(stop: threading.Event) -> None:
        while True:
            expire_uploads(max_idle_seconds)
            # The loop sleeps for long: give the connection back rather than keep one the server may time out.
            close_old_connections()
            if stop.wait(period):
                return

    return loop
