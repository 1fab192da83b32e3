"""The WebDAV application of a storage controller (wsgidav) and its mount: ``with_dav`` puts it in front of the
host's Django application, so ``/sc/dav/...`` reaches wsgidav and everything else reaches Django.

wsgidav is a WSGI application of its own (its own methods, its own streaming of bodies, its own lock and property
stores), so it is mounted beside Django rather than through a Django view: Django would read the body of a PUT and
knows nothing of PROPFIND or LOCK. The mount refuses a path with ``..``, a control character or an over-long name
before wsgidav sees it; then the login (HTTP Basic, checked by the CLC), the owner-group rule (``sc.dav.access``)
and the quota (``sc.dav.provider``) are wsgidav middlewares and provider methods.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from pathlib import Path
from urllib.parse import unquote_to_bytes, urlsplit

from wsgidav.dav_error import DAVError
from wsgidav.dc.base_dc import BaseDomainController
from wsgidav.dir_browser import WsgiDavDirBrowser
from wsgidav.error_printer import ErrorPrinter
from wsgidav.http_authenticator import HTTPAuthenticator
from wsgidav.mw.base_mw import BaseMiddleware
from wsgidav.request_resolver import RequestResolver
from wsgidav.wsgidav_app import WsgiDAVApp

from luhyaapi.shares import MOUNT, ShareLogin
from sc.dav.access import Refused, check_path, check_request, dav_root
from sc.dav.logins import LoginChecker, LoginUnavailable, clc_asker
from sc.dav.provider import LOGIN_KEY, MIB, ShareProvider, over_quota_message, tree_bytes

logger = logging.getLogger(__name__)

REALM = "eduCloud"
STATUS_TEXT = {400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
               503: "Service Unavailable", 507: "Insufficient Storage"}


def plain(start_response, status: int, message: str, headers: Iterable[tuple[str, str]] = ()) -> list[bytes]:
    body = (message + "\n").encode()
    start_response(f"{status} {STATUS_TEXT[status]}", [("Content-Type", "text/plain; charset=utf-8"),
                                                      ("Content-Length", str(len(body))), *headers])
    return [body]


def domain_controller(checker: LoginChecker) -> type[BaseDomainController]:
    """A wsgidav domain controller class that asks ``checker`` (the CLC) about every HTTP Basic login and leaves
    the accepted login's account and shares in the request for ``ShareAccess``."""

    class CloudAccounts(BaseDomainController):
        def get_domain_realm(self, path_info, environ):
            return REALM

        def require_authentication(self, realm, environ):
            return True

        def is_share_anonymous(self, path_info):
            return False

        def supports_http_digest_auth(self):
            return False  # the CLC keeps password hashes, not the digest's A1 values

        def basic_auth_user(self, realm, user_name, password, environ):
            try:
                login = checker.check(user_name, password, environ.get("REMOTE_ADDR", ""))
            except LoginUnavailable:
                raise DAVError(503, "the cloud controller cannot check logins now; try again later") from None
            if login is None:
                return False
            environ[LOGIN_KEY] = login
            return True

    return CloudAccounts


class ShareAccess(BaseMiddleware):
    """The owner-group rule for each request (``sc.dav.access.check_request``), the folders of homes and shares made
    at their first use, and the quota checked before a body is written (PUT's Content-Length, COPY or MOVE into
    another share)."""

    def __call__(self, environ, start_response):
        login: ShareLogin | None = environ.get(LOGIN_KEY)
        if login is None:
            return plain(start_response, 401, "log in with your eduCloud account",
                         [("WWW-Authenticate", f'Basic realm="{REALM}"')])
        provider: ShareProvider = environ["wsgidav.provider"]
        method = environ["REQUEST_METHOD"].upper()
        if not isinstance(provider, ShareProvider):  # the folder pages' style sheet and icons (wsgidav's own)
            if method in ("GET", "HEAD"):
                return self.next_app(environ, start_response)
            return plain(start_response, 403, "read only")
        try:
            destination = self._destination(environ)
            place, target = check_request(login, method, environ["PATH_INFO"], destination)
            for where in (place, target):
                if where is not None and where.owner:
                    provider.ensure(f"/{where.root}")
            self._check_room(environ, provider, method, destination)
        except Refused as refused:
            return plain(start_response, refused.status, str(refused))
        return self.next_app(environ, start_response)

    @staticmethod
    def _destination(environ) -> str | None:
        """The Destination header's path below the mount (each byte one character, as PATH_INFO), or None."""
        header = environ.get("HTTP_DESTINATION")
        if header is None:
            return None
        path = unquote_to_bytes(urlsplit(header).path).decode("latin-1")
        if path != MOUNT and not path.startswith(MOUNT + "/"):
            raise Refused(400, f"Destination: not below {MOUNT}/")
        return path[len(MOUNT):] or "/"

    @staticmethod
    def _check_room(environ, provider: ShareProvider, method: str, destination: str | None) -> None:
        """Refuse (507) a PUT whose Content-Length, or a COPY/MOVE whose source, does not fit the quota of the
        share it writes to (the upload itself counts its bytes too: ``ShareFile``)."""
        path = environ["PATH_INFO"]
        if method == "PUT":
            length = environ.get("CONTENT_LENGTH") or ""
            if not length.isdigit():
                return
            target, adding = path, int(length)
        elif method in ("COPY", "MOVE") and destination is not None:
            source_root = provider.share_root(path)
            if method == "MOVE" and source_root == provider.share_root(destination):
                return
            target, adding = destination, tree_bytes(Path(provider._loc_to_file_path(path)))
        else:
            return
        root = provider.share_root(target)
        existing = Path(provider._loc_to_file_path(target))
        replaced = tree_bytes(existing) if existing.exists() else 0
        used = tree_bytes(root)
        if used - replaced + adding > provider.quota_bytes:
            raise Refused(507, over_quota_message(root.relative_to(provider.root).as_posix(), used, adding,
                                                  provider.quota_bytes))


def dav_application(data_dir: Path, checker: LoginChecker, quota_bytes: int) -> WsgiDAVApp:
    """The WebDAV application serving ``{data_dir}/sc/dav/`` below ``MOUNT``: logins by ``checker``, a quota of
    ``quota_bytes`` per home and share, class 2 locks and dead properties kept in ``{data_dir}/sc/dav-state/``
    (shelve files) so they outlive a restart."""
    root = dav_root(data_dir)
    state = data_dir / "sc" / "dav-state"
    for folder in (root, state):
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    config = {
        "mount_path": MOUNT,
        "provider_mapping": {"/": {"class": "sc.dav.provider.ShareProvider",
                                   "kwargs": {"root": str(root), "quota_bytes": quota_bytes}}},
        "http_authenticator": {"domain_controller": domain_controller(checker), "accept_basic": True,
                               "accept_digest": False, "default_to_digest": False},
        "lock_storage": {"class": "wsgidav.lock_man.lock_storage.LockStorageShelve",
                         "kwargs": {"storage_path": str(state / "locks")}},
        "property_manager": {"class": "wsgidav.prop_man.property_manager.ShelvePropertyManager",
                             "kwargs": {"storage_path": str(state / "properties")}},
        # The folder pages a browser gets (the portal's "My files"), after the rule so they list what it allows.
        "middleware_stack": [ErrorPrinter, HTTPAuthenticator, ShareAccess, WsgiDavDirBrowser, RequestResolver],
        "dir_browser": {"enable": True, "davmount": True, "ms_sharepoint_support": False,
                        "libre_office_support": False, "response_trailer": "eduCloud file shares",
                        "show_user": True, "icon": False},
        # Bodies move in pieces of 1 MiB, not wsgidav's 8 KiB: a 1 GiB PUT or GET is then 1,024 reads and writes
        # instead of 131,072, about three times the MB/s on loopback (bench/volume_io.py).
        "block_size": 2**20,
        "logging": {"enable": False},
        "verbose": 1,
        "suppress_version_info": True,
    }
    return WsgiDAVApp(config)


def with_dav(django_app: Callable, dav_app: Callable) -> Callable:
    """A WSGI application sending ``MOUNT`` and below to ``dav_app`` (``SCRIPT_NAME`` the mount, ``PATH_INFO`` the
    rest) and every other path to ``django_app``. A path with ``.``/``..`` segments, a control character (NUL among
    them) or a name over 255 bytes is a 400 before wsgidav, which would otherwise resolve ``..`` itself."""

    def application(environ, start_response):
        path = environ.get("PATH_INFO", "")
        if path != MOUNT and not path.startswith(MOUNT + "/"):
            return django_app(environ, start_response)
        try:
            check_path(path)
        except Refused as refused:
            return plain(start_response, refused.status, str(refused))
        environ["SCRIPT_NAME"] = environ.get("SCRIPT_NAME", "").rstrip("/") + MOUNT
        environ["PATH_INFO"] = path[len(MOUNT):] or "/"
        return dav_app(environ, start_response)

    return application


def host_application(django_app: Callable) -> Callable:
    """This host's WSGI application: Django, with the WebDAV shares mounted when the host runs the SC. The SC asks
    the CLC at ``cloud.clc_url`` about logins; without one, every WebDAV request is a 503 naming that setting."""
    from django.conf import settings

    from luhyaapi.trust import own_key

    config = settings.EDUCLOUD
    if not config.has_role("sc"):
        return django_app
    if not config.clc_url:
        def unavailable(environ, start_response):
            return plain(start_response, 503, "WebDAV logins need the cloud controller: set cloud.clc_url "
                                              "(EDUCLOUD_CLOUD_CLC_URL) on this storage controller")

        return with_dav(django_app, unavailable)
    checker = LoginChecker(clc_asker(config.clc_url, own_key()))
    logger.info("dav: shares of %s served under %s/ (quota %d MiB each)", config.data_dir, MOUNT,
                config.dav_quota_bytes // MIB)
    return with_dav(django_app, dav_application(config.data_dir, checker, config.dav_quota_bytes))
