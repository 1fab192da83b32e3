"""Running a queue's real consumer in the test's own thread (its database connection and transaction) until every
message on the queue was handed over or parked, for tests of who may put what on which queue."""

from __future__ import annotations

import threading
import time

from luhyaapi.bus import Bus, DeadLetter
from luhyaapi.messages import Message


class Delivered:
    """What a run of a consumer did: the messages its handler was handed, and those the bus parked (with why)."""

    def __init__(self) -> None:
        self.handled: list[Message] = []
        self.parked: list[DeadLetter] = []

    @property
    def reasons(self) -> list[str]:
        return [letter.reason for letter in self.parked]


def deliver(bus: Bus, queue: str, consume, count: int, timeout: float = 10.0) -> Delivered:
    """Consume ``queue`` with ``consume`` (a consumer's ``consume``) until ``count`` messages were handed over or
    parked, or ``timeout`` seconds passed."""
    done = Delivered()
    stop = threading.Event()

    def handle(messages: list[Message]) -> None:
        consume(messages)
        done.handled.extend(messages)

    def watch() -> None:
        deadline = time.monotonic() + timeout
        while not stop.is_set():
            done.parked += bus.take_dead_letters(queue)
            if len(done.handled) + len(done.parked) >= count or time.monotonic() > deadline:
                stop.set()
            time.sleep(0.02)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    bus.consume(queue, handle, stop, max_wait=0.02)
    watcher.join(timeout=5)
    return done
