"""Who may do what under ``/sc/dav/``: a pure decision on a login (what the CLC said of it), a method and the paths
it touches. The owner-group rule itself is the CLC's (``clc.services.authz``, type ``share``); this module only maps
a WebDAV request onto the answer the CLC gave for the login.

Layout of the tree (each a folder on disk under ``{data_dir}/sc/dav/``)::

    /                        read only: lists home/ and groups/
    /home/                   read only: lists the person's own home only
    /home/<username>/...     the account's own files; anyone else's home is "not found"
    /groups/                 read only: lists the shares the person may read
    /groups/<path>/...       an owner-group's share: read/write as the CLC's answer says; another branch's is
                             "not found", one in the person's authority they may not write is "forbidden"
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from luhyaapi.shares import ShareLogin
from luhyaapi.validators import OWNER_PATH_RE

HOME, GROUPS = "home", "groups"


def dav_root(data_dir: Path) -> Path:
    """The folder the SC serves over WebDAV, holding ``home/`` and ``groups/``."""
    return data_dir / "sc" / "dav"


READ_METHODS = frozenset({"GET", "HEAD", "PROPFIND", "OPTIONS"})
WRITE_METHODS = frozenset({"PUT", "DELETE", "MKCOL", "MOVE", "COPY", "PROPPATCH", "LOCK", "UNLOCK", "POST"})
# A file system's limit on one name (bytes of UTF-8); WSGI paths carry each byte as one character.
MAX_NAME_BYTES = 255
MAX_PATH_BYTES = 4096
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class Refused(Exception):
    """The request is refused with ``status`` (400 a bad name, 403 not allowed, 404 not there for this person)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Place:
    """Where a path under the mount lies: ``area`` "" (the top), ``home`` or ``groups``; ``owner`` the home's user
    name or the share's owner-group path ("" for the area's own listing); ``rest`` the path inside it."""

    area: str
    owner: str = ""
    rest: str = ""

    @property
    def root(self) -> str:
        """The folder that holds this place's files (``home/alice``), "" for the listings above them."""
        return f"{self.area}/{self.owner}" if self.owner else ""


def check_path(path: str, field: str = "path") -> list[str]:
    """The segments of a path (as WSGI carries it: each byte one character), or ``Refused`` (400) for a segment
    ``.`` or ``..``, a control character (NUL among them), a name over 255 bytes or a path over 4096."""
    if len(path) > MAX_PATH_BYTES:
        raise Refused(400, f"{field}: longer than {MAX_PATH_BYTES} bytes")
    if _CONTROL.search(path):
        raise Refused(400, f"{field}: control characters (NUL among them) are not allowed in names")
    segments = [segment for segment in path.split("/") if segment]
    for segment in segments:
        if segment in (".", ".."):
            raise Refused(400, f"{field}: '.' and '..' are not allowed in paths")
        if len(segment) > MAX_NAME_BYTES:
            raise Refused(400, f"{field}: a name longer than {MAX_NAME_BYTES} bytes")
    return segments


def place_of(path: str) -> Place:
    """The place of a path below the mount (``/home/alice/notes.txt``); ``Refused`` (400) for a bad path, 404 for one
    outside the tree."""
    segments = check_path(path)
    if not segments:
        return Place("")
    area, rest = segments[0], segments[1:]
    if area not in (HOME, GROUPS):
        raise Refused(404, "not found")
    if not rest:
        return Place(area)
    if area == GROUPS and not OWNER_PATH_RE.fullmatch(rest[0]):
        raise Refused(404, "not found")
    return Place(area, rest[0], "/".join(rest[1:]))


def may(login: ShareLogin, place: Place, write: bool) -> None:
    """Raise ``Refused`` unless the login may read (or ``write``) at ``place``: its own home, a share the CLC said it
    reaches; the listings above them are read only."""
    if not place.owner:
        if write:
            raise Refused(403, "the top folders are read only: write inside your home or a share")
        return
    if place.area == HOME:
        if place.owner != login.username:
            raise Refused(404, "not found")
        return
    share = login.share(place.owner)
    if share is None or not (share.read or share.write):
        raise Refused(404, "not found")
    if write and not share.write:
        raise Refused(403, f"your owner-group may not write the share of {place.owner}")
    if not write and not share.read:
        raise Refused(403, f"your owner-group may not read the share of {place.owner}")


def check_request(login: ShareLogin, method: str, path: str, destination: str | None) -> tuple[Place, Place | None]:
    """Decide a request: its own place and, for COPY and MOVE, the destination's (a path below the mount). Reading
    methods need read; writing ones need write at the path, except COPY, which reads its source; the destination
    always needs write. Raises ``Refused``."""
    place = place_of(path)
    write = method in WRITE_METHODS and method != "COPY"
    may(login, place, write)
    target = None
    if destination is not None:
        segments = check_path(destination, "Destination")
        target = place_of("/".join(segments))
        may(login, target, True)
    return place, target
