"""Recording a classroom PC by hand before it first starts (API and page): it is offline until it registers, which
keeps what the administrator set; bad values name their field; a known MAC and a foreign owner-group are refused."""

from __future__ import annotations

import pytest

from clc.services.registry import register_host
from luhyaapi.messages import HostRegistration
from luhyadb.models import Host

pytestmark = [pytest.mark.database, pytest.mark.django_db]
pytest_plugins = ["clc.tests.people_fixtures"]

PC = {"name": "pc-21", "mac": "52:54:00:aa:00:21", "ip": "10.0.9.21", "cluster": "cluster1", "location": "Room 2",
      "owner_group": "edu.school.class1"}


def test_an_administrator_records_a_pc_which_stays_offline_until_it_starts_and_keeps_what_was_set(client, login):
    login("head", "poweradm", "edu.school")
    response = client.post("/clc/api/1.0/hosts/", PC, content_type="application/json")
    assert response.status_code == 201, response.content
    host = Host.objects.get(mac=PC["mac"])
    assert (host.state, host.last_seen, host.owner_group.path, host.location) == ("offline", None,
                                                                                    "edu.school.class1", "Room 2")
    register_host(HostRegistration(name="pc-21", mac=PC["mac"], ip="10.0.9.99", cluster="cluster1", memory_mb=4096,
                                   disk_mb=100000, heartbeat_seconds=60))
    host.refresh_from_db()
    assert (host.state, host.ip, host.memory_mb) == ("online", "10.0.9.99", 4096)
    assert (host.owner_group.path, host.location) == ("edu.school.class1", "Room 2")


@pytest.mark.parametrize("field, value", [("mac", "52:54:00:zz:00:21"), ("name", "PC 21; reboot"), ("ip", "10.0.9"),
                                          ("cluster", "../c1"), ("location", "Room\x002")])
def test_a_bad_value_is_a_400_naming_its_field_and_records_nothing(client, login, field, value):
    login("head", "poweradm", "edu.school")
    response = client.post("/clc/api/1.0/hosts/", PC | {field: value}, content_type="application/json")
    assert response.status_code == 400
    assert field in response.json()
    assert not Host.objects.exists()


def test_a_known_mac_is_refused_naming_mac_and_another_schools_group_is_a_403(client, login):
    login("head", "poweradm", "edu.school")
    assert client.post("/clc/api/1.0/hosts/", PC, content_type="application/json").status_code == 201
    again = client.post("/clc/api/1.0/hosts/", PC | {"name": "pc-22"}, content_type="application/json")
    assert again.status_code == 400 and "mac" in again.json()
    elsewhere = PC | {"mac": "52:54:00:aa:00:22", "owner_group": "edu.other"}
    assert client.post("/clc/api/1.0/hosts/", elsewhere, content_type="application/json").status_code == 403
    assert not Host.objects.filter(mac="52:54:00:aa:00:22").exists()


def test_a_student_may_not_record_pcs(client, login):
    login("pupil", "user", "edu.school")
    assert client.post("/clc/api/1.0/hosts/", PC, content_type="application/json").status_code == 403
    assert client.get("/clc/hosts/new/").status_code == 403


def test_the_page_records_a_pc_and_shows_a_bad_mac_next_to_its_field(client, login):
    login("head", "poweradm", "edu.school")
    group = Host._meta.get_field("owner_group").related_model.objects.get(path="edu.school.class1")
    form = {**PC, "owner_group": group.pk, "auto_sync": "on", "offline_enabled": "on"}
    bad = client.post("/clc/hosts/new/", form | {"mac": "nonsense"})
    assert bad.status_code == 200 and "is not a MAC address" in bad.content.decode()
    response = client.post("/clc/hosts/new/", form)
    assert (response.status_code, response["Location"]) == (302, "/clc/hosts/")
    assert Host.objects.get(mac=PC["mac"]).owner_group == group
    assert "pc-21" in client.get("/clc/hosts/").content.decode()
