"""Records of the whole cloud (servers, their commands, cluster networks) need the root owner-group for every verb: a
school's super administrator reaches their school's records only, and the system status shows them their own PCs
and no server. (Issue 12, findings 1, 2 and the status part of 5: each of these tests failed before its fix.)"""

from __future__ import annotations

import json

import pytest

from clc.services.networks import save_network
from clc.tests.machines import NODE
from clc.tests.test_networks import GOOD
from luhyadb.models import ClusterNetwork, Host, Server
from tests.commands import queued

pytest_plugins = ["clc.tests.people_fixtures"]
pytestmark = [pytest.mark.database, pytest.mark.django_db]


@pytest.fixture
def node(groups):
    """A node controller of cluster1 (a server: it belongs to the whole cloud)."""
    return Server.objects.create(role="nc", name=NODE["name"], ip=NODE["ip"], cluster="cluster1", state="online")


def post(client, path: str, body: dict):
    return client.post(path, json.dumps(body), content_type="application/json")


@pytest.mark.parametrize("op", ["status/report", "instance/stop", "instance/delete", "host/poweroff"])
def test_a_school_super_administrator_may_not_send_any_command_to_a_node(client, login, node, op):
    login("head", "superadm", "edu.other")
    response = post(client, f"/clc/api/1.0/nodes/{node.name}/commands/", {"op": op, "paras": {"insid": "ins-00000001"}})
    assert response.status_code == 403, response.content
    assert "detail" in response.json()
    assert queued(node.name) == []


@pytest.mark.parametrize("op", ["instance/stop", "instance/delete", "instance/run", "image/prepare", "host/poweroff"])
def test_commands_that_change_records_are_refused_even_for_the_root_they_have_their_own_api(client, login, node, op):
    login("root-admin", "superadm", "edu")
    response = post(client, f"/clc/api/1.0/nodes/{node.name}/commands/", {"op": op, "paras": {"insid": "ins-00000001"}})
    assert response.status_code == 400, response.content
    assert "op" in response.json()
    assert queued(node.name) == []


def test_a_school_super_administrator_may_not_create_cluster_network_settings_by_api_or_page(client, login):
    login("head", "superadm", "edu.other")
    assert post(client, "/clc/api/1.0/networks/", GOOD).status_code == 403
    assert client.get("/clc/networks/new/").status_code == 403
    page = client.post("/clc/networks/new/", {key: "" if value is None else value for key, value in GOOD.items()})
    assert page.status_code == 403
    assert not ClusterNetwork.objects.exists()


@pytest.mark.parametrize("method, suffix", [("GET", ""), ("PATCH", ""), ("DELETE", ""), ("GET", "cc-config/")])
def test_a_school_super_administrator_may_not_reach_an_existing_networks_settings(client, login, method, suffix):
    save_network(GOOD)
    login("head", "superadm", "edu.other")
    response = client.generic(method, f"/clc/api/1.0/networks/c1/{suffix}", json.dumps({"cc_eip": "198.51.100.66"}),
                              content_type="application/json")
    assert response.status_code == 403
    assert ClusterNetwork.objects.get(cluster="c1").cc_eip == GOOD["cc_eip"]


def test_the_roots_super_administrator_still_creates_network_settings(client, login):
    login("root-admin", "superadm", "edu")
    assert post(client, "/clc/api/1.0/networks/", GOOD).status_code == 201


def test_the_status_shows_a_school_administrator_their_schools_pcs_and_no_server(client, login, groups, node):
    Host.objects.create(name="pc-mine", mac="52:54:00:00:02:01", ip="10.0.2.1", cluster="cluster1",
                        owner_group=groups["edu.school.class1"])
    Host.objects.create(name="pc-theirs", mac="52:54:00:00:02:02", ip="10.0.2.2", cluster="cluster1",
                        owner_group=groups["edu.other"])
    Host.objects.create(name="pc-unassigned", mac="52:54:00:00:02:03", ip="10.0.2.3", cluster="cluster1")
    login("head", "superadm", "edu.school")
    status = client.get("/clc/api/1.0/status/")
    assert status.status_code == 200, status.content
    assert (status.json()["services"], [host["name"] for host in status.json()["hosts"]]) == ([], ["pc-mine"])
    page = client.get("/clc/").content.decode()
    assert "pc-mine" in page and "pc-theirs" not in page and "pc-unassigned" not in page
    assert node.name not in page


def test_the_status_shows_the_root_every_server_and_pc(client, login, groups, node):
    Host.objects.create(name="pc-theirs", mac="52:54:00:00:02:02", ip="10.0.2.2", cluster="cluster1",
                        owner_group=groups["edu.other"])
    login("root-admin", "poweradm", "edu")
    status = client.get("/clc/api/1.0/status/").json()
    assert ([server["name"] for server in status["services"]], [host["name"] for host in status["hosts"]]) == (
        [node.name], ["pc-theirs"])


@pytest.mark.parametrize("path", ["/clc/api/1.0/servers/", f"/clc/api/1.0/servers/nc/{NODE['name']}/"])
def test_a_school_administrator_may_not_read_servers(client, login, node, path):
    login("head", "superadm", "edu.school")
    assert client.get(path).status_code == 403
