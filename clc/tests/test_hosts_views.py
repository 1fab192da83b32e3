"""The admin console's Hosts pages: classroom PCs and servers listed (searchable, paginated, staff only), a PC's
record edited and deleted, and Wake / Power off from each row with a message for every outcome. The CC is this
test server's own; its magic packets are recorded, not sent, and the node's power-off argv writes a marker file."""

from __future__ import annotations

import re
import sys
from dataclasses import replace

import pytest
from django.conf import settings as django_settings
from django.contrib.auth import get_user_model

from clc.tests.machines import MAC
from daemons.heartbeat import HeartbeatPublisher
from luhyaapi.bus import get_bus
from luhyaapi.trust import own_key
from luhyadb.models import Host, OwnerGroup, Server
from nc.models import CommandRecord
from tests.commands import run_queued
from tests.keys import trusted

pytestmark = [pytest.mark.database, pytest.mark.django_db(transaction=True)]

WRITE_MARKER = "import pathlib, sys; pathlib.Path(sys.argv[1]).open('a').write('powered off\\n')"


@pytest.fixture(autouse=True)
def packets(monkeypatch):
    """What the CC would have sent: nothing leaves this machine."""
    sent = []
    monkeypatch.setattr("cc.services.wake.send_magic_packet",
                        lambda mac, broadcast, port, interface: sent.append((mac, broadcast)))
    return sent


@pytest.fixture(autouse=True)
def marker(tmp_path, settings):
    """The node's power-off command here writes a line to this file (and powers nothing off)."""
    path = tmp_path / "powered-off"
    settings.EDUCLOUD = replace(settings.EDUCLOUD, poweroff_argv=(sys.executable, "-c", WRITE_MARKER, str(path)))
    return path


def flashes(response) -> list[str]:
    return re.findall(r'<p class="flash (\w+)">([^<]*)</p>', response.content.decode())


def host_rows(page: str) -> list[str]:
    return re.findall(r'<td><a href="/clc/hosts/([0-9a-f:]{17})/edit/">', page)


# Access


@pytest.mark.parametrize("method, path", [("get", "/clc/hosts/"), ("get", "/clc/hosts/servers/"),
                                          ("get", f"/clc/hosts/{MAC}/edit/"), ("post", f"/clc/hosts/{MAC}/wake/"),
                                          ("post", f"/clc/hosts/{MAC}/poweroff/"),
                                          ("post", f"/clc/hosts/{MAC}/delete/"),
                                          ("post", "/clc/hosts/servers/nc/pc-12/wake/"),
                                          ("post", "/clc/hosts/servers/nc/pc-12/poweroff/")])
def test_the_pages_are_for_staff_only(client, pc, packets, method, path):
    response = getattr(client, method)(path)
    assert response.status_code == 302 and "/login/" in response["Location"]
    client.force_login(get_user_model().objects.create_user("pupil"))
    assert getattr(client, method)(path).status_code == 403
    assert Host.objects.filter(mac=MAC).exists()
    assert packets == []


def test_the_console_links_to_the_hosts_page(staff):
    assert 'href="/clc/hosts/">Hosts</a>' in staff.get("/clc/").content.decode()


# The list of classroom PCs


def test_the_list_shows_each_pc_with_its_record_and_the_node_it_runs(staff, pc):
    group = OwnerGroup.objects.create(name="maths", path="edu.school.maths")
    Host.objects.filter(pk=pc.pk).update(owner_group=group, state="offline")
    Server.objects.create(role="nc", name="pc-12", ip="10.0.9.12", cluster="cluster1", state="stopped")
    Host.objects.create(name="pc-13", mac="52:54:00:00:00:13", ip="10.0.9.13", cluster="cluster1")
    page = staff.get("/clc/hosts/").content.decode()
    for text in ("pc-12", MAC, "10.0.9.12", "cluster1", "Room 1", "edu.school.maths", 'class="state offline"',
                 'class="state stopped">Stopped', "never", f'action="/clc/hosts/{MAC}/wake/"',
                 f'action="/clc/hosts/{MAC}/poweroff/"', "return confirm('Power off pc\\u002D12?"):
        assert text in page
    assert host_rows(page) == [MAC, "52:54:00:00:00:13"]


@pytest.mark.parametrize("query", ["pc-13", "52:54:00:00:00:13", "10.0.9.13", "library", "LIBRARY"])
def test_search_finds_pcs_by_name_mac_ip_or_location(staff, pc, query):
    Host.objects.create(name="pc-13", mac="52:54:00:00:00:13", ip="10.0.9.13", cluster="cluster1", location="Library")
    assert host_rows(staff.get("/clc/hosts/", {"q": query}).content.decode()) == ["52:54:00:00:00:13"]


def test_the_state_filter_narrows_the_list_and_an_unknown_one_is_ignored(staff, pc):
    Host.objects.create(name="pc-13", mac="52:54:00:00:00:13", ip="10.0.9.13", cluster="cluster1", state="offline")
    assert host_rows(staff.get("/clc/hosts/", {"state": "offline"}).content.decode()) == ["52:54:00:00:00:13"]
    page = staff.get("/clc/hosts/", {"state": "'; drop table"}).content.decode()
    assert len(host_rows(page)) == 2
    assert "No host matches." in staff.get("/clc/hosts/", {"q": "nothing-like-it"}).content.decode()


def test_the_list_shows_25_a_page_and_keeps_the_search_across_pages(staff):
    for number in range(30):
        Host.objects.create(name=f"pc-{number:02d}", mac=f"52:54:00:00:01:{number:02x}", ip=f"10.0.9.{number + 20}",
                            cluster="cluster1")
    Host.objects.create(name="other", mac="52:54:00:00:02:00", ip="10.0.8.1", cluster="cluster1")
    first = staff.get("/clc/hosts/", {"q": "pc-"}).content.decode()
    assert len(host_rows(first)) == 25 and "Page 1 of 2" in first
    assert "?q=pc-&amp;page=2" in first
    assert len(host_rows(staff.get("/clc/hosts/", {"q": "pc-", "page": 2}).content.decode())) == 5


def test_an_empty_list_says_how_pcs_appear(staff):
    assert "they appear when they start and register" in staff.get("/clc/hosts/").content.decode()


# Editing and deleting


def test_editing_saves_location_owner_group_and_flags(staff, pc):
    group = OwnerGroup.objects.create(name="maths", path="edu.school.maths")
    page = staff.get(f"/clc/hosts/{MAC}/edit/").content.decode()
    assert "10.0.9.12" in page and 'name="location"' in page
    response = staff.post(f"/clc/hosts/{MAC}/edit/", {"location": "Lab 2", "owner_group": group.pk,
                                                      "auto_sync": "on", "is_pad": "on"}, follow=True)
    assert ("success", "pc-12 saved.") in flashes(response)
    pc.refresh_from_db()
    assert (pc.location, pc.owner_group, pc.auto_sync, pc.auto_poweroff, pc.offline_enabled, pc.is_pad) == (
        "Lab 2", group, True, False, False, True)


def test_a_location_with_control_characters_is_refused_on_the_form(staff, pc):
    response = staff.post(f"/clc/hosts/{MAC}/edit/", {"location": "Lab\x072"})
    assert response.status_code == 200
    assert "may not contain control characters" in response.content.decode()
    pc.refresh_from_db()
    assert pc.location == "Room 1"


@pytest.mark.parametrize("mac", ["52:54:00:99:99:99", "not-a-mac", "52:54:00:3c:0f:7e;reboot"])
def test_an_unknown_or_malformed_mac_is_a_404(staff, pc, mac):
    assert staff.get(f"/clc/hosts/{mac}/edit/").status_code == 404
    assert staff.post(f"/clc/hosts/{mac}/wake/").status_code == 404


def test_deleting_a_pc_says_it_comes_back_when_it_next_starts(staff, pc):
    response = staff.post(f"/clc/hosts/{MAC}/delete/", follow=True)
    assert ("success", f"pc-12 ({MAC}) deleted; it is added again when it next starts.") in flashes(response)
    assert not Host.objects.exists()


# Wake


def test_wake_sends_the_packet_through_the_cluster_controller_and_says_so(staff, pc, controller, packets):
    response = staff.post(f"/clc/hosts/{MAC}/wake/", {"next": "/clc/hosts/?q=pc&page=1"})
    assert (response.status_code, response["Location"]) == (302, "/clc/hosts/?q=pc&page=1")
    assert packets == [(MAC, "255.255.255.255")]
    assert ("success", f"Magic packet for pc-12 ({MAC}) sent by cluster controller cc-1 to 255.255.255.255; it "
                       "shows online once it has started.") in flashes(staff.get("/clc/hosts/"))


def test_wake_without_an_online_cluster_controller_says_why(staff, pc, packets):
    response = staff.post(f"/clc/hosts/{MAC}/wake/", follow=True)
    assert ("error", "pc-12 was not woken: cluster &#x27;cluster1&#x27; of host pc-12 has no online cluster "
                     "controller to send the magic packet on its LAN") in flashes(response)
    assert packets == []


@pytest.mark.parametrize("target", ["https://elsewhere.example/", "//elsewhere.example/", "javascript:alert(1)"])
def test_after_an_action_the_console_never_sends_the_browser_to_another_site(staff, pc, target):
    response = staff.post(f"/clc/hosts/{MAC}/wake/", {"next": target})
    assert response["Location"] == "/clc/hosts/"


# Power off


def test_power_off_goes_through_the_cc_to_the_node_which_reports_stopping_and_runs_its_command(
        staff, pc, node, marker):
    response = staff.post(f"/clc/hosts/{MAC}/poweroff/", follow=True)
    assert ("success", "pc-12 is asked to power off.") in flashes(response)
    # The node's task, as its worker runs it: the test host plays pc-12, whose CC it is too.
    trusted(own_key(), "cc")
    heartbeat = HeartbeatPublisher("nc", django_settings.EDUCLOUD, get_bus(django_settings.EDUCLOUD.bus_url))
    [result] = run_queued("pc-12", heartbeat, wait=5)
    assert result.state == "SUCCESS"
    assert marker.read_text() == "powered off\n"
    assert CommandRecord.objects.get(op="host/poweroff").done_at is not None


def test_power_off_of_a_pc_without_a_node_controller_says_why(staff, pc, controller, marker):
    response = staff.post(f"/clc/hosts/{MAC}/poweroff/", follow=True)
    assert ("error", "pc-12 was not powered off: host pc-12 cannot be powered off from here: it runs no node "
                     "controller registered with the cloud") in flashes(response)


def test_power_off_of_an_offline_pc_says_why(staff, pc, node):
    Server.objects.filter(pk=node.pk).update(state="offline")
    response = staff.post(f"/clc/hosts/{MAC}/poweroff/", follow=True)
    assert ("error", "pc-12 was not powered off: host pc-12 is offline: there is nothing to power off") in flashes(
        response)


# Servers


def test_the_servers_page_lists_servers_with_the_actions_their_role_offers(staff):
    Server.objects.create(role="nc", name="nc-1", ip="10.0.9.2", cluster="cluster1", mac="52:54:00:00:01:02")
    Server.objects.create(role="sc", name="sc-1", ip="10.0.9.3", cluster="cluster1")
    Server.objects.create(role="walrus", name="store", ip="10.0.0.2", cluster="cluster1", state="offline")
    page = staff.get("/clc/hosts/servers/").content.decode()
    for text in ("Node controller", "nc-1", "52:54:00:00:01:02", "Storage controller", "sc-1", "store",
                 'class="state offline"'):
        assert text in page
    assert re.findall(r'action="/clc/hosts/servers/(\w+)/([\w-]+)/(\w+)/"', page) == [
        ("nc", "nc-1", "wake"), ("nc", "nc-1", "poweroff"), ("nc", "nc-1", "refresh"), ("nc", "nc-1", "drain"),
        ("nc", "nc-1", "forget"), ("sc", "sc-1", "wake"), ("sc", "sc-1", "refresh"), ("sc", "sc-1", "forget"),
        ("walrus", "store", "refresh"), ("walrus", "store", "forget")]
    filtered = staff.get("/clc/hosts/servers/", {"role": "walrus", "q": "sto"}).content.decode()
    assert "store" in filtered and "nc-1" not in filtered


def test_waking_and_powering_off_servers_from_their_page(staff, node, packets):
    Server.objects.create(role="sc", name="sc-1", ip="10.0.9.3", cluster="cluster1", mac="52:54:00:00:01:03")
    woken = staff.post("/clc/hosts/servers/sc/sc-1/wake/", follow=True)
    assert ("success", "Magic packet for sc:sc-1 (52:54:00:00:01:03) sent by cluster controller cc-1 to "
                       "255.255.255.255; it shows online once it has started.") in flashes(woken)
    assert packets == [("52:54:00:00:01:03", "255.255.255.255")]
    off = staff.post("/clc/hosts/servers/nc/pc-12/poweroff/", follow=True)
    assert ("success", "nc:pc-12 is asked to power off.") in flashes(off)
    refused = staff.post("/clc/hosts/servers/sc/sc-1/poweroff/", follow=True)
    assert ("error", "sc:sc-1 was not powered off: sc:sc-1 takes no commands; only node controllers can power their "
                     "machine off") in flashes(refused)
    assert staff.post("/clc/hosts/servers/nc/nc-404/wake/").status_code == 404
