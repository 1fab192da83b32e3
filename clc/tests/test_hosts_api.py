"""The console API for machines: classroom PCs by MAC and servers by role and name, listed, changed, woken through
their cluster controller and powered off through their node controller, with a status and a reason for every
refusal. The CC here is this test server's own CC API; its magic packets are recorded, not sent (real packets:
tests/integration/test_wake_on_lan.py)."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model

from clc.services.networks import save_network
from clc.tests.machines import MAC
from clc.tests.test_networks import GOOD
from luhyadb.models import Account, Host, OwnerGroup, OwnerGroupPermission, Server
from tests.commands import queued

pytestmark = [pytest.mark.database, pytest.mark.django_db(transaction=True)]


@pytest.fixture(autouse=True)
def packets(monkeypatch):
    """What the CC would have sent: nothing leaves this machine."""
    sent = []
    monkeypatch.setattr("cc.services.wake.send_magic_packet",
                        lambda mac, broadcast, port, interface: sent.append((mac, broadcast, port, interface)))
    return sent


def post(client, path: str, body: dict | None = None):
    return client.post(path, body or {}, content_type="application/json")


# Listing, reading, changing, deleting


def test_hosts_are_listed_paginated_and_searchable(staff):
    for number in range(7):
        Host.objects.create(name=f"pc-{number}", mac=f"52:54:00:00:00:0{number}", ip=f"10.0.9.{number + 20}",
                            cluster="cluster1", location="Library" if number == 3 else "Room 1")
    page = staff.get("/clc/api/1.0/hosts/", {"limit": 3, "offset": 3}).json()
    assert page["count"] == 7
    assert [host["name"] for host in page["results"]] == ["pc-3", "pc-4", "pc-5"]
    found = staff.get("/clc/api/1.0/hosts/", {"search": "library"}).json()
    assert [host["mac"] for host in found["results"]] == ["52:54:00:00:00:03"]


def test_hosts_filter_by_state_and_name_a_bad_state(staff, pc):
    Host.objects.create(name="pc-13", mac="52:54:00:00:00:13", ip="10.0.9.13", cluster="cluster1", state="offline")
    assert [h["name"] for h in staff.get("/clc/api/1.0/hosts/", {"state": "offline"}).json()["results"]] == ["pc-13"]
    response = staff.get("/clc/api/1.0/hosts/", {"state": "asleep"})
    assert response.status_code == 400
    assert "state" in response.json()


@pytest.mark.parametrize("spelling", [MAC, MAC.upper(), MAC.replace(":", "-")])
def test_a_host_is_found_by_its_mac_however_spelled(staff, pc, spelling):
    response = staff.get(f"/clc/api/1.0/hosts/{spelling}/")
    assert response.status_code == 200
    assert response.json()["name"] == "pc-12"


@pytest.mark.parametrize("mac", ["52:54:00:3c:0f", "52:54:00:3c:0f:7e;reboot", "zz:zz:zz:zz:zz:zz", "%24(reboot)",
                                 "52:54:00:3c:0f:7e:00", "pc-12"])
@pytest.mark.parametrize("action", ["", "wake/", "poweroff/"])
def test_a_malformed_mac_is_a_400_naming_mac_and_nothing_is_sent(staff, pc, packets, mac, action):
    method = staff.get if not action else lambda path: post(staff, path)
    response = method(f"/clc/api/1.0/hosts/{mac}/{action}")
    assert response.status_code == 400
    assert "mac" in response.json()
    assert packets == []


@pytest.mark.parametrize("action", ["", "wake/", "poweroff/"])
def test_an_unknown_mac_is_a_404(staff, action):
    method = staff.get if not action else lambda path: post(staff, path)
    assert method(f"/clc/api/1.0/hosts/52:54:00:99:99:99/{action}").status_code == 404


def test_the_administrator_changes_location_owner_group_and_flags_but_not_what_the_pc_reports(staff, pc):
    OwnerGroup.objects.create(name="maths", path="edu.school.maths")
    response = staff.patch(f"/clc/api/1.0/hosts/{MAC}/", {"location": " Lab 2 ", "owner_group": "edu.school.maths",
                                                          "auto_poweroff": True, "is_pad": True, "name": "evil",
                                                          "ip": "1.2.3.4"}, content_type="application/json")
    assert response.status_code == 200, response.content
    pc.refresh_from_db()
    assert (pc.location, pc.owner_group.path, pc.auto_poweroff, pc.is_pad, pc.auto_sync) == (
        "Lab 2", "edu.school.maths", True, True, True)
    assert (pc.name, pc.ip) == ("pc-12", "10.0.9.12")


def test_a_school_administrator_may_not_move_their_pc_to_no_owner_group_which_is_the_roots(client, pc):
    school = OwnerGroup.objects.create(name="school", path="edu.school")
    OwnerGroupPermission.objects.create(owner_group=school, resource_type="host", read=True, write=True,
                                        create=True)
    Host.objects.filter(pk=pc.pk).update(owner_group=school)
    head = get_user_model().objects.create_user("head")
    Account.objects.create(user=head, owner_group=school, role="poweradm")
    client.force_login(head)
    response = client.patch(f"/clc/api/1.0/hosts/{MAC}/", {"owner_group": None}, content_type="application/json")
    assert response.status_code == 403
    page = client.post(f"/clc/hosts/{MAC}/edit/", {"location": "Room 1", "owner_group": ""})
    assert page.status_code == 200 and "you may not create records in edu" in page.content.decode()
    pc.refresh_from_db()
    assert pc.owner_group == school


@pytest.mark.parametrize("field, value", [("location", "Room\x001"), ("location", "x" * 201),
                                          ("owner_group", "edu.nowhere"), ("auto_sync", "maybe")])
def test_a_bad_change_is_a_400_naming_the_field(staff, pc, field, value):
    response = staff.patch(f"/clc/api/1.0/hosts/{MAC}/", {field: value}, content_type="application/json")
    assert response.status_code == 400
    assert field in response.json()


def test_a_deleted_host_is_gone(staff, pc):
    assert staff.delete(f"/clc/api/1.0/hosts/{MAC}/").status_code == 204
    assert not Host.objects.exists()


def test_servers_are_listed_by_role_and_found_by_role_and_name(staff):
    Server.objects.create(role="nc", name="nc-1", ip="10.0.9.2", cluster="cluster1", mac="52:54:00:00:01:02")
    Server.objects.create(role="sc", name="sc-1", ip="10.0.9.3", cluster="cluster1")
    Server.objects.create(role="walrus", name="store", ip="10.0.0.2", cluster="cluster1", state="offline")
    assert staff.get("/clc/api/1.0/servers/").json()["count"] == 3
    assert [s["name"] for s in staff.get("/clc/api/1.0/servers/", {"role": "nc"}).json()["results"]] == ["nc-1"]
    assert [s["name"] for s in staff.get("/clc/api/1.0/servers/", {"state": "offline"}).json()["results"]] == [
        "store"]
    assert staff.get("/clc/api/1.0/servers/nc/nc-1/").json()["mac"] == "52:54:00:00:01:02"
    assert staff.get("/clc/api/1.0/servers/sc/nc-1/").status_code == 404


@pytest.mark.parametrize("path, field", [("servers/dancer/nc-1/", "role"), ("servers/nc/NC;reboot/", "name"),
                                         ("servers/nc/nc-1;reboot/wake/", "name"),
                                         ("servers/nc/-x/poweroff/", "name"), ("servers/?role=dancer", "role")])
def test_a_bad_role_or_server_name_is_a_400_naming_it(staff, packets, path, field):
    Server.objects.create(role="nc", name="nc-1", ip="10.0.9.2", cluster="cluster1", mac="52:54:00:00:01:02")
    method = post if path.endswith(("wake/", "poweroff/")) else lambda client, p: client.get(p)
    response = method(staff, f"/clc/api/1.0/{path}")
    assert response.status_code == 400
    assert field in response.json()
    assert packets == []


# Permissions


@pytest.mark.parametrize("method, path", [("get", "hosts/"), ("get", f"hosts/{MAC}/"), ("post", f"hosts/{MAC}/wake/"),
                                          ("post", f"hosts/{MAC}/poweroff/"), ("delete", f"hosts/{MAC}/"),
                                          ("get", "servers/"), ("post", "servers/nc/pc-12/wake/"),
                                          ("post", "servers/nc/pc-12/poweroff/")])
def test_only_staff_and_signed_roles_may_use_it(client, pc, packets, method, path):
    call = getattr(client, method)
    assert call(f"/clc/api/1.0/{path}").status_code == 401
    client.force_login(get_user_model().objects.create_user("pupil"))
    assert call(f"/clc/api/1.0/{path}").status_code == 403
    assert Host.objects.filter(mac=MAC).exists()
    assert packets == []


def test_the_hosts_api_is_for_people_a_hosts_signed_call_is_refused(signed_client, pc):
    assert signed_client.get("/clc/api/1.0/hosts/").status_code == 403


# Waking


def test_waking_a_host_asks_its_cluster_controller_which_sends_the_packet(staff, pc, controller, packets):
    response = post(staff, f"/clc/api/1.0/hosts/{MAC}/wake/")
    assert response.status_code == 202, response.content
    assert response.json() == {"mac": MAC, "controller": "cc-1", "broadcast": "255.255.255.255", "interface": ""}
    assert packets == [(MAC, "255.255.255.255", 9, None)]


def test_waking_a_host_on_its_clusters_lan_broadcast(staff, pc, controller, packets):
    save_network(GOOD | {"cluster": "cluster1", "port_low": 6400, "port_high": 6499})  # clear of the server's port
    response = post(staff, f"/clc/api/1.0/hosts/{MAC}/wake/", {"broadcast": "10.20.0.255"})
    assert response.status_code == 202, response.content
    assert packets == [(MAC, "10.20.0.255", 9, None)]


@pytest.mark.parametrize("broadcast", ["10.20.0.11", "10.0.9.255", "192.0.2.1"])
def test_a_magic_packet_is_never_aimed_at_another_address_than_the_clusters_lan_broadcast(
        staff, pc, controller, packets, broadcast):
    save_network(GOOD | {"cluster": "cluster1", "port_low": 6400, "port_high": 6499})  # clear of the server's port
    response = post(staff, f"/clc/api/1.0/hosts/{MAC}/wake/", {"broadcast": broadcast})
    assert response.status_code == 400
    assert "not a broadcast address of the cluster's LAN" in response.json()["broadcast"][0]
    assert packets == []


@pytest.mark.parametrize("broadcast", ["10.0.9.255; reboot", "ff02::1", "224.0.0.1", "lab"])
def test_a_bad_broadcast_address_is_a_400_naming_it_and_nothing_is_sent(staff, pc, controller, packets, broadcast):
    response = post(staff, f"/clc/api/1.0/hosts/{MAC}/wake/", {"broadcast": broadcast})
    assert response.status_code == 400
    assert "broadcast" in response.json()
    assert packets == []


@pytest.mark.parametrize("change", [{"state": "offline"}, {"cluster": "other"}, {"api_url": ""}])
def test_waking_is_a_409_when_the_hosts_cluster_has_no_online_controller(staff, pc, controller, packets, change):
    Server.objects.filter(pk=controller.pk).update(**change)
    response = post(staff, f"/clc/api/1.0/hosts/{MAC}/wake/")
    assert response.status_code == 409
    assert "cluster 'cluster1' of host pc-12 has no online cluster controller" in response.json()["detail"]
    assert packets == []


def test_a_host_recorded_with_a_group_mac_is_not_woken(staff, controller, packets):
    Host.objects.create(name="pc-x", mac="01:00:5e:00:00:01", ip="10.0.9.40", cluster="cluster1")
    response = post(staff, "/clc/api/1.0/hosts/01:00:5e:00:00:01/wake/")
    assert response.status_code == 409
    assert "cannot be woken" in response.json()["detail"]
    assert packets == []


def test_a_cluster_controller_that_cannot_be_reached_is_a_502(staff, pc, packets):
    Server.objects.create(role="cc", name="cc-1", ip="10.0.9.1", cluster="cluster1", api_url="http://127.0.0.1:9",
                          state="online")
    response = post(staff, f"/clc/api/1.0/hosts/{MAC}/wake/")
    assert response.status_code == 502
    assert "cluster controller cc-1 did not send the magic packet for host pc-12" in response.json()["detail"]


def test_node_and_storage_controllers_are_woken_like_hosts_and_other_roles_are_refused(staff, controller, packets):
    Server.objects.create(role="sc", name="sc-1", ip="10.0.9.3", cluster="cluster1", mac="52:54:00:00:01:03",
                          state="offline")
    Server.objects.create(role="walrus", name="store", ip="10.0.9.4", cluster="cluster1", mac="52:54:00:00:01:04")
    Server.objects.create(role="nc", name="nc-2", ip="10.0.9.5", cluster="cluster1")
    assert post(staff, "/clc/api/1.0/servers/sc/sc-1/wake/").status_code == 202
    assert packets == [("52:54:00:00:01:03", "255.255.255.255", 9, None)]
    refused = post(staff, "/clc/api/1.0/servers/walrus/store/wake/")
    assert refused.status_code == 409
    assert "only node and storage controllers" in refused.json()["detail"]
    no_mac = post(staff, "/clc/api/1.0/servers/nc/nc-2/wake/")
    assert no_mac.status_code == 409
    assert "has no MAC address recorded" in no_mac.json()["detail"]
    assert post(staff, "/clc/api/1.0/servers/nc/nc-9/wake/").status_code == 404
    assert len(packets) == 1


# Powering off


def test_powering_off_a_host_queues_host_poweroff_for_the_node_it_runs(staff, pc, node):
    response = post(staff, f"/clc/api/1.0/hosts/{MAC}/poweroff/")
    assert response.status_code == 202, response.content
    answer = response.json()
    assert (answer["node"], answer["op"]) == ("pc-12", "host/poweroff")
    assert [(command.op, command.msg_id) for command in queued("pc-12")] == [("host/poweroff", answer["msg_id"])]


def test_powering_off_a_node_controller_by_role_and_name(staff, node):
    response = post(staff, "/clc/api/1.0/servers/nc/pc-12/poweroff/")
    assert response.status_code == 202
    assert [command.op for command in queued("pc-12")] == ["host/poweroff"]


def test_a_host_that_runs_no_node_controller_is_a_409_saying_so(staff, pc, controller):
    response = post(staff, f"/clc/api/1.0/hosts/{MAC}/poweroff/")
    assert response.status_code == 409
    assert response.json()["detail"] == ("host pc-12 cannot be powered off from here: it runs no node controller "
                                         "registered with the cloud")


@pytest.mark.parametrize("change, reason", [
    ({"state": "offline"}, "host pc-12 is offline: there is nothing to power off"),
    ({"state": "stopped"}, "host pc-12 is stopped: there is nothing to power off"),
    ({"cluster": "other"}, "node controller pc-12 is in cluster 'other', the PC in 'cluster1': not the same"),
    ({"mac": "52:54:00:00:00:99"}, "node controller pc-12 has MAC 52:54:00:00:00:99, the PC 52:54:00:3c:0f:7e"),
    ({"ip": "127.0.0.1"}, "the cloud controller runs on the machine of host pc-12"),
])
def test_powering_off_is_refused_with_a_409_and_a_reason(staff, pc, node, change, reason):
    Server.objects.filter(pk=node.pk).update(**change)
    response = post(staff, f"/clc/api/1.0/hosts/{MAC}/poweroff/")
    assert response.status_code == 409
    assert reason in response.json()["detail"]
    assert queued("pc-12") == []


def test_a_node_on_the_machine_of_a_registered_cloud_controller_is_not_powered_off(staff, node):
    Server.objects.create(role="clc", name="clc-1", ip=node.ip, cluster="cluster1", state="online")
    response = post(staff, "/clc/api/1.0/servers/nc/pc-12/poweroff/")
    assert response.status_code == 409
    assert "the cloud controller runs on the machine of nc:pc-12" in response.json()["detail"]
    assert queued("pc-12") == []


def test_powering_off_is_a_409_when_the_cluster_has_no_online_controller(staff, pc, node, controller):
    Server.objects.filter(pk=controller.pk).update(state="offline")
    response = post(staff, f"/clc/api/1.0/hosts/{MAC}/poweroff/")
    assert response.status_code == 409
    assert "has no online cluster controller" in response.json()["detail"]


def test_only_node_controllers_power_their_machine_off(staff, controller):
    Server.objects.create(role="sc", name="sc-1", ip="10.0.9.3", cluster="cluster1", state="online")
    response = post(staff, "/clc/api/1.0/servers/sc/sc-1/poweroff/")
    assert response.status_code == 409
    assert "only node controllers can power their machine off" in response.json()["detail"]
