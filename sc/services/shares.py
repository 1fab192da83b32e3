"""What the SC's WebDAV homes and owner-group shares hold: each folder that exists under ``{data_dir}/sc/dav/``, its
bytes and its quota, so the CLC can show who fills the shares (``GET /sc/api/1.0/shares/``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import overload

from django.conf import settings

from sc.dav.access import GROUPS, HOME, dav_root
from sc.dav.provider import tree_bytes

KINDS = {HOME: "home", GROUPS: "group"}


@dataclass(frozen=True)
class ShareUsage:
    """A home (``kind`` "home", ``owner`` its user name) or an owner-group share (``kind`` "group", ``owner`` the
    owner-group's path): ``path`` below the WebDAV mount (``home/alice``), the bytes of its files and its quota."""

    path: str
    kind: str
    owner: str
    used_bytes: int
    quota_bytes: int


def dav_dir() -> Path:
    """The folder this SC's WebDAV serves."""
    return dav_root(settings.EDUCLOUD.data_dir)


def share_folders() -> list[tuple[str, str]]:
    """``(area, name)`` of every home and share folder that exists, homes first, each area sorted by name. Folders
    are made at a login's first use, so an account that never used WebDAV has none. A symbolic link or a hidden
    entry is not a share (wsgidav serves neither)."""
    folders = []
    for area in (HOME, GROUPS):
        try:
            entries = sorted((dav_dir() / area).iterdir())
        except FileNotFoundError:
            continue
        folders += [(area, entry.name) for entry in entries
                    if not entry.name.startswith(".") and entry.is_dir() and not entry.is_symlink()]
    return folders


def usage_of(area: str, name: str) -> ShareUsage:
    """What one home or share holds now (its files' bytes, counted afresh) and the SC's quota for it."""
    return ShareUsage(path=f"{area}/{name}", kind=KINDS[area], owner=name,
                      used_bytes=tree_bytes(dav_dir() / area / name),
                      quota_bytes=settings.EDUCLOUD.dav_quota_bytes)


class ShareUsageList(Sequence):
    """The homes and shares as a sequence whose items are counted only when taken: a page of the list walks the
    files of its own shares only, not of every share of the SC (a count of a large share reads its whole tree)."""

    def __init__(self) -> None:
        self._folders = share_folders()

    def __len__(self) -> int:
        return len(self._folders)

    @overload
    def __getitem__(self, index: int) -> ShareUsage: ...

    @overload
    def __getitem__(self, index: slice) -> list[ShareUsage]: ...

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [usage_of(*folder) for folder in self._folders[index]]
        return usage_of(*self._folders[index])


def share_usage() -> ShareUsageList:
    """Every home and owner-group share folder of this SC with its usage, counted as each is read."""
    return ShareUsageList()
