"""Resource ids (``img-``, ``ins-``... followed by 8 hex digits) and the task id ``srcid:dstid:insid``."""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass

from luhyaapi.wording import with_article

PREFIXES = {
    "image": "img",
    "instance": "ins",
    "volume": "vol",
    "snapshot": "snp",
    "server": "srv",
    "upload": "upl",
    "host": "hst",
    "task": "tsk",
    "pool": "pol",
    "lesson": "lsn",
}
_ID_RE = re.compile(r"^(?P<prefix>[a-z]{3})-(?P<hex>[0-9a-f]{8})$")


class InvalidId(ValueError):
    """Raised when a string is not a well-formed eduCloud id or task id."""


def new_id(kind: str) -> str:
    """Return a fresh random id for a resource kind, e.g. ``new_id("image") == "img-3fa9c2d1"``."""
    try:
        prefix = PREFIXES[kind]
    except KeyError:
        raise InvalidId(f"unknown resource kind {kind!r}; known: {', '.join(sorted(PREFIXES))}") from None
    return f"{prefix}-{secrets.token_hex(4)}"


def validate_id(value: str, kind: str | None = None) -> str:
    """Return ``value`` if it is a well-formed id (of ``kind`` when given); raise InvalidId otherwise."""
    match = _ID_RE.fullmatch(value or "") if isinstance(value, str) else None
    if not match or match["prefix"] not in PREFIXES.values():
        raise InvalidId(f"{value!r} is not an eduCloud id (expected like 'img-0123abcd')")
    if kind is not None and match["prefix"] != PREFIXES[kind]:
        raise InvalidId(f"{value!r} is not {with_article(kind)} id (expected prefix {PREFIXES[kind]!r})")
    return value


@dataclass(frozen=True)
class TaskId:
    """The notes' transaction id: one id ties the task record, its cached progress and the node's job together."""

    src: str
    dst: str
    ins: str

    def __str__(self) -> str:
        return f"{self.src}:{self.dst}:{self.ins}"

    @classmethod
    def parse(cls, value: str) -> TaskId:
        """Parse ``srcid:dstid:insid``; each part must be a valid id (src and dst images, ins an instance)."""
        parts = (value or "").split(":")
        if len(parts) != 3:
            raise InvalidId(f"{value!r} is not a task id (expected 'srcid:dstid:insid')")
        src, dst, ins = parts
        return cls(validate_id(src, "image"), validate_id(dst, "image"), validate_id(ins, "instance"))

    @classmethod
    def new(cls, src: str, dst: str | None = None) -> TaskId:
        """Start a task on image ``src``: a modify when ``dst`` is None (dst == src), else a create of ``dst``."""
        validate_id(src, "image")
        return cls(src, validate_id(dst, "image") if dst else src, new_id("instance"))
