"""Walrus's API: uploads (streamed data, offsets, checksums, pre-signed tokens), versions and their files (ranges,
HEAD, ETag), refusal of unsigned calls and of hostile ids, and the admin pages."""

from __future__ import annotations

import hashlib
import time

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.http.request import HttpRequest

from luhyaapi.signing import UNSIGNED_PAYLOAD, canonical_path, make_upload_token, sign_headers
from luhyaapi.trust import own_key
from tests.keys import enrolled_key, new_key
from walrus.models import ImageVersion, Upload
from walrus.services.store import upload_path, version_path
from walrus.tests.conftest import API, as_meta, files_under

pytestmark = [pytest.mark.database, pytest.mark.django_db]

IMAGE = "img-0000000a"
DATA = bytes(range(256)) * 40


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_an_upload_is_started_written_in_pieces_completed_and_listed(walrus):
    started = walrus.call("POST", "uploads/", {"image_id": IMAGE, "size": len(DATA), "sha256": sha(DATA)})
    assert started.status_code == 201
    upload_id = started.json()["upload_id"]
    assert started.json() == {"upload_id": upload_id, "image_id": IMAGE, "size": len(DATA), "offset": 0,
                              "state": "open"}
    assert walrus.put(upload_id, DATA[:4000]).json() == {"offset": 4000}
    assert walrus.call("GET", f"uploads/{upload_id}/").json()["offset"] == 4000
    assert walrus.put(upload_id, DATA[4000:], 4000).json() == {"offset": len(DATA)}
    completed = walrus.call("POST", f"uploads/{upload_id}/complete/", {})
    assert completed.status_code == 201
    assert completed.json() == {"image_id": IMAGE, "version": 1, "size": len(DATA), "sha256": sha(DATA),
                                "format": "raw"}
    image = walrus.call("GET", f"images/{IMAGE}/").json()
    assert (image["current"], [(v["version"], v["sha256"], v["current"]) for v in image["versions"]]) == (
        1, [(1, sha(DATA), True)])
    assert walrus.call("GET", f"uploads/{upload_id}/").json()["state"] == "complete"


def test_the_data_put_streams_a_body_larger_than_djangos_memory_limit_without_reading_request_body(walrus,
                                                                                                   monkeypatch):
    data = bytes(range(256)) * (settings.DATA_UPLOAD_MAX_MEMORY_SIZE // 256 + 4097)
    assert len(data) > settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    upload_id = walrus.start(IMAGE, data)

    def body_read_whole(request):
        raise AssertionError("request.body was read: the upload was not streamed")

    monkeypatch.setattr(HttpRequest, "body", property(body_read_whole))
    response = walrus.put(upload_id, data)
    assert (response.status_code, response.json()) == (200, {"offset": len(data)})
    assert upload_path(upload_id).read_bytes() == data


def test_a_put_at_another_offset_is_a_409_with_the_current_offset(walrus):
    upload_id = walrus.start(IMAGE, DATA)
    walrus.put(upload_id, DATA[:100])
    response = walrus.put(upload_id, DATA[50:150], 50)
    assert response.status_code == 409
    assert response.json()["offset"] == 100
    assert upload_path(upload_id).read_bytes() == DATA[:100]


def test_a_put_past_the_size_is_a_400_and_writes_nothing(walrus):
    upload_id = walrus.start(IMAGE, DATA)
    response = walrus.put(upload_id, DATA + b"extra")
    assert response.status_code == 400
    assert "size" in response.json()["detail"]
    assert upload_path(upload_id).read_bytes() == b""


def test_a_put_without_a_content_length_is_a_411(walrus):
    upload_id = walrus.start(IMAGE, DATA)
    assert walrus.put(upload_id, b"").status_code == 411


@pytest.mark.parametrize("query", ["", "offset=", "offset=-1", "offset=x", "offset=1e3", "offset=%2e%2e"])
def test_a_missing_or_bad_offset_is_a_400_naming_offset(walrus, query):
    upload_id = walrus.start(IMAGE, DATA)
    response = walrus.put(upload_id, DATA[:10], query=query)
    assert response.status_code == 400
    assert "offset" in response.json()


def test_complete_before_every_byte_arrived_is_a_409_with_the_offset(walrus):
    upload_id = walrus.start(IMAGE, DATA)
    walrus.put(upload_id, DATA[:10])
    response = walrus.call("POST", f"uploads/{upload_id}/complete/", {})
    assert (response.status_code, response.json()["offset"]) == (409, 10)


@pytest.mark.parametrize("where", ["start", "complete"])
def test_complete_with_a_wrong_sha256_is_a_422_and_the_upload_is_discarded(walrus, where):
    wrong = sha(b"something else")
    upload_id = walrus.start(IMAGE, DATA, **({"sha256": wrong} if where == "start" else {}))
    walrus.put(upload_id, DATA)
    response = walrus.call("POST", f"uploads/{upload_id}/complete/", {"sha256": wrong} if where == "complete" else {})
    assert response.status_code == 422
    assert sha(DATA) in response.json()["detail"]
    assert walrus.call("GET", f"uploads/{upload_id}/").status_code == 404
    assert not upload_path(upload_id).exists()
    assert not ImageVersion.objects.exists()


def test_completing_twice_answers_with_the_same_version_and_200(walrus):
    upload_id = walrus.start(IMAGE, DATA)
    walrus.put(upload_id, DATA)
    first = walrus.call("POST", f"uploads/{upload_id}/complete/", {})
    again = walrus.call("POST", f"uploads/{upload_id}/complete/", {})
    assert (first.status_code, again.status_code, again.json()) == (201, 200, first.json())
    assert ImageVersion.objects.count() == 1


def test_an_abandoned_upload_and_its_partial_file_are_gone(walrus):
    upload_id = walrus.start(IMAGE, DATA)
    walrus.put(upload_id, DATA[:10])
    assert walrus.call("DELETE", f"uploads/{upload_id}/").status_code == 204
    assert not upload_path(upload_id).exists()
    assert walrus.call("GET", f"uploads/{upload_id}/").status_code == 404


@pytest.mark.parametrize("method, path", [
    ("POST", "uploads/"), ("GET", "uploads/upl-0000000a/"), ("DELETE", "uploads/upl-0000000a/"),
    ("PUT", "uploads/upl-0000000a/data?offset=0"), ("POST", "uploads/upl-0000000a/complete/"), ("GET", "images/"),
    ("GET", f"images/{IMAGE}/"), ("DELETE", f"images/{IMAGE}/"), ("GET", f"images/{IMAGE}/versions/1/"),
    ("DELETE", f"images/{IMAGE}/versions/1/"), ("GET", f"images/{IMAGE}/versions/current/data"),
    ("HEAD", f"images/{IMAGE}/versions/1/data"),
])
def test_every_call_refuses_an_unsigned_request_with_401(client, walrus, method, path):
    walrus.store(IMAGE, DATA)
    response = client.generic(method, f"{API}/{path}", b"{}", content_type="application/json")
    assert response.status_code == 401
    if method != "HEAD":
        assert "detail" in response.json()
    assert version_path(IMAGE, 1).exists()


def test_a_call_signed_with_another_key_is_a_403(walrus):
    upload_id = walrus.start(IMAGE, DATA)
    assert walrus.put(upload_id, DATA, key=new_key(own_key().name)).status_code == 403
    assert walrus.call("GET", f"uploads/{upload_id}/", key=new_key(own_key().name)).status_code == 403
    assert upload_path(upload_id).read_bytes() == b""


def test_only_the_data_call_accepts_a_body_signed_as_unsigned_payload(client):
    path = f"{API}/uploads/"
    headers = sign_headers(own_key(), "POST", "testserver", canonical_path(path), None)
    assert headers["X-Educloud-Content-Sha256"] == UNSIGNED_PAYLOAD
    response = client.post(path, {"image_id": IMAGE, "size": 10}, content_type="application/json",
                           **as_meta(headers))
    assert response.status_code == 403
    assert "wrong signature" in response.json()["detail"]
    assert not Upload.objects.exists()


def token_query(upload_id: str, offset: int = 0, expires: int | None = None, token: str | None = None) -> str:
    expires = int(time.time()) + 600 if expires is None else expires
    token = token or make_upload_token(own_key(), upload_id, expires)
    return f"token={token}&expires={expires}&offset={offset}"


def test_a_presigned_token_lets_a_browser_send_its_uploads_data(walrus):
    upload_id = walrus.start(IMAGE, DATA)
    response = walrus.put(upload_id, DATA, query=token_query(upload_id), signed=False)
    assert (response.status_code, response.json()) == (200, {"offset": len(DATA)})


@pytest.mark.parametrize("case", ["expired", "wrong", "other-upload", "other-key", "not-a-clc", "tampered-expiry",
                                  "no-expiry"])
def test_a_bad_presigned_token_is_a_401_and_writes_nothing(walrus, case):
    upload_id = walrus.start(IMAGE, DATA)
    other_id = walrus.start(IMAGE, DATA)
    later = int(time.time()) + 600
    query = {
        "expired": token_query(upload_id, expires=int(time.time()) - 1),
        "wrong": token_query(upload_id, token="0" * 64),
        "other-upload": token_query(upload_id, token=make_upload_token(own_key(), other_id, later), expires=later),
        "other-key": token_query(upload_id, token=make_upload_token(new_key(own_key().name), upload_id, later),
                                 expires=later),
        "not-a-clc": token_query(upload_id, token=make_upload_token(enrolled_key("cc-1", "cc"), upload_id, later),
                                 expires=later),
        "tampered-expiry": token_query(upload_id, token=make_upload_token(own_key(), upload_id, later),
                                       expires=later + 3600),
        "no-expiry": f"token={make_upload_token(own_key(), upload_id, later)}&offset=0",
    }[case]
    response = walrus.put(upload_id, DATA, query=query, signed=False)
    assert response.status_code == 401
    assert "detail" in response.json()
    assert upload_path(upload_id).read_bytes() == b""


def test_an_upload_token_opens_no_other_call(client, walrus):
    upload_id = walrus.start(IMAGE, DATA)
    query = token_query(upload_id)
    assert client.get(f"{API}/uploads/{upload_id}/?{query}").status_code == 401
    assert client.post(f"{API}/uploads/{upload_id}/complete/?{query}").status_code == 401
    assert client.delete(f"{API}/uploads/{upload_id}/?{query}").status_code == 401


def test_staff_sessions_may_use_the_api_but_other_users_may_not(client):
    get_user_model().objects.create_user("pupil", password="pw-pupil-123")
    client.login(username="pupil", password="pw-pupil-123")
    assert client.post(f"{API}/uploads/", {"image_id": IMAGE, "size": 10}, content_type="application/json"
                       ).status_code == 403
    get_user_model().objects.create_user("teacher", password="pw-teacher-123", is_staff=True)
    client.login(username="teacher", password="pw-teacher-123")
    started = client.post(f"{API}/uploads/", {"image_id": IMAGE, "size": 3}, content_type="application/json")
    assert started.status_code == 201
    upload_id = started.json()["upload_id"]
    response = client.put(f"{API}/uploads/{upload_id}/data?offset=0", b"abc", content_type="application/octet-stream")
    assert (response.status_code, response.json()) == (200, {"offset": 3})


HOSTILE_IN_PATH = ["../x", "%2e%2e%2fx", "..%2f..%2fetc%2fpasswd", "/etc/passwd", "upl-0000000a%00", "img-0000000a%00",
                   "%3Brm%20-rf%20x", "%24(id)", "a%20b", "..", "upl-0000000A"]


@pytest.mark.parametrize("method, template, field", [
    ("GET", "uploads/{}/", "upload_id"), ("DELETE", "uploads/{}/", "upload_id"),
    ("PUT", "uploads/{}/data?offset=0", "upload_id"), ("POST", "uploads/{}/complete/", "upload_id"),
    ("GET", "images/{}/", "image_id"), ("DELETE", "images/{}/", "image_id"),
    ("GET", "images/{}/versions/1/", "image_id"), ("DELETE", "images/{}/versions/1/", "image_id"),
    ("GET", "images/{}/versions/current/data", "image_id"),
    ("GET", f"images/{IMAGE}/versions/{{}}/", "version"), ("DELETE", f"images/{IMAGE}/versions/{{}}/", "version"),
    ("GET", f"images/{IMAGE}/versions/{{}}/data", "version"),
])
@pytest.mark.parametrize("hostile", HOSTILE_IN_PATH)
def test_a_hostile_id_in_the_path_is_a_400_naming_the_field_and_touches_nothing(walrus, store, method, template,
                                                                                  field, hostile):
    walrus.store(IMAGE, DATA)
    before = files_under(store)
    path = template.format(hostile)
    if method == "PUT":
        route, _, query = path.partition("?")
        response = walrus.put(route.removeprefix("uploads/").removesuffix("/data"), b"x", query=query)
    else:
        response = walrus.call(method, path, {} if method == "POST" else None)
    assert response.status_code == 400, response.content
    assert field in response.json()
    assert files_under(store) == before


@pytest.mark.parametrize("field, value", [
    ("image_id", "../x"), ("image_id", "/etc/passwd"), ("image_id", "img-0000000a\x00"), ("image_id", ";rm -rf x"),
    ("image_id", "$(id)"), ("image_id", "img 0000000a"), ("image_id", "ins-0000000a"), ("image_id", ""),
    ("size", 0), ("size", -1), ("size", "x"), ("size", 10**20), ("sha256", "../x"), ("sha256", "A" * 64),
])
def test_a_hostile_or_bad_field_at_start_is_a_400_naming_it_and_touches_nothing(walrus, store, field, value):
    response = walrus.call("POST", "uploads/", {"image_id": IMAGE, "size": 10} | {field: value})
    assert response.status_code == 400
    assert field in response.json()
    assert not store.exists()
    assert not Upload.objects.exists()


def test_a_hostile_sha256_at_complete_is_a_400_naming_it(walrus):
    upload_id = walrus.start(IMAGE, DATA)
    walrus.put(upload_id, DATA)
    response = walrus.call("POST", f"uploads/{upload_id}/complete/", {"sha256": "$(id)"})
    assert (response.status_code, "sha256" in response.json()) == (400, True)
    assert upload_path(upload_id).exists()


def test_unknown_uploads_images_and_calls_are_json_404s(walrus):
    assert walrus.call("GET", "uploads/upl-0000000f/").status_code == 404
    assert walrus.put("upl-0000000f", b"x").status_code == 404
    assert walrus.call("GET", f"images/{IMAGE}/").status_code == 404
    missing = walrus.call("GET", f"images/{IMAGE}/versions/current/data")
    assert (missing.status_code, "detail" in missing.json()) == (404, True)
    assert walrus.call("GET", "nothing/here/").json()["detail"].startswith("no such API endpoint")


def get_data(walrus, version: str = "1", **headers):
    return walrus.call("GET", f"images/{IMAGE}/versions/{version}/data", headers=headers)


def body(response) -> bytes:
    return b"".join(response.streaming_content)


def test_a_version_is_sent_streamed_with_its_sha256_etag_and_length(walrus):
    walrus.store(IMAGE, DATA)
    response = get_data(walrus)
    assert (response.status_code, response.streaming) == (200, True)
    assert body(response) == DATA
    assert (response["Content-Length"], response["Accept-Ranges"], response["ETag"], response["X-Educloud-Sha256"]) \
        == (str(len(DATA)), "bytes", f'"{sha(DATA)}"', sha(DATA))


@pytest.mark.parametrize("header, first, last", [("bytes=10-19", 10, 19), ("bytes=10000-", 10000, len(DATA) - 1),
                                                 ("bytes=-100", len(DATA) - 100, len(DATA) - 1),
                                                 ("bytes=-999999", 0, len(DATA) - 1),
                                                 ("bytes=5-999999", 5, len(DATA) - 1)])
def test_a_range_is_a_206_with_its_content_range(walrus, header, first, last):
    walrus.store(IMAGE, DATA)
    response = get_data(walrus, Range=header)
    assert response.status_code == 206
    assert response["Content-Range"] == f"bytes {first}-{last}/{len(DATA)}"
    assert response["Content-Length"] == str(last - first + 1)
    assert body(response) == DATA[first:last + 1]


@pytest.mark.parametrize("header", [f"bytes={len(DATA)}-", f"bytes={len(DATA) + 5}-{len(DATA) + 9}", "bytes=-0"])
def test_a_range_outside_the_file_is_a_416(walrus, header):
    walrus.store(IMAGE, DATA)
    response = get_data(walrus, Range=header)
    assert response.status_code == 416
    assert (response["Content-Range"], response["X-Educloud-Sha256"]) == (f"bytes */{len(DATA)}", sha(DATA))
    assert "detail" in response.json()


def test_a_range_for_another_file_sends_the_whole_file(walrus):
    walrus.store(IMAGE, DATA)
    assert get_data(walrus, Range="bytes=10-", **{"If-Range": f'"{sha(DATA)}"'}).status_code == 206
    response = get_data(walrus, Range="bytes=10-", **{"If-Range": f'"{sha(b"older file")}"'})
    assert (response.status_code, body(response)) == (200, DATA)


def test_head_answers_the_headers_without_the_file(walrus):
    walrus.store(IMAGE, DATA)
    response = walrus.call("HEAD", f"images/{IMAGE}/versions/current/data")
    assert (response.status_code, response.content) == (200, b"")
    assert (response["Content-Length"], response["X-Educloud-Sha256"]) == (str(len(DATA)), sha(DATA))


def test_current_is_the_newest_version_and_older_ones_stay_readable(walrus):
    walrus.store(IMAGE, b"first")
    walrus.store(IMAGE, b"second")
    assert body(get_data(walrus, "current")) == b"second"
    assert body(get_data(walrus, "1")) == b"first"
    assert walrus.call("GET", f"images/{IMAGE}/versions/current/").json()["version"] == 2


def test_deleting_the_current_version_makes_the_newest_remaining_current(walrus):
    for data in (b"one", b"two", b"three"):
        walrus.store(IMAGE, data)
    assert walrus.call("DELETE", f"images/{IMAGE}/versions/3/").status_code == 204
    image = walrus.call("GET", f"images/{IMAGE}/").json()
    assert (image["current"], [v["version"] for v in image["versions"]]) == (2, [2, 1])
    assert body(get_data(walrus, "current")) == b"two"
    assert not version_path(IMAGE, 3).exists()
    assert walrus.call("DELETE", f"images/{IMAGE}/versions/current/").status_code == 400


def test_deleting_an_image_deletes_every_version(walrus, store):
    walrus.store(IMAGE, b"one")
    walrus.store(IMAGE, b"two")
    assert walrus.call("DELETE", f"images/{IMAGE}/").status_code == 204
    assert walrus.call("GET", f"images/{IMAGE}/").status_code == 404
    assert not (store / "images" / IMAGE).exists()


def test_images_are_listed_with_their_versions_and_paginated(walrus):
    for n in range(3):
        walrus.store(f"img-0000000{n}", bytes([n]))
    walrus.store("img-00000001", b"again")
    page = walrus.call("GET", "images/?limit=2&offset=1").json()
    assert page["count"] == 3
    assert [(image["image_id"], image["current"], len(image["versions"])) for image in page["results"]] == [
        ("img-00000001", 2, 2), ("img-00000002", 1, 1)]


@pytest.fixture
def admin_client(client):
    get_user_model().objects.create_superuser("boss", password="pw-boss-12345")
    client.login(username="boss", password="pw-boss-12345")
    return client


def test_the_admin_lists_uploads_and_stored_versions(admin_client, walrus):
    walrus.store(IMAGE, DATA)
    open_id = walrus.start("img-0000000b", DATA)
    assert open_id in admin_client.get("/admin/walrus/upload/").content.decode()
    assert IMAGE in admin_client.get("/admin/walrus/imageversion/").content.decode()


def test_deleting_in_the_admin_removes_the_files_too(admin_client, walrus):
    walrus.store(IMAGE, b"one")
    walrus.store(IMAGE, b"two")
    newest = ImageVersion.objects.get(version=2)
    response = admin_client.post(f"/admin/walrus/imageversion/{newest.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302
    assert not version_path(IMAGE, 2).exists()
    assert ImageVersion.objects.get(version=1).current
    open_id = walrus.start("img-0000000b", DATA)
    upload = Upload.objects.get(upload_id=open_id)
    admin_client.post(f"/admin/walrus/upload/{upload.pk}/delete/", {"post": "yes"})
    assert not upload_path(open_id).exists()
    assert not Upload.objects.filter(upload_id=open_id).exists()
