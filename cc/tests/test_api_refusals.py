"""The CC's API refuses what its records cannot hold with a 400 naming the field, never a server error: a run
without the instance's MAC, numbers past the database's columns, a registration without an IP address."""

from __future__ import annotations

import pytest

from tests.keys import enrolled_key

pytestmark = [pytest.mark.database, pytest.mark.django_db]

RUN = {"insid": "ins-0000000a", "tid": "img-0000aaaa:img-0000aaaa:ins-0000000a", "seq": 1, "kind": "rvd",
       "image": {"image_id": "img-0000aaaa", "version": 1, "sha256": "a" * 64, "size": 1024}, "cpus": 1,
       "memory_mb": 256, "mac": "52:54:00:00:00:0a"}


@pytest.mark.parametrize("change, field", [
    ({"mac": ""}, "mac"), ({"mac": "00:00"}, "mac"), ({"seq": 2**63}, "seq"), ({"memory_mb": 2**31}, "memory_mb"),
    ({"disk_mb": 10**20}, "disk_mb"), ({"image": RUN["image"] | {"version": 2**40}}, "image.version")])
def test_a_run_request_the_records_cannot_hold_is_a_400_naming_the_field(signed_client, change, field):
    response = signed_client.post("/cc/api/1.0/instances/", RUN | change)
    assert response.status_code == 400, response.content[:300]
    assert list(response.json()) == [field]


@pytest.mark.parametrize("call", ["stop/", "submit/", ""])
def test_a_seq_past_the_database_column_is_a_400_naming_it(signed_client, call):
    body = {"seq": 380662710693483905024, "image_id": "img-0000aaaa"}
    response = signed_client.request("DELETE" if not call else "POST", f"/cc/api/1.0/instances/ins-0000000a/{call}",
                                     body)
    assert response.status_code == 400, response.content[:300]
    assert list(response.json()) == ["seq"]


@pytest.mark.parametrize("route, body", [
    ("register/server/", {"role": "nc", "name": "nc-7", "mac": "", "cluster": "cluster1", "heartbeat_seconds": 5,
                          "capacity": {"cpus": 1, "memory_mb": 1, "disk_mb": 1}}),
    ("register/host/", {"name": "pc-1", "mac": "52:54:00:00:01:01", "cluster": "cluster1", "heartbeat_seconds": 5})])
@pytest.mark.parametrize("ip", ["", "not-an-address", "10.0.0.256"])
def test_a_registration_without_an_ip_address_is_a_400_naming_ip(signed_client, route, body, ip):
    sender = enrolled_key(body["name"], "pc" if route == "register/host/" else "nc", mac=body["mac"])
    response = signed_client.post(f"/cc/api/1.0/{route}", body | {"ip": ip}, key=sender)
    assert response.status_code == 400, response.content[:300]
    assert list(response.json()) == ["ip"]


def test_a_run_request_for_a_multicast_mac_is_a_400_naming_mac(signed_client):
    response = signed_client.post("/cc/api/1.0/instances/", RUN | {"mac": "43:2d:0f:22:d6:97"})
    assert response.status_code == 400, response.content[:300]
    assert list(response.json()) == ["mac"]


@pytest.mark.parametrize("body", [None, 8, "text", [], {"image_id": "img-1"}, {"seq": 1}])
def test_a_submit_without_an_image_id_object_is_a_400_not_a_server_error(signed_client, body):
    response = signed_client.post("/cc/api/1.0/instances/ins-0000000a/submit/", body)
    assert response.status_code == 400, response.content[:300]
    answer = response.json()
    assert "image_id" in answer or "non_field_errors" in answer
