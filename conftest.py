"""Fixtures for every test package: signed calls to the APIs, and pointing roles at a live test server."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
from django.conf import settings as django_settings

from luhyaapi.signing import canonical_path, sign_headers


@pytest.fixture
def signed_client(client):
    """Django's test client, sending requests signed with the cloud key as node ``sender``."""

    class Signed:
        def request(self, method, path, payload=None, key=None, sender="test-node"):
            body = json.dumps(payload).encode() if payload is not None else b""
            route, _, query = path.partition("?")
            key = key or django_settings.EDUCLOUD.cloud_key
            headers = sign_headers(key, sender, method, canonical_path(route, query), body)
            extra = {f"HTTP_{name.upper().replace('-', '_')}": value for name, value in headers.items()}
            if method == "GET":
                return client.get(path, **extra)
            return client.generic(method, path, body, content_type="application/json", **extra)

        def get(self, path, **kwargs):
            return self.request("GET", path, **kwargs)

        def post(self, path, payload, **kwargs):
            return self.request("POST", path, payload, **kwargs)

    return Signed()


@pytest.fixture
def cloud_at(settings):
    """Point this host's configuration at a running server (for calls one role makes to another)."""

    def point(url: str, **changes):
        settings.EDUCLOUD = replace(settings.EDUCLOUD, clc_url=url, cc_url=url, walrus_url=url, **changes)
        return settings.EDUCLOUD

    return point
