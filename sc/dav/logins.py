"""WebDAV logins: the SC asks the CLC (``POST /clc/api/1.0/dav/authorize/``, signed with this host's key) and keeps
a good answer for ``CACHE_SECONDS``, so a client that sends its password with every request (all of them do) costs
the CLC one check per half minute, not one per request. A refused password is never kept: each attempt goes to the
CLC, whose login throttle counts it."""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import threading
import time
from collections.abc import Callable

from luhyaapi.client import RemoteError, RoleClient
from luhyaapi.shares import AUTHORIZE_PATH, ShareLogin

logger = logging.getLogger("educloud.security")

CACHE_SECONDS = 30.0
CACHE_MAX = 10_000


class LoginUnavailable(Exception):
    """The CLC could not be asked (unreachable, or refused this SC's call): the client should try later."""


Ask = Callable[[str, str, str], dict]


def clc_asker(clc_url: str, key, timeout: float = 10.0) -> Ask:
    """Ask the CLC at ``clc_url``, signed with ``key`` (this host's): the answer of ``dav/authorize/``."""
    client = RoleClient(clc_url, key, timeout=timeout)

    def ask(username: str, password: str, address: str) -> dict:
        return client.post(AUTHORIZE_PATH, {"username": username, "password": password, "address": address})

    return ask


class LoginChecker:
    """Checks WebDAV logins with ``ask`` (the CLC), keeping accepted ones for ``cache_seconds``. The cache is keyed
    by an HMAC of user name and password under a key of this process, so it never holds a password."""

    def __init__(self, ask: Ask, cache_seconds: float = CACHE_SECONDS, clock: Callable[[], float] = time.monotonic):
        self._ask = ask
        self._cache_seconds = cache_seconds
        self._clock = clock
        self._secret = secrets.token_bytes(32)
        self._cache: dict[bytes, tuple[float, ShareLogin]] = {}
        self._lock = threading.Lock()
        self.asked = 0

    def _key(self, username: str, password: str) -> bytes:
        return hmac.new(self._secret, f"{username}\0{password}".encode("utf-8", "surrogateescape"),
                        hashlib.sha256).digest()

    def check(self, username: str, password: str, address: str) -> ShareLogin | None:
        """The login's account and shares, or None for a refused login. Raises ``LoginUnavailable`` when the CLC
        cannot answer."""
        key = self._key(username, password)
        now = self._clock()
        with self._lock:
            kept = self._cache.get(key)
            if kept is not None and kept[0] > now:
                return kept[1]
        try:
            self.asked += 1
            answer = self._ask(username, password, address)
        except RemoteError as exc:
            logger.warning("dav: the CLC could not check the login of %r: %s", username, exc)
            raise LoginUnavailable(str(exc)) from exc
        if not answer.get("authenticated"):
            logger.info("dav: login refused for %r from %s: %s", username, address or "-", answer.get("detail", ""))
            return None
        login = ShareLogin.model_validate(answer)
        with self._lock:
            if len(self._cache) >= CACHE_MAX:
                self._cache = {k: v for k, v in self._cache.items() if v[0] > now}
            if len(self._cache) < CACHE_MAX:
                self._cache[key] = (now + self._cache_seconds, login)
        return login
