"""The cluster networks API on the CLC (``/clc/api/1.0/networks/``): create, get, list, replace, change, delete, a
400 naming the field for every refusal, hostile values, and the signed GET a CC makes of its own settings."""

from __future__ import annotations

import json

import pytest
from django.contrib.auth import get_user_model

from clc.tests.test_networks import GOOD
from luhyadb.models import ClusterNetwork, Image, Instance, OwnerGroup, VMType
from tests.keys import enrolled_key, new_key

pytestmark = [pytest.mark.database, pytest.mark.django_db]

URL = "/clc/api/1.0/networks/"


@pytest.fixture
def staff(client):
    client.force_login(get_user_model().objects.create_user("boss", is_staff=True, is_superuser=True))
    return client


def send(client, method: str, path: str, body=None):
    data = json.dumps(body) if body is not None else ""
    return client.generic(method, path, data, content_type="application/json")


def create(staff, **changes) -> dict:
    response = send(staff, "POST", URL, GOOD | changes)
    assert response.status_code == 201, response.json()
    return response.json()


def test_a_network_is_created_and_read_back_normalized(staff):
    created = create(staff, port_low="30000")
    assert {key: created[key] for key in GOOD} == GOOD | {"lan_gateway": "10.20.0.1", "port_low": 30000}
    assert created["updated"]
    got = staff.get(f"{URL}c1/")
    assert (got.status_code, got.json()) == (200, created)


def test_networks_are_listed(staff):
    create(staff)
    create(staff, cluster="c2", kind="rvd", cc_eip="203.0.113.50", eip_start="", eip_end="", node_bridge="",
           dhcp_start="", dhcp_end="")
    listed = staff.get(URL).json()
    assert (listed["count"], [network["cluster"] for network in listed["results"]]) == (2, ["c1", "c2"])


def test_put_replaces_every_setting_and_keeps_the_cluster(staff):
    create(staff)
    body = GOOD | {"cluster": "c1", "kind": "rvd", "mode": "public", "node_bridge": "", "dhcp_start": None,
                   "dhcp_end": None, "eip_start": None, "eip_end": None}
    del body["cluster"]  # the URL names it
    response = send(staff, "PUT", f"{URL}c1/", body)
    assert response.status_code == 200, response.json()
    assert (response.json()["kind"], response.json()["dhcp_start"], response.json()["cluster"]) == ("rvd", None, "c1")


def test_put_of_what_get_returned_is_accepted(staff):
    created = create(staff)
    response = send(staff, "PUT", f"{URL}c1/", created)
    assert response.status_code == 200, response.json()


def test_put_without_required_settings_names_each_missing_one(staff):
    create(staff)
    response = send(staff, "PUT", f"{URL}c1/", {"kind": "rvd"})
    assert response.status_code == 400
    assert {"mode", "cc_eip", "cc_internal_ip", "lan_subnet", "port_low", "port_high"} <= set(response.json())
    assert response.json()["mode"] == ["mode: required: give one of public, private"]


def test_patch_changes_only_what_it_sends_and_is_checked_with_the_rest(staff):
    create(staff)
    response = send(staff, "PATCH", f"{URL}c1/", {"port_high": 30999})
    assert (response.status_code, response.json()["port_high"], response.json()["dhcp_end"]) == (
        200, 30999, "10.20.0.199")
    refused = send(staff, "PATCH", f"{URL}c1/", {"lan_subnet": "10.99.0.0/24"})
    assert refused.status_code == 400
    assert refused.json()["cc_internal_ip"] == [
        "cc_internal_ip: 10.20.0.1 is outside the LAN subnet 10.99.0.0/24; pick one from 10.99.0.1 to 10.99.0.254"]
    assert ClusterNetwork.objects.get().lan_subnet == "10.20.0.0/24"


def test_the_cluster_of_a_network_cannot_change(staff):
    create(staff)
    response = send(staff, "PATCH", f"{URL}c1/", {"cluster": "c2"})
    assert response.status_code == 400
    assert response.json()["cluster"][0].startswith("cluster: the network of cluster c1 cannot move")


def test_a_second_network_for_a_cluster_is_refused(staff):
    create(staff)
    response = send(staff, "POST", URL, GOOD)
    assert (response.status_code, response.json()) == (400, {"cluster": [
        "cluster: cluster c1 already has network settings; edit those instead"]})


def test_delete_removes_it_and_is_refused_while_the_cluster_runs_instances(staff):
    create(staff)
    group = OwnerGroup.objects.create(name="root", path="edu")
    image = Image.objects.create(image_id="img-0000abcd", name="Desk", owner_group=group)
    vm_type = VMType.objects.create(name="tiny", cpus=1, memory_mb=256, disk_gb=1)
    Instance.objects.create(instance_id="ins-00000001", name="Web", kind="vs", image=image, vm_type=vm_type,
                            owner_group=group, cluster="c1", state="running")
    refused = staff.delete(f"{URL}c1/")
    assert refused.status_code == 409
    assert "stop them before deleting its network" in refused.json()["detail"]
    Instance.objects.update(state="stopped")
    assert staff.delete(f"{URL}c1/").status_code == 204
    assert staff.get(f"{URL}c1/").status_code == 404


@pytest.mark.parametrize(("changes", "field", "message"), [
    ({"kind": "cloud"}, "kind", "kind: 'cloud' is not one of vs, rvd, lvd"),
    ({"mode": "tree"}, "mode", "mode: 'tree' is not one of public, private"),
    ({"cc_eip": "203.0.113"}, "cc_eip", "cc_eip: '203.0.113' is not an IPv4 address"),
    ({"cc_internal_ip": "10.21.0.1"}, "cc_internal_ip", "cc_internal_ip: 10.21.0.1 is outside the LAN subnet"),
    ({"lan_subnet": "10.20.0.1/24"}, "lan_subnet", "lan_subnet: 10.20.0.1/24 has host bits set"),
    ({"lan_gateway": "10.20.9.1"}, "lan_gateway", "lan_gateway: 10.20.9.1 is outside the LAN subnet 10.20.0.0/24"),
    ({"dhcp_end": "10.20.1.5"}, "dhcp_end", "dhcp_end: 10.20.1.5 is outside the LAN subnet 10.20.0.0/24"),
    ({"dhcp_end": "10.20.0.99"}, "dhcp_end", "dhcp_end: 10.20.0.99 comes before dhcp_start 10.20.0.100"),
    ({"lan_gateway": "10.20.0.100"}, "dhcp_start", "dhcp_start: the DHCP pool 10.20.0.100-10.20.0.199 contains "
                                                   "the LAN gateway 10.20.0.100"),
    ({"eip_start": "10.20.0.150", "eip_end": "10.20.0.160"}, "eip_start",
     "eip_start: the elastic IP pool 10.20.0.150-10.20.0.160 overlaps the DHCP pool"),
    ({"eip_start": "10.20.0.2", "eip_end": "10.20.0.9"}, "eip_start",
     "eip_start: the elastic IP pool 10.20.0.2-10.20.0.9 overlaps the LAN subnet"),
    ({"eip_start": "203.0.113.10"}, "eip_start", "eip_start: the elastic IP pool 203.0.113.10-203.0.113.29 contains "
                                                 "cc_eip 203.0.113.10"),
    ({"port_low": 1000}, "port_low", "port_low: 1000 is outside 1024-65535"),
    ({"port_low": "1e4"}, "port_low", "port_low: '1e4' is not a port"),
    ({"port_low": 6000, "port_high": 6999}, "port_low", "port_low: the port pool 6000-6999 contains 6379 (Redis)"),
    ({"port_high": 65536}, "port_high", "port_high: 65536 is outside 1024-65535"),
    ({"node_bridge": ""}, "node_bridge", "node_bridge: required for a virtual server cluster"),
    ({"surprise": 1}, "surprise", "surprise: not a network setting"),
])
def test_each_refusal_is_a_400_naming_the_field(staff, changes, field, message):
    response = send(staff, "POST", URL, GOOD | changes)
    assert response.status_code == 400
    assert response.json()[field][0].startswith(message), response.json()
    assert not ClusterNetwork.objects.exists()


@pytest.mark.parametrize(("field", "value"), [
    ("cluster", "../../etc"), ("cluster", "c1; rm -rf /"), ("cluster", "$(reboot)"), ("cluster", "C1"),
    ("cc_public_interface", "eth0`reboot`"), ("cc_private_interface", "../../dev"), ("node_bridge", "br0|nc -l"),
    ("node_bridge", "--help"), ("lan_subnet", "10.20.0.0/24; reboot"), ("cc_eip", "203.0.113.10\nreboot"),
    ("cc_eip", {"$gt": ""}), ("port_high", [30000]),
])
def test_hostile_values_are_refused_naming_the_field(staff, field, value):
    response = send(staff, "POST", URL, GOOD | {field: value})
    assert response.status_code == 400
    assert response.json()[field][0].startswith(f"{field}: "), response.json()


def test_a_body_that_is_not_an_object_is_refused(staff):
    response = send(staff, "POST", URL, ["c1"])
    assert (response.status_code, list(response.json())) == (400, ["non_field_errors"])


@pytest.mark.parametrize("name", ["..", "c1;ls", "C1", "%2e%2e", "c1%20x"])
def test_a_hostile_cluster_in_the_url_is_a_400_naming_it(staff, name):
    create(staff)
    response = staff.get(f"{URL}{name}/")
    assert response.status_code == 400
    assert list(response.json()) == ["cluster"]


def test_a_cc_gets_its_clusters_config_with_a_signed_call_and_nothing_else(staff, signed_client):
    create(staff)
    cc = enrolled_key("cc-1", "cc", cluster="c1")
    config = signed_client.get(f"{URL}c1/cc-config/", key=cc)
    assert config.status_code == 200
    assert (config.json()["forward_ports"], config.json()["lan"]["netmask"]) == (True, "255.255.255.0")
    assert signed_client.get(f"{URL}c1/", key=cc).status_code == 403


def test_the_cc_of_a_cluster_without_settings_is_answered_an_empty_object_not_a_404(staff, signed_client, caplog):
    """A fresh install's CC asks every minute; a cluster without settings is a normal state, not a missing page."""
    cc = enrolled_key("cc-1", "cc", cluster="c1")
    with caplog.at_level("WARNING", logger="django.request"):
        answer = signed_client.get(f"{URL}c1/cc-config/", key=cc)
    assert (answer.status_code, answer.json()) == (200, {})
    assert not [record for record in caplog.records if record.name == "django.request"]
    assert staff.get(f"{URL}c1/cc-config/").status_code == 404  # people still see that there is nothing


def test_a_cc_may_not_read_another_clusters_config(staff, signed_client):
    create(staff)
    refused = signed_client.get(f"{URL}c1/cc-config/", key=enrolled_key("cc-2", "cc", cluster="c2"))
    assert (refused.status_code, refused.json()["detail"]) == (403, "cc-2 belongs to another cluster than c1")
    assert signed_client.get(f"{URL}c1/cc-config/", key=enrolled_key("nc-1", "nc", cluster="c1")).status_code == 403


def test_strangers_and_wrong_signatures_are_refused(client, staff, signed_client):
    create(staff)
    client.logout()
    assert client.get(f"{URL}c1/").status_code in (401, 403)
    assert signed_client.get(f"{URL}c1/cc-config/", key=new_key("cc-1")).status_code == 401
    assert send(client, "POST", URL, GOOD | {"cluster": "c5"}).status_code in (401, 403)


def test_users_who_are_not_staff_are_refused(client):
    client.force_login(get_user_model().objects.create_user("pupil"))
    assert client.get(URL).status_code == 403
    assert send(client, "POST", URL, GOOD).status_code == 403
    assert not ClusterNetwork.objects.exists()
