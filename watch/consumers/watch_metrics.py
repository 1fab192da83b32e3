"""Consumer of ``watch.metrics``: every host's samples (a node's relayed by its CC), into the metric store."""

from __future__ import annotations

from django.db import DatabaseError

from luhyaapi.bus import RetryLater
from luhyaapi.messages import Message, MetricsReport
from luhyaapi.queues import WATCH_METRICS
from watch.services.collect import collect

# Messages per batch: up to 50,000 samples (a message holds at most 1,000), stored 1,000 at a time.
MAX_BATCH = 50


class WatchMetricsConsumer:
    queue = WATCH_METRICS

    def consume(self, messages: list[Message]) -> None:
        try:
            collect(message for message in messages if isinstance(message, MetricsReport))
        except DatabaseError as exc:
            # The batch waits on its queue until the database is back; a stored part is not stored twice.
            raise RetryLater(f"metric store unavailable: {exc}") from exc
