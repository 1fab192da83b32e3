"""Fixtures of walrus's tests: a store in a scratch data dir, and signed calls to its API (streamed PUTs too)."""

from __future__ import annotations

import hashlib
import os
from dataclasses import replace
from pathlib import Path

import pytest

from luhyaapi.signing import canonical_path, sign_headers
from luhyaapi.trust import own_key

API = "/walrus/api/1.0"


def as_meta(headers: dict[str, str]) -> dict[str, str]:
    return {f"HTTP_{name.upper().replace('-', '_')}": value for name, value in headers.items()}


def files_under(folder: Path) -> list[str]:
    """Every path under ``folder`` (to prove a refused call touched nothing)."""
    return sorted(str(path.relative_to(folder)) for path in folder.rglob("*")) if folder.exists() else []


@pytest.fixture(autouse=True)
def store(settings, tmp_path) -> Path:
    """A fresh data dir per test; returns its walrus folder."""
    settings.EDUCLOUD = replace(settings.EDUCLOUD, data_dir=tmp_path / "data")
    return tmp_path / "data" / "walrus"


@pytest.fixture
def walrus(client, settings):
    """Signed calls to walrus's API through Django's test client."""

    class Walrus:
        def call(self, method: str, path: str, payload=None, *, key=None, headers=None):
            import json

            body = json.dumps(payload).encode() if payload is not None else b""
            route, _, query = f"{API}/{path}".partition("?")
            signed = sign_headers(key or own_key(), method, "testserver", canonical_path(route, query), body)
            extra = as_meta(signed | (headers or {}))
            return client.generic(method, f"{API}/{path}", body, content_type="application/json", **extra)

        def put(self, upload_id: str, data: bytes, offset: int = 0, *, query: str | None = None, key=None,
                signed: bool = True, **meta):
            """A PUT of ``data``; ``meta`` sets WSGI environ entries (a ``CONTENT_LENGTH`` that is not the data's)."""
            route = f"{API}/uploads/{upload_id}/data"
            query = f"offset={offset}" if query is None else query
            extra = dict(meta)
            if signed:
                extra |= as_meta(sign_headers(key or own_key(), "PUT", "testserver", canonical_path(route, query),
                                              None))
            return client.generic("PUT", f"{route}?{query}", data, content_type="application/octet-stream", **extra)

        def start(self, image_id: str, data: bytes, **extra) -> str:
            response = self.call("POST", "uploads/", {"image_id": image_id, "size": len(data)} | extra)
            assert response.status_code == 201, response.json()
            return response.json()["upload_id"]

        def store(self, image_id: str, data: bytes) -> dict:
            """Upload ``data`` whole as the next version of ``image_id``; returns walrus's answer."""
            upload_id = self.start(image_id, data, sha256=hashlib.sha256(data).hexdigest())
            assert self.put(upload_id, data).json() == {"offset": len(data)}
            response = self.call("POST", f"uploads/{upload_id}/complete/", {})
            assert response.status_code == 201, response.json()
            return response.json()

    return Walrus()


@pytest.fixture
def random_bytes():
    return os.urandom
