"""Fixtures for every test package: signed calls to the APIs, and pointing roles at a live test server."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from luhyaapi.keys import HostKey
from luhyaapi.signing import canonical_path, sign_headers
from luhyaapi.trust import own_key


@pytest.fixture
def signed_client(client):
    """Django's test client, sending requests signed by this test host (every role), or by ``key``'s host
    (``tests.keys.enrolled_key`` makes one trusted as another host)."""

    class Signed:
        def request(self, method, path, payload=None, key: HostKey | None = None, body: bytes | None = None,
                    **extra):
            body = body if body is not None else json.dumps(payload).encode() if payload is not None else b""
            route, _, query = path.partition("?")
            headers = sign_headers(key or own_key(), method, "testserver", canonical_path(route, query), body)
            extra |= {f"HTTP_{name.upper().replace('-', '_')}": value for name, value in headers.items()}
            if method == "GET":
                return client.get(path, **extra)
            return client.generic(method, path, body, content_type="application/json", **extra)

        def get(self, path, **kwargs):
            return self.request("GET", path, **kwargs)

        def post(self, path, payload, **kwargs):
            return self.request("POST", path, payload, **kwargs)

    return Signed()


@pytest.fixture
def api_client(client, django_user_model):
    """The API as the cloud's first administrator (a superuser without an account: the root's super
    administrator), logged in; the same calls as ``signed_client``."""
    client.force_login(django_user_model.objects.create_user("root-admin", is_staff=True, is_superuser=True))

    class Person:
        def request(self, method, path, payload=None, **extra):
            body = json.dumps(payload).encode() if payload is not None else b""
            if method == "GET":
                return client.get(path, **extra)
            return client.generic(method, path, body, content_type="application/json", **extra)

        def get(self, path, **kwargs):
            return self.request("GET", path, **kwargs)

        def post(self, path, payload, **kwargs):
            return self.request("POST", path, payload, **kwargs)

    return Person()


@pytest.fixture
def cloud_at(settings):
    """Point this host's configuration at a running server (for calls one role makes to another)."""

    def point(url: str, **changes):
        settings.EDUCLOUD = replace(settings.EDUCLOUD, clc_url=url, cc_url=url, walrus_url=url, **changes)
        return settings.EDUCLOUD

    return point
