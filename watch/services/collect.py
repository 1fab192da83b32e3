"""The watch role's intake (issue 17, collection): the samples of ``metrics`` messages from ``watch.metrics`` into
the store, in batches of at most ``MAX_SAMPLES``."""

from __future__ import annotations

import logging
from collections.abc import Iterable

from django.db import IntegrityError

from luhyaapi.messages import MetricsReport
from luhyaapi.metrics import MAX_SAMPLES, MetricSample
from watch.services.store import store

logger = logging.getLogger(__name__)


def collect(reports: Iterable[MetricsReport]) -> int:
    """Store every sample of ``reports`` (``watch.services.store.store``, ``MAX_SAMPLES`` at a time); returns how
    many points were new. A batch another writer stored points of at the same moment (``IntegrityError``: two
    watch hosts, or a message delivered twice at once) is stored again once, which keeps the rest. Raises
    ``django.db.DatabaseError`` when the database fails: what was stored stays (a repeated point is left out when
    the reports come again), so the caller retries the reports whole."""
    samples: list[MetricSample] = [sample for report in reports for sample in report.samples]
    stored = 0
    for start in range(0, len(samples), MAX_SAMPLES):
        chunk = samples[start:start + MAX_SAMPLES]
        try:
            stored += store(chunk)
        except IntegrityError as exc:
            logger.info("metrics: another writer stored some of %d samples at once, storing again: %s", len(chunk),
                        exc)
            stored += store(chunk)
    return stored
