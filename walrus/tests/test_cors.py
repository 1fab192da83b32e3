"""CORS on walrus's upload calls: a browser on the CLC's pages (another origin) may send an image's pieces to walrus
with the pre-signed URL, and only origins listed in ``walrus.cors_origins`` are let in."""

from __future__ import annotations

import time
from dataclasses import replace

import pytest

from luhyaapi.config import ConfigError, load_config
from luhyaapi.signing import make_upload_token
from luhyaapi.trust import own_key
from walrus.services.store import upload_path
from walrus.tests.conftest import API

pytestmark = [pytest.mark.database, pytest.mark.django_db]

IMAGE = "img-0000000a"
CLC = "https://clc.school.example:8443"
DATA = bytes(range(256)) * 8


@pytest.fixture(autouse=True)
def allowed(settings):
    settings.EDUCLOUD = replace(settings.EDUCLOUD, walrus_cors_origins=(CLC,))


def data_url(upload_id: str, offset: int = 0) -> str:
    expires = int(time.time()) + 600
    token = make_upload_token(own_key(), upload_id, expires)
    return f"{API}/uploads/{upload_id}/data?token={token}&expires={expires}&offset={offset}"


def preflight(client, url: str, origin: str, method: str = "PUT", headers: str = "content-type"):
    return client.options(url, HTTP_ORIGIN=origin, HTTP_ACCESS_CONTROL_REQUEST_METHOD=method,
                          HTTP_ACCESS_CONTROL_REQUEST_HEADERS=headers)


def test_a_preflight_from_a_listed_origin_is_answered_without_credentials(client, walrus):
    upload_id = walrus.start(IMAGE, DATA)
    # Browsers send the preflight without the token's query too when it is cached per path: neither is needed.
    for url in (data_url(upload_id), f"{API}/uploads/{upload_id}/data"):
        response = preflight(client, url, CLC)
        assert response.status_code == 204
        assert response["Access-Control-Allow-Origin"] == CLC
        assert response["Access-Control-Allow-Methods"] == "PUT"
        assert response["Access-Control-Allow-Headers"] == "Content-Type"
        assert int(response["Access-Control-Max-Age"]) > 0
        assert "Origin" in response["Vary"]
    assert upload_path(upload_id).read_bytes() == b""


@pytest.mark.parametrize("origin", ["https://evil.example", "https://clc.school.example", "http://clc.school.example:8443",
                                    "null"])
def test_a_preflight_from_any_other_origin_is_refused(client, walrus, origin):
    response = preflight(client, data_url(walrus.start(IMAGE, DATA)), origin)
    assert response.status_code == 403
    assert "Access-Control-Allow-Origin" not in response
    assert "walrus.cors_origins" in response.json()["detail"]


@pytest.mark.parametrize("method, headers", [("DELETE", "content-type"), ("PUT", "content-type, x-secret"),
                                             ("GET", "")])
def test_a_preflight_for_a_method_or_header_the_call_does_not_take_is_refused(client, walrus, method, headers):
    response = preflight(client, data_url(walrus.start(IMAGE, DATA)), CLC, method, headers)
    assert response.status_code == 403
    assert "Access-Control-Allow-Origin" not in response


def test_the_other_upload_calls_answer_preflights_with_their_own_methods(client, walrus):
    upload_id = walrus.start(IMAGE, DATA)
    for path, methods in ((f"uploads/{upload_id}/", "GET, DELETE, HEAD"), (f"uploads/{upload_id}/complete/", "POST"),
                          ("uploads/", "POST")):
        response = preflight(client, f"{API}/{path}", CLC, methods.split(", ")[0])
        assert (response.status_code, response["Access-Control-Allow-Methods"]) == (204, methods)


def test_a_piece_put_from_a_listed_origin_is_stored_and_its_answers_readable(client, walrus):
    upload_id = walrus.start(IMAGE, DATA)
    response = client.generic("PUT", data_url(upload_id), DATA[:1000], content_type="application/octet-stream",
                              HTTP_ORIGIN=CLC)
    assert (response.status_code, response.json()) == (200, {"offset": 1000})
    assert response["Access-Control-Allow-Origin"] == CLC
    # Errors too, so the page can read where to go on from.
    wrong = client.generic("PUT", data_url(upload_id, 0), DATA[:10], content_type="application/octet-stream",
                           HTTP_ORIGIN=CLC)
    assert (wrong.status_code, wrong.json()["offset"]) == (409, 1000)
    assert wrong["Access-Control-Allow-Origin"] == CLC


def test_an_unlisted_origin_gets_no_cors_header_and_a_bad_token_is_still_refused(client, walrus):
    upload_id = walrus.start(IMAGE, DATA)
    other = client.generic("PUT", data_url(upload_id), DATA[:10], content_type="application/octet-stream",
                           HTTP_ORIGIN="https://evil.example")
    assert "Access-Control-Allow-Origin" not in other
    forged = client.generic("PUT", f"{API}/uploads/{upload_id}/data?token={'0' * 64}&expires={int(time.time()) + 60}"
                                   "&offset=10", DATA[:10], content_type="application/octet-stream", HTTP_ORIGIN=CLC)
    assert forged.status_code == 401
    assert forged["Access-Control-Allow-Origin"] == CLC


def test_without_configured_origins_no_cross_origin_call_is_allowed(client, walrus, settings):
    settings.EDUCLOUD = replace(settings.EDUCLOUD, walrus_cors_origins=())
    upload_id = walrus.start(IMAGE, DATA)
    assert preflight(client, data_url(upload_id), CLC).status_code == 403
    put = client.generic("PUT", data_url(upload_id), DATA, content_type="application/octet-stream", HTTP_ORIGIN=CLC)
    assert put.status_code == 200
    assert "Access-Control-Allow-Origin" not in put


CONFIG = {"EDUCLOUD_HOST_NAME": "wal-1", "EDUCLOUD_ROLES": "walrus", "EDUCLOUD_HOST_DATA_DIR": "/tmp/x",
          "EDUCLOUD_CLOUD_CLC_URL": "http://10.0.0.1:8000",
          "EDUCLOUD_HOST_PEER_CONFIG_DIR": "/nonexistent"}


def test_the_origins_setting_is_a_checked_comma_list():
    assert load_config(CONFIG).walrus_cors_origins == ()
    config = load_config(CONFIG | {"EDUCLOUD_WALRUS_CORS_ORIGINS": " https://CLC.School.example:8443/ , http://10.0.0.1"})
    assert config.walrus_cors_origins == (CLC, "http://10.0.0.1")
    for bad in ("clc.school.example", "ftp://x", "https://x/path", "https://user@x", "https://x?y=1"):
        with pytest.raises(ConfigError, match=r"walrus\.cors_origins \(EDUCLOUD_WALRUS_CORS_ORIGINS\)"):
            load_config(CONFIG | {"EDUCLOUD_WALRUS_CORS_ORIGINS": bad})
