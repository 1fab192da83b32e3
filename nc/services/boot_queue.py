"""The node's boot queue: at most ``nc.max_parallel_boots`` of its VMs booting at once, the runs beyond it waiting
their turn in order of arrival, each told its place in line.

What counts as booting is the node's own records (``NodeInstance`` in state ``booting``, one left from before a
restart of the node controller too) and the runs that took a slot and are starting their VM (their record does not
say ``booting`` yet). A slot frees when the watcher sees the guest up (or gives up waiting for it), or a stop or
delete ends the instance; whoever does that calls ``wake()``. One node controller is one process, so a condition
variable is enough; the waiting runs also look again every ``RECHECK_SECONDS``, so a wake-up that never came (a
record changed by other means) delays a boot by that much, never for good.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from django.conf import settings

from nc.models import NodeInstance

logger = logging.getLogger(__name__)

RECHECK_SECONDS = 1.0

_changed = threading.Condition()
# The instances waiting for a slot, first come first.
_line: list[str] = []
# The instances that took a slot and are starting their VM.
_starting: set[str] = set()


class WaitCancelled(Exception):
    """A stop or delete ended the wait for a boot slot; the VM was not started."""


def ordinal(number: int) -> str:
    """1st, 2nd, 3rd, 4th, ... 11th, 12th, 13th, ... 21st."""
    suffix = "th" if number % 100 in (11, 12, 13) else {1: "st", 2: "nd", 3: "rd"}.get(number % 10, "th")
    return f"{number}{suffix}"


def waiting_text(place: int) -> str:
    """How a waiting run's place is reported (the instance's and the task's ``vmstatus``), e.g. "waiting to boot,
    3rd in line"; the portal shows it as the start's step."""
    return f"waiting to boot, {ordinal(place)} in line"


def _booting() -> set[str]:
    """The instances holding a slot now. Called with ``_changed`` held, so no run takes a slot meanwhile."""
    recorded = NodeInstance.objects.filter(state="booting").values_list("instance_id", flat=True)
    return set(recorded) | _starting


def booting_now() -> set[str]:
    """The instances that count against the cap now (booting by their record, or starting their VM)."""
    with _changed:
        return _booting()


def waiting_now() -> list[str]:
    """The instances waiting for a slot, first in line first."""
    with _changed:
        return list(_line)


def wake() -> None:
    """Have the waiting runs look again at once: an instance left ``booting`` (it runs, or it was stopped, deleted
    or failed), or a stop set the cancel event of a waiting run."""
    with _changed:
        _changed.notify_all()


def _wait_turn(insid: str, cap: int, cancel: threading.Event, on_wait: Callable[[int], None]) -> None:
    """Join the line and return once ``insid`` is first and a slot is free, with the slot taken (in ``_starting``).
    ``on_wait(place)`` is called (outside the lock: it reports over the bus) whenever the place changes, never for
    a run that found a slot free and nobody waiting."""
    told = 0
    with _changed:
        _line.append(insid)
    try:
        while True:
            with _changed:
                if cancel.is_set():
                    raise WaitCancelled(insid)
                place = _line.index(insid) + 1
                if place == 1 and len(_booting()) < cap:
                    _line.remove(insid)
                    _starting.add(insid)
                    _changed.notify_all()  # the next in line is first now: it looks, and the others move up
                    return
                if place == told:
                    _changed.wait(RECHECK_SECONDS)
                    continue
            logger.info("boot queue: %s waits to boot, %s in line (at most %d booting)", insid, ordinal(place), cap)
            on_wait(place)
            told = place
    finally:
        with _changed:
            if insid in _line:
                _line.remove(insid)
                _changed.notify_all()


@contextmanager
def boot_slot(insid: str, cancel: threading.Event, on_wait: Callable[[int], None]) -> Iterator[None]:
    """Hold one of this node's boot slots while the VM of ``insid`` is started in the block. Enters at once while
    fewer than ``nc.max_parallel_boots`` (0: no cap) instances are booting and no run waits; else waits in line,
    first come first served, calling ``on_wait(place)`` (1: next) each time its place changes. The slot counts as
    booting until the block ends: by then the instance's record says ``booting`` (and goes on counting until the
    watcher sees the guest up), or its start failed.

    Raises ``WaitCancelled`` as soon as ``cancel`` is set and ``wake()`` called (a stop or delete of the instance),
    without entering the block. What ``on_wait`` raises leaves the line and passes through."""
    cap = settings.EDUCLOUD.max_parallel_boots
    if cap > 0:
        _wait_turn(insid, cap, cancel, on_wait)
    try:
        yield
    finally:
        with _changed:
            _starting.discard(insid)
            _changed.notify_all()
