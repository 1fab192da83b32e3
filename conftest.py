"""Fixtures for every test package: signed calls to the APIs, and pointing roles at a live test server."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from luhyaapi.keys import HostKey
from luhyaapi.signing import canonical_path, sign_headers
from luhyaapi.trust import own_key


class ApiCalls:
    """JSON calls to the APIs through Django's test client; ``headers`` adds what authenticates them."""

    def __init__(self, client) -> None:
        self.client = client

    def headers(self, method: str, path: str, body: bytes, **options) -> dict:
        return {}

    def request(self, method, path, payload=None, body: bytes | None = None, **options):
        body = body if body is not None else json.dumps(payload).encode() if payload is not None else b""
        key = options.pop("key", None)
        extra = options | self.headers(method, path, body, key=key)
        if method == "GET":
            return self.client.get(path, **extra)
        return self.client.generic(method, path, body, content_type="application/json", **extra)

    def get(self, path, **kwargs):
        return self.request("GET", path, **kwargs)

    def post(self, path, payload, **kwargs):
        return self.request("POST", path, payload, **kwargs)


class SignedCalls(ApiCalls):
    def headers(self, method: str, path: str, body: bytes, key: HostKey | None = None) -> dict:
        route, _, query = path.partition("?")
        headers = sign_headers(key or own_key(), method, "testserver", canonical_path(route, query), body)
        return {f"HTTP_{name.upper().replace('-', '_')}": value for name, value in headers.items()}


@pytest.fixture
def signed_client(client):
    """Django's test client, sending requests signed by this test host (every role), or by ``key=``'s host
    (``tests.keys.enrolled_key`` makes one trusted as another host)."""
    return SignedCalls(client)


@pytest.fixture
def api_client(client, django_user_model):
    """The API as the cloud's first administrator (a superuser without an account: the root's super
    administrator), logged in; the same calls as ``signed_client``."""
    client.force_login(django_user_model.objects.create_user("root-admin", is_staff=True, is_superuser=True))
    return ApiCalls(client)


@pytest.fixture
def cloud_at(settings):
    """Point this host's configuration at a running server (for calls one role makes to another)."""

    def point(url: str, **changes):
        settings.EDUCLOUD = replace(settings.EDUCLOUD, clc_url=url, cc_url=url, walrus_url=url, **changes)
        return settings.EDUCLOUD

    return point


@pytest.fixture(autouse=True)
def empty_command_queues(settings):
    """Each test starts with no command waiting on the host's own broker (the embedded default's SQLite file, which
    outlives a test as it outlives a restart of the host)."""
    from luhyaapi.config import celery_broker_url
    from luhyaapi.sqlite_broker import empty

    url = celery_broker_url(settings.EDUCLOUD)
    if url.startswith("sqlite-broker://"):
        empty(url)
