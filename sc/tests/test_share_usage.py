"""The SC's share usage (``GET /sc/api/1.0/shares/``): every WebDAV home and owner-group share folder that exists,
with the bytes WebDAV itself reports for it and the quota; files put through the real wsgidav application (the
CLC's login answer stood in, as in test_dav.py); no folder for what never logged in, symbolic links and hidden
entries neither listed nor counted; paginated with the bounds of every list; for the signed CLC and staff only."""

from __future__ import annotations

import re
from dataclasses import replace

import pytest
from django.contrib.auth import get_user_model

from luhyaapi.shares import ShareGrant, ShareLogin
from sc.dav.app import dav_application, with_dav
from sc.dav.logins import LoginChecker
from sc.tests.conftest import API
from sc.tests.test_dav import call
from tests.keys import enrolled_key

pytestmark = [pytest.mark.database, pytest.mark.django_db]

QUOTA = 4 * 1024 * 1024


def clc_answer(username: str, password: str, address: str) -> dict:
    """The CLC's answer for any login, stood in: an account of edu.s1 that reads and writes its share."""
    return ShareLogin(authenticated=True, username=username, owner_group="edu.s1",
                      shares=(ShareGrant(path="edu.s1", read=True, write=True),)).model_dump(mode="json")


@pytest.fixture
def dav(store, settings):
    """The SC's WebDAV application on this test's data dir, with the quota the API reports."""
    settings.EDUCLOUD = replace(settings.EDUCLOUD, dav_quota_bytes=QUOTA)

    def django(environ, start_response):
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b""]

    return with_dav(django, dav_application(settings.EDUCLOUD.data_dir, LoginChecker(clc_answer), QUOTA))


def used_by_webdav(dav, folder: str) -> int:
    """The ``quota-used-bytes`` WebDAV's PROPFIND gives for a home or share."""
    status, text = call(dav, "PROPFIND", f"/sc/dav/{folder}/", Depth="0")
    assert status == 207, text
    return int(re.search(r"quota-used-bytes>(\d+)<", text)[1])


def clc_key():
    return enrolled_key("clc-9", "clc")


def test_each_home_and_share_is_listed_with_the_bytes_webdav_reports_and_the_quota(dav, signed_client):
    assert call(dav, "PUT", "/sc/dav/home/alice/a.txt", b"hello")[0] == 201
    assert call(dav, "MKCOL", "/sc/dav/home/alice/notes/")[0] == 201
    assert call(dav, "PUT", "/sc/dav/home/alice/notes/b.bin", b"x" * 3000)[0] == 201
    assert call(dav, "PUT", "/sc/dav/groups/edu.s1/c.bin", b"y" * 70000)[0] == 201

    response = signed_client.get(f"{API}/shares/", key=clc_key())
    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["count"] == 2
    assert body["results"] == [
        {"path": "home/alice", "kind": "home", "owner": "alice", "used_bytes": 3005, "quota_bytes": QUOTA},
        {"path": "groups/edu.s1", "kind": "group", "owner": "edu.s1", "used_bytes": 70000, "quota_bytes": QUOTA}]
    for share in body["results"]:
        assert share["used_bytes"] == used_by_webdav(dav, share["path"])


def test_a_deleted_file_no_longer_counts(dav, signed_client):
    call(dav, "PUT", "/sc/dav/home/alice/a.bin", b"a" * 1000)
    call(dav, "PUT", "/sc/dav/home/alice/b.bin", b"b" * 24)
    assert call(dav, "DELETE", "/sc/dav/home/alice/a.bin")[0] == 204
    assert [share["used_bytes"] for share in signed_client.get(f"{API}/shares/", key=clc_key()).json()["results"]] \
        == [24]


def test_an_sc_whose_webdav_was_never_used_lists_nothing(store, signed_client):
    body = signed_client.get(f"{API}/shares/", key=clc_key()).json()
    assert (body["count"], body["results"]) == (0, [])


def test_symbolic_links_and_hidden_entries_are_neither_listed_nor_counted(dav, signed_client, tmp_path):
    call(dav, "PUT", "/sc/dav/home/alice/a.txt", b"hello")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "big").write_bytes(b"o" * 50000)
    root = tmp_path / "data" / "sc" / "dav"
    (root / "home" / "alice" / "elsewhere").symlink_to(outside)
    (root / "home" / "mallory").symlink_to(outside)
    (root / "groups" / ".hidden").mkdir()
    (root / "groups" / "stray-file").write_bytes(b"s" * 10)

    results = signed_client.get(f"{API}/shares/", key=clc_key()).json()["results"]
    assert [(share["path"], share["used_bytes"]) for share in results] == [("home/alice", 5)]


def test_the_list_is_paginated_with_the_bounds_of_every_list(dav, signed_client):
    for name in ("ann", "bob", "cat"):
        call(dav, "PUT", f"/sc/dav/home/{name}/f", name.encode() * 10, user=name)
    page = signed_client.get(f"{API}/shares/?limit=1&offset=1", key=clc_key()).json()
    assert page["count"] == 3 and [share["owner"] for share in page["results"]] == ["bob"]
    assert page["results"][0]["used_bytes"] == 30
    assert page["next"] and page["previous"]
    for query, field in (("limit=0", "limit"), ("limit=x", "limit"), ("offset=-1", "offset"), ("limit=1001", "limit")):
        response = signed_client.get(f"{API}/shares/?{query}", key=clc_key())
        assert response.status_code == 400 and field in response.json(), (query, response.json())


def test_the_signed_clc_and_staff_may_read_it_and_nobody_else(store, client, signed_client):
    assert client.get(f"{API}/shares/").status_code == 401
    for role in ("nc", "cc", "walrus"):
        assert signed_client.get(f"{API}/shares/", key=enrolled_key(f"{role}-9", role)).status_code == 403
    assert signed_client.get(f"{API}/shares/", key=clc_key()).status_code == 200
    users = get_user_model().objects
    users.create_user("teacher", password="pw-teacher-123")
    client.login(username="teacher", password="pw-teacher-123")
    assert client.get(f"{API}/shares/").status_code == 403
    users.create_user("admin", password="pw-admin-123", is_staff=True)
    client.login(username="admin", password="pw-admin-123")
    assert client.get(f"{API}/shares/").status_code == 200
