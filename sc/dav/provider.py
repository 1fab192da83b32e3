"""The file system under ``{data_dir}/sc/dav/`` as wsgidav resources: wsgidav's own file system provider (which never
follows a symbolic link, nor a path out of its root) with the listings above the homes and shares narrowed to what
the login reaches, and uploads written beside their file and counted against the share's quota."""

from __future__ import annotations

import logging
import os
import secrets
from pathlib import Path

from wsgidav.dav_error import HTTP_INSUFFICIENT_STORAGE, DAVError
from wsgidav.fs_dav_provider import FileResource, FilesystemProvider, FolderResource

from luhyaapi.shares import ShareLogin
from sc.dav.access import GROUPS, HOME, place_of

logger = logging.getLogger(__name__)

LOGIN_KEY = "educloud.dav.login"
CREATED_KEY = "educloud.dav.created"
USAGE_KEY = "educloud.dav.usage"
# Uploads are written to a hidden file beside their target and renamed over it when complete, so a failed upload
# leaves the old file as it was; listings never show them.
UPLOAD_PREFIX = ".~educloud-upload-"
MIB = 2**20


def tree_bytes(path: Path) -> int:
    """Bytes of the regular files under ``path`` (a file: its own size), symbolic links not followed."""
    try:
        if not path.is_dir() or path.is_symlink():
            return path.lstat().st_size if path.is_file() and not path.is_symlink() else 0
    except OSError:
        return 0
    total = 0
    stack = [path]
    while stack:
        try:
            entries = list(os.scandir(stack.pop()))
        except OSError:
            continue
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                stack.append(Path(entry.path))
            elif entry.is_file(follow_symlinks=False):
                total += entry.stat(follow_symlinks=False).st_size
    return total


def over_quota_message(root: str, used: int, adding: int, quota: int) -> str:
    """What a 507 says: the share, what it holds, its quota and what did not fit."""
    return (f"the share {root}/ holds {used / MIB:.1f} MiB of its {quota / MIB:.0f} MiB quota (sc.dav_quota_mb): "
            f"{adding / MIB:.1f} MiB more do not fit")


class QuotaWriter:
    """A file being uploaded: refuses (507) the write that would take the share past its quota."""

    def __init__(self, path: str, room: int, message) -> None:
        self._file = open(path, "wb")  # noqa: SIM115 - closed by wsgidav's PUT (close), or end_write on errors
        self._room = room
        self._written = 0
        self._message = message

    def write(self, data: bytes) -> None:
        self._written += len(data)
        if self._written > self._room:
            raise DAVError(HTTP_INSUFFICIENT_STORAGE, self._message(self._written))
        self._file.write(data)

    def close(self) -> None:
        self._file.close()


class ShareFile(FileResource):
    """A file of a home or share: uploads go to a hidden file and replace the file only when complete."""

    _upload: str = ""

    def begin_write(self, *, content_type=None):
        provider: ShareProvider = self.provider
        root = provider.share_root(self.path)
        used = tree_bytes(root)
        own = self.get_content_length()
        room = provider.quota_bytes - used + own
        self._upload = str(Path(self._file_path).with_name(f"{UPLOAD_PREFIX}{secrets.token_hex(8)}"))
        label = root.relative_to(provider.root).as_posix()
        return QuotaWriter(self._upload, room,
                           lambda written: over_quota_message(label, used, written, provider.quota_bytes))

    def end_write(self, *, with_errors):
        if not self._upload:
            return
        if with_errors:
            Path(self._upload).unlink(missing_ok=True)
            if self.environ.get(CREATED_KEY) == self.path:
                Path(self._file_path).unlink(missing_ok=True)
        else:
            os.replace(self._upload, self._file_path)
            self.file_stat = os.stat(self._file_path)
        self._upload = ""


class ShareFolder(FolderResource):
    """A folder: the three listings above the homes and shares show only what the login reaches, and no folder
    lists an upload under way."""

    def get_member_names(self) -> list[str]:
        names = [name for name in super().get_member_names() if not name.startswith(UPLOAD_PREFIX)]
        login: ShareLogin | None = self.environ.get(LOGIN_KEY)
        place = place_of(self.path)
        if place.owner:
            return names
        if login is None:
            return []
        provider: ShareProvider = self.provider
        if place.area == "":
            return [HOME, GROUPS]
        if place.area == HOME:
            provider.ensure(f"/{HOME}/{login.username}")
            return [login.username]
        reachable = [share.path for share in login.shares if share.read]
        for path in reachable:
            provider.ensure(f"/{GROUPS}/{path}")
        return reachable

    def _usage(self) -> tuple[int, int] | None:
        """What the home or share of this folder holds and its quota (counted once per request), None above them."""
        place = place_of(self.path)
        if not place.owner:
            return None
        provider: ShareProvider = self.provider
        counted = self.environ.setdefault(USAGE_KEY, {})
        if place.root not in counted:
            counted[place.root] = tree_bytes(provider.root / place.root)
        return counted[place.root], provider.quota_bytes

    def get_used_bytes(self):
        usage = self._usage()
        return usage[0] if usage else None

    def get_available_bytes(self):
        usage = self._usage()
        return max(0, usage[1] - usage[0]) if usage else None

    def create_empty_resource(self, name):
        resource = super().create_empty_resource(name)
        self.environ[CREATED_KEY] = resource.path
        return resource


class ShareProvider(FilesystemProvider):
    """wsgidav's file system provider on ``root`` (symbolic links never followed) with ``ShareFile`` and
    ``ShareFolder`` resources and a quota of ``quota_bytes`` per home and per share."""

    def __init__(self, root: Path | str, quota_bytes: int) -> None:
        root = Path(root)
        for area in (HOME, GROUPS):
            (root / area).mkdir(mode=0o700, parents=True, exist_ok=True)
        super().__init__(str(root), readonly=False, fs_opts={"follow_symlinks": False})
        self.root = Path(self.root_folder_path)
        self.quota_bytes = quota_bytes

    def share_root(self, path: str) -> Path:
        """The folder of the home or share that holds ``path`` (a path below the mount)."""
        return self.root / place_of(path).root

    def ensure(self, path: str) -> None:
        """Make the folder of a home or share the login may reach, at its first use."""
        folder = Path(self._loc_to_file_path(path))
        if not folder.is_dir():
            folder.mkdir(mode=0o700, exist_ok=True)

    def get_resource_inst(self, path: str, environ: dict):
        self._count_get_resource_inst += 1
        file_path = self._loc_to_file_path(path, environ)
        if not os.path.exists(file_path):
            return None
        if os.path.islink(file_path):
            raise DAVError(403, f"{path}: symbolic links are not served")
        if os.path.isdir(file_path):
            return ShareFolder(path, environ, file_path)
        return ShareFile(path, environ, file_path)
