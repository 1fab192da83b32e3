"""The REST client one role uses to call another: every request signed with this host's key."""

from __future__ import annotations

import json
import logging
from urllib.parse import urlsplit

import requests
from urllib3.exceptions import ConnectTimeoutError, NewConnectionError

from luhyaapi.keys import HostKey
from luhyaapi.signing import canonical_host, canonical_path, sign_headers

logger = logging.getLogger(__name__)


class RemoteError(RuntimeError):
    """A call to another role failed: unreachable (``status`` 0) or answered with an error status; ``body`` is the
    answer's JSON object, if it sent one (to pass a refusal on as it was). ``may_have_arrived``: the request may have
    been carried out on the other side though no answer says so (the answer timed out, the connection broke after
    it was made, or the other side failed with a server error other than 503); a caller must not take this as a
    refusal."""

    def __init__(self, url: str, status: int, detail: str, body: dict | None = None,
                 may_have_arrived: bool = False) -> None:
        super().__init__(f"{url}: {status or 'unreachable'}: {detail}")
        self.url = url
        self.status = status
        self.detail = detail
        self.body = body
        self.may_have_arrived = may_have_arrived


def _may_have_arrived(exc: requests.RequestException) -> bool:
    """Whether a request that got no answer may still have been received: everything but a connection that was
    never made (refused, no route, connect timeout)."""
    if isinstance(exc, requests.ConnectTimeout):
        return False
    if isinstance(exc, requests.ReadTimeout):
        return True
    if isinstance(exc, requests.ConnectionError):
        reason = getattr(exc.args[0], "reason", None) if exc.args else None
        return not isinstance(reason, NewConnectionError | ConnectTimeoutError)
    return False


def _detail(response: requests.Response) -> str:
    """The ``detail`` of a JSON error body (what our APIs send), else the start of the body."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:500]
    if isinstance(body, dict) and isinstance(body.get("detail"), str):
        return body["detail"]
    return json.dumps(body)[:500]


def _json_object(response: requests.Response) -> dict | None:
    try:
        body = response.json()
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


class RoleClient:
    """Signed JSON calls to one role's API at ``base_url`` (e.g. ``http://10.0.0.2:8000``); unsigned with
    ``key=None``, for the one call a host makes before its key is trusted (its enrolment)."""

    def __init__(self, base_url: str, key: HostKey | None, timeout: float = 10.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.key = key
        self.timeout = timeout
        self._session = requests.Session()

    def request(self, method: str, path: str, payload: dict | None = None) -> dict:
        url = self.base_url + path
        body = json.dumps(payload).encode() if payload is not None else b""
        parts = urlsplit(url)
        headers = {} if self.key is None else sign_headers(
            self.key, method, canonical_host(parts.netloc, parts.scheme), canonical_path(parts.path, parts.query), body)
        if payload is not None:
            headers["Content-Type"] = "application/json"
        try:
            response = self._session.request(method, url, data=body or None, headers=headers, timeout=self.timeout)
        except requests.RequestException as exc:
            raise RemoteError(url, 0, str(exc), may_have_arrived=_may_have_arrived(exc)) from exc
        if response.status_code >= 400:
            # A server error (not 503, which says it did nothing) may come after the other side did its part.
            unsure = response.status_code >= 500 and response.status_code != 503
            raise RemoteError(url, response.status_code, _detail(response), _json_object(response),
                              may_have_arrived=unsure)
        return response.json() if response.content else {}

    def get(self, path: str) -> dict:
        return self.request("GET", path)

    def post(self, path: str, payload: dict) -> dict:
        return self.request("POST", path, payload)
