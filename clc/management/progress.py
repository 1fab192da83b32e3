"""A text progress bar for long transfers run from the command line."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable


def _size(count: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if count < 1024 or unit == "TiB":
            return f"{count:.1f} {unit}" if unit != "B" else f"{int(count)} B"
        count /= 1024
    return f"{count:.1f} TiB"


class ProgressBar:
    """``bar(done, total)`` redraws at most ``per_second`` times a second: percent, bytes, speed and time left."""

    def __init__(self, label: str, write: Callable[[str], object] = sys.stderr.write, width: int = 30,
                 per_second: float = 5.0) -> None:
        self.label = label
        self.write = write
        self.width = width
        self.interval = 1.0 / per_second
        self.started = time.monotonic()
        self.first_done: int | None = None
        self.last_drawn = 0.0

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        if self.first_done is None:
            # A resumed transfer starts part-way: speed counts only what this run moved.
            self.first_done = done
        if done < total and now - self.last_drawn < self.interval:
            return
        self.last_drawn = now
        fraction = done / total if total else 1.0
        filled = int(self.width * fraction)
        elapsed = max(now - self.started, 1e-6)
        speed = (done - self.first_done) / elapsed
        if speed > 0:
            left = int((total - done) / speed)
            eta = f"{_size(speed)}/s {left // 60:d}:{left % 60:02d} left"
        else:
            eta = "starting"
        line = (f"\r{self.label} [{'#' * filled}{'.' * (self.width - filled)}] {fraction * 100:5.1f}% "
                f"{_size(done)}/{_size(total)} {eta} ")
        self.write(line + ("\n" if done >= total else ""))
