"""Alarm actions that run inside the watch process: an alarm's ``hook:<name>`` action calls the function registered
under ``name`` when the alarm enters ALARM (the autoscaling issue registers its own). A hook nobody registered is
not an error of the evaluation: the evaluation records it in the alarm's history (``UnknownHook``)."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

HOOK_NAME = re.compile(r"^[a-z][a-z0-9_.-]{0,63}$")


@dataclass(frozen=True)
class AlarmEvent:
    """What a hook is told: the alarm that entered ALARM, its dimensions, why, the datapoints that decided it and
    when (epoch seconds)."""

    alarm: str
    dimensions: dict[str, str]
    state: str
    reason: str
    datapoints: list[dict]
    time: float


Hook = Callable[[AlarmEvent], None]


class UnknownHook(LookupError):
    """No hook is registered under the name an alarm's action gives."""


_hooks: dict[str, Hook] = {}


def register(name: str, hook: Hook) -> None:
    """Call ``hook(event)`` for every alarm with action ``hook:<name>`` that enters ALARM; a name registered again
    takes the new function. ``ValueError`` for a name outside ``HOOK_NAME``."""
    if not HOOK_NAME.match(name):
        raise ValueError(f"{name!r} is not a hook name (lowercase letters, digits and _.-, at most 64)")
    _hooks[name] = hook


def unregister(name: str) -> None:
    """Forget the hook (nothing if none is registered under ``name``)."""
    _hooks.pop(name, None)


def run(name: str, event: AlarmEvent) -> None:
    """Run the hook registered under ``name``; ``UnknownHook`` if there is none. What the hook raises, it raises."""
    hook = _hooks.get(name)
    if hook is None:
        raise UnknownHook(f"no hook {name!r} is registered in this watch process")
    hook(event)
