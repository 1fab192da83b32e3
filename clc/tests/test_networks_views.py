"""The admin console's network pages: the list, the create and edit form with each problem shown next to its field,
delete with confirmation (refused while instances run), and staff only."""

from __future__ import annotations

import html
import re
from dataclasses import replace

import pytest
from django.contrib.auth import get_user_model

from clc.services.networks import save_network
from clc.tests.test_networks import GOOD
from luhyadb.models import ClusterNetwork, Image, Instance, OwnerGroup, Server, VMType

pytestmark = [pytest.mark.database, pytest.mark.django_db]


@pytest.fixture
def staff(client):
    client.force_login(get_user_model().objects.create_user("boss", is_staff=True, is_superuser=True))
    return client


def form(**changes) -> dict:
    return {key: "" if value is None else value for key, value in (GOOD | changes).items()}


def error_next_to(page: str, field: str) -> list[str]:
    """The messages shown in the form row of ``field``."""
    row = re.search(rf'<p id="row-{field}">(.*?)</p>', page, re.S)
    assert row, f"no row for {field}"
    return [html.unescape(text) for text in re.findall(r'<span class="error"[^>]*>(.*?)</span>', row[1], re.S)]


def test_the_list_shows_each_cluster_with_its_kind_mode_address_and_pools(staff):
    save_network(GOOD)
    save_network(GOOD | {"cluster": "c2", "kind": "rvd", "mode": "public", "cc_eip": "198.51.100.7",
                         "eip_start": "", "eip_end": "", "dhcp_start": "", "dhcp_end": "", "node_bridge": ""})
    page = staff.get("/clc/networks/").content.decode()
    for text in ("c1", "Virtual server", "private", "203.0.113.10", "10.20.0.0/24 via 10.20.0.1",
                 "10.20.0.100–10.20.0.199", "203.0.113.20–203.0.113.29", "30000–39999", "br0",
                 "c2", "Remote virtual desktop", "public", "198.51.100.7", "NAT only",
                 'href="/clc/networks/c1/edit/"', 'href="/clc/networks/c2/delete/"', 'href="/clc/networks/new/"'):
        assert text in page, text
    assert page.count("<em>none</em>") == 2  # c2 has neither a DHCP nor an elastic IP pool


def test_the_list_offers_settings_for_registered_clusters_that_have_none(staff):
    Server.objects.create(name="cc-7", role="cc", ip="10.70.0.1", cluster="c7")
    page = staff.get("/clc/networks/").content.decode()
    assert 'href="/clc/networks/new/?cluster=c7"' in page
    form_page = staff.get("/clc/networks/new/?cluster=c7").content.decode()
    assert 'name="cluster" value="c7"' in form_page


def test_every_console_page_links_to_the_networks(staff):
    assert 'href="/clc/networks/"' in staff.get("/clc/").content.decode()


def test_the_new_form_suggests_private_mode_and_a_port_pool_that_passes(staff):
    page = staff.get("/clc/networks/new/").content.decode()
    assert 'name="port_low" value="6400"' in page and 'name="port_high" value="6999"' in page
    assert '<option value="private" selected>' in page
    assert "a QEMU VNC console is display N on port 5900+N" in html.unescape(page)


def test_on_an_all_in_one_the_new_form_suggests_the_hosts_own_port_pool(staff, settings):
    # A second all-in-one's first start moved its pool off the first one's: the form must not lead it back.
    settings.EDUCLOUD = replace(settings.EDUCLOUD, roles=("clc", "cc"), port_range=(7000, 7599))
    page = staff.get("/clc/networks/new/").content.decode()
    assert 'name="port_low" value="7000"' in page and 'name="port_high" value="7599"' in page
    settings.EDUCLOUD = replace(settings.EDUCLOUD, roles=("clc",))
    page = staff.get("/clc/networks/new/").content.decode()
    assert 'name="port_low" value="6400"' in page and 'name="port_high" value="6999"' in page


def test_a_network_is_created_from_the_form(staff):
    response = staff.post("/clc/networks/new/", form())
    assert (response.status_code, response["Location"]) == (302, "/clc/networks/")
    network = ClusterNetwork.objects.get()
    assert (network.cluster, network.lan_gateway, network.port_low) == ("c1", "10.20.0.1", 30000)
    assert "Network settings of cluster c1 saved" in staff.get("/clc/networks/").content.decode()


def test_the_form_shows_each_problem_next_to_its_field_and_stores_nothing(staff):
    response = staff.post("/clc/networks/new/", form(dhcp_end="10.20.1.5", port_low="80",
                                                     cc_public_interface="eth0;reboot"))
    assert response.status_code == 200
    page = response.content.decode()
    assert "Not saved: change the fields marked below." in page
    assert error_next_to(page, "dhcp_end") == [
        "10.20.1.5 is outside the LAN subnet 10.20.0.0/24; pick one from 10.20.0.1 to 10.20.0.254"]
    assert error_next_to(page, "port_low")[0].startswith("80 is outside 1024-65535")
    assert error_next_to(page, "cc_public_interface")[0].startswith("'eth0;reboot' is not an interface name")
    assert error_next_to(page, "cc_eip") == []
    assert 'value="10.20.1.5"' in page  # what was typed stays, to be corrected
    assert not ClusterNetwork.objects.exists()


def test_the_form_shows_cross_cluster_problems_too(staff):
    save_network(GOOD | {"cluster": "c2", "cc_eip": "203.0.113.25", "eip_start": "", "eip_end": "",
                         "lan_subnet": "10.30.0.0/24", "cc_internal_ip": "10.30.0.1", "dhcp_start": "10.30.0.100",
                         "dhcp_end": "10.30.0.199"})
    page = staff.post("/clc/networks/new/", form()).content.decode()
    assert error_next_to(page, "eip_start") == [
        "the elastic IP pool 203.0.113.20-203.0.113.29 contains 203.0.113.25, the public address of cluster c2's CC; "
        "move the pool"]


def test_a_network_is_edited_and_its_cluster_stays(staff):
    save_network(GOOD)
    page = staff.get("/clc/networks/c1/edit/").content.decode()
    assert 'value="10.20.0.100"' in page and 'name="cluster" value="c1"' in page and "disabled" in page
    response = staff.post("/clc/networks/c1/edit/", form(cluster="c9", port_high="30999", eip_start="",
                                                        eip_end=""))
    assert (response.status_code, response["Location"]) == (302, "/clc/networks/")
    network = ClusterNetwork.objects.get()
    assert (network.cluster, network.port_high, network.eip_start) == ("c1", 30999, None)


def test_an_edit_with_problems_is_shown_again_and_changes_nothing(staff):
    save_network(GOOD)
    page = staff.post("/clc/networks/c1/edit/", form(lan_gateway="10.20.0.150")).content.decode()
    assert error_next_to(page, "dhcp_start") == [
        "the DHCP pool 10.20.0.100-10.20.0.199 contains the LAN gateway 10.20.0.150; start the pool after it or end "
        "it before it"]
    assert ClusterNetwork.objects.get().lan_gateway == "10.20.0.1"


def test_delete_asks_first_then_deletes(staff):
    save_network(GOOD)
    page = staff.get("/clc/networks/c1/delete/").content.decode()
    assert "Delete the network of cluster c1?" in page and 'action="/clc/networks/c1/delete/"' in page
    assert ClusterNetwork.objects.exists()
    response = staff.post("/clc/networks/c1/delete/")
    assert (response.status_code, response["Location"]) == (302, "/clc/networks/")
    assert not ClusterNetwork.objects.exists()


def test_delete_is_refused_while_instances_of_the_cluster_run(staff):
    save_network(GOOD)
    group = OwnerGroup.objects.create(name="root", path="edu")
    image = Image.objects.create(image_id="img-0000abcd", name="Desk", owner_group=group)
    vm_type = VMType.objects.create(name="tiny", cpus=1, memory_mb=256, disk_gb=1)
    Instance.objects.create(instance_id="ins-00000001", name="Web", kind="vs", image=image, vm_type=vm_type,
                            owner_group=group, cluster="c1", state="booting")
    page = staff.get("/clc/networks/c1/delete/").content.decode()
    assert "ins-00000001" in page and "Stop them first." in page and 'class="danger"' not in page
    response = staff.post("/clc/networks/c1/delete/", follow=True)
    assert "Not deleted: cluster c1 has 1 instance(s) running" in html.unescape(response.content.decode())
    assert ClusterNetwork.objects.exists()


@pytest.mark.parametrize("url", ["/clc/networks/c9/edit/", "/clc/networks/c9/delete/", "/clc/networks/../edit/",
                                 "/clc/networks/c1;ls/edit/", "/clc/networks/C1/delete/"])
def test_unknown_or_hostile_clusters_are_not_found(staff, url):
    save_network(GOOD)
    assert staff.get(url).status_code == 404


URLS = ["/clc/networks/", "/clc/networks/new/", "/clc/networks/c1/edit/", "/clc/networks/c1/delete/"]


@pytest.mark.parametrize("url", URLS)
def test_visitors_are_sent_to_log_in(client, url):
    save_network(GOOD)
    for response in (client.get(url), client.post(url, form())):
        assert response.status_code == 302 and response["Location"].startswith("/clc/login/")
    assert ClusterNetwork.objects.get().port_low == 30000


@pytest.mark.parametrize("url", URLS)
def test_users_who_are_not_staff_get_403(client, url):
    save_network(GOOD)
    client.force_login(get_user_model().objects.create_user("pupil"))
    assert client.get(url).status_code == 403
    assert client.post(url, form(port_low="31000")).status_code == 403
    assert ClusterNetwork.objects.get().port_low == 30000


def test_the_record_is_shown_in_the_django_admin_but_changed_only_in_the_console(admin_client):
    save_network(GOOD)
    assert "203.0.113.10" in admin_client.get("/admin/luhyadb/clusternetwork/").content.decode()
    network = ClusterNetwork.objects.get()
    assert admin_client.get(f"/admin/luhyadb/clusternetwork/{network.pk}/change/").status_code == 200
    admin_client.post(f"/admin/luhyadb/clusternetwork/{network.pk}/change/", form(port_low="80"))
    assert admin_client.get("/admin/luhyadb/clusternetwork/add/").status_code == 403
    assert ClusterNetwork.objects.get().port_low == 30000
