"""What every API call refuses before it reaches a view's logic, with a 400 that names the problem: list
parameters out of range, JSON nested deeper than any request needs, and ids with an encoded '/'."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model

from luhyaapi.parsers import MAX_JSON_DEPTH
from luhyaapi.signing import canonical_path, sign_headers
from luhyaapi.trust import own_key
from luhyadb.services.initial_data import seed_initial_data

pytestmark = [pytest.mark.database, pytest.mark.django_db]


def signed_raw(client, method: str, path: str, body: bytes, **extra):
    """``body`` as it is, signed by the test host (which runs every role)."""
    route, _, query = path.partition("?")
    headers = sign_headers(own_key(), method, "testserver", canonical_path(route, query), body)
    meta = {f"HTTP_{name.upper().replace('-', '_')}": value for name, value in headers.items()}
    return client.generic(method, path, body, content_type="application/json", **meta, **extra)


def as_administrator(client, method: str, path: str, body: bytes, **extra):
    """``body`` as it is, from the first administrator, logged in."""
    client.force_login(get_user_model().objects.get_or_create(username="root-admin", is_staff=True,
                                                              is_superuser=True)[0])
    return client.generic(method, path, body, content_type="application/json", **extra)


@pytest.mark.parametrize("query, field", [
    ("limit=9223372036854775808", "limit"), ("limit=18446744073709551616", "limit"), ("limit=" + "9" * 5000, "limit"),
    ("limit=-1", "limit"), ("limit=0", "limit"), ("limit=abc", "limit"), ("limit=", "limit"), ("limit=1001", "limit"),
    ("offset=9223372036854775808", "offset"), ("offset=-5", "offset"), ("offset=x", "offset"),
    ("offset=1e3", "offset"), ("limit=%D9%A3", "limit")])
@pytest.mark.parametrize("route", ["vmtypes", "images", "instances", "hosts", "accounts", "tasks"])
def test_a_list_refuses_a_limit_or_offset_out_of_range_with_a_400_naming_it(api_client, route, query, field):
    seed_initial_data()
    response = api_client.get(f"/clc/api/1.0/{route}/?{query}")
    assert response.status_code == 400, response.content[:200]
    assert list(response.json()) == [field]


def test_a_list_still_pages_with_limits_in_range(api_client):
    seed_initial_data()
    page = api_client.get("/clc/api/1.0/vmtypes/?limit=2&offset=1").json()
    assert len(page["results"]) == 2 and page["count"] > 3
    assert "limit=2" in page["next"] and "offset=3" in page["next"]


@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH + 1, 1000, 100_000])
@pytest.mark.parametrize("route, send", [
    ("vmtypes/", as_administrator), ("register/server/", signed_raw), ("nodes/nc-1/commands/", as_administrator),
    ("ownergroups/", as_administrator)])
def test_a_json_body_nested_too_deeply_is_a_400_saying_so(client, route, send, depth):
    body = b"[" * depth + b"]" * depth
    response = send(client, "POST", f"/clc/api/1.0/{route}", body)
    assert response.status_code == 400
    assert f"more than {MAX_JSON_DEPTH} levels deep" in response.json()["detail"]


def test_a_json_body_as_deep_as_allowed_reaches_the_view(client):
    body = b'{"name": "x", "cpus": ' + b"[" * (MAX_JSON_DEPTH - 1) + b"]" * (MAX_JSON_DEPTH - 1) + b"}"
    response = as_administrator(client, "POST", "/clc/api/1.0/vmtypes/", body)
    assert response.status_code == 400
    assert "cpus" in response.json()


@pytest.mark.parametrize("raw, field", [
    ("/clc/api/1.0/images/img%2F0000abcd/", "image_id"),
    ("/clc/api/1.0/instances/ins-0000abcd%2F..%2Fx/run/", "instance_id"),
    ("/clc/api/1.0/accounts/a%2fb/password/", "username"),
    ("/clc/api/1.0/hosts/52:54:00:00:00:01%2F/", "mac"),
    ("/cc/api/1.0/instances/ins-0000abcd%2Fx/stop/", "insid"),
])
def test_an_id_with_an_encoded_slash_is_a_400_naming_the_field(client, raw, field):
    from urllib.parse import unquote

    response = signed_raw(client, "POST" if raw.endswith(("run/", "password/", "stop/")) else "GET", unquote(raw),
                          b"{}", REQUEST_URI=raw)
    assert response.status_code == 400, response.content[:200]
    assert list(response.json()) == [field]
    assert "'/'" in response.json()[field][0]


def test_a_route_that_does_not_exist_is_still_a_404(client):
    response = signed_raw(client, "GET", "/clc/api/1.0/images/img-0000abcd/nothing/", b"",
                          REQUEST_URI="/clc/api/1.0/images/img-0000abcd/nothing/")
    assert response.status_code == 404
    assert "no such API endpoint" in response.json()["detail"]


@pytest.mark.parametrize("route", ["images", "instances", "hosts", "accounts", "ownergroups"])
def test_a_search_with_a_nul_character_is_a_400_naming_search(api_client, route):
    seed_initial_data()
    response = api_client.get(f"/clc/api/1.0/{route}/?search=%F3%90%97%84%00t")
    assert response.status_code == 400
    assert list(response.json()) == ["search"]
