"""The sampling loops of issue 17's collection: every ``watch.sample_seconds`` a sweep of this host's metrics, put on
the bus as ``metrics`` messages (a node's on its cluster's status queue, another host's on ``watch.metrics``)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from django.db import DatabaseError, close_old_connections

from luhyaapi.bus import Bus, BusUnavailable
from luhyaapi.config import Config
from luhyaapi.hostmetrics import HostSampler, ProcFormatError
from luhyaapi.messages import MetricsReport
from luhyaapi.queues import WATCH_METRICS, cc_status

logger = logging.getLogger(__name__)

# The Role dimension of a host of several roles: its roles in order, joined by this (a dimension's value may hold
# letters, digits, "_", ".", ":" and "-" only).
ROLE_SEPARATOR = "-"
# The roles whose hosts report to their cluster's CC (their status and their metrics), not to the cloud.
CLUSTER_ROLES = ("nc", "sc")


def host_role(config: Config) -> str:
    """The ``Role`` dimension of this host's samples: its roles, sorted, joined by ``ROLE_SEPARATOR``."""
    return ROLE_SEPARATOR.join(sorted(config.roles))


def metrics_queue(config: Config) -> str:
    """Where a host without a node controller sends its own samples: its cluster's status queue for an SC host (it
    reaches only its CC, which relays them), ``watch.metrics`` for every other host."""
    return cc_status(config.cluster) if any(config.has_role(role) for role in CLUSTER_ROLES) else WATCH_METRICS


def host_sweep(sampler: HostSampler, host: str) -> list[MetricsReport]:
    """This host's samples as one ``metrics`` message (none when they cannot be read: logged)."""
    try:
        return [MetricsReport(host=host, samples=tuple(sampler.sample()))]
    except (OSError, ProcFormatError) as exc:
        logger.warning("metrics: no host sample: %s", exc)
        return []


def sample_loop(period: float, sweep: Callable[[], list[MetricsReport]], bus: Bus,
                queue: str) -> Callable[[threading.Event], None]:
    """A worker's loop: every ``period`` seconds ``sweep()`` and publish its messages on ``queue``. A sweep whose
    records cannot be read, or whose messages the bus does not take within its retry window, is logged and lost:
    a gap in the metrics (the sweeps after it go on from their own readings)."""

    def loop(stop: threading.Event) -> None:
        try:
            while not stop.wait(period):
                try:
                    for report in sweep():
                        bus.publish(queue, report)
                except (DatabaseError, BusUnavailable) as exc:
                    logger.warning("metrics: a sample period's metrics are lost: %s", exc)
                    close_old_connections()
        finally:
            close_old_connections()

    return loop
