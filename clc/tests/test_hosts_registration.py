"""Classroom PCs add themselves when they power on: a registration sent to their CC appears on the CLC as an online
host, in the database, the status API and the hosts API; silence makes it offline, and registering again (the next
start) makes it online again everywhere, and offline once more after the next silence."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.core.cache import cache

from clc.services.status import StatusFolder, host_key
from luhyaapi.client import RemoteError, RoleClient
from luhyaapi.messages import HostStatus
from luhyadb.models import Host
from tests.keys import enrolled_key

pytestmark = [pytest.mark.database, pytest.mark.django_db(transaction=True)]

MAC = "52:54:00:3c:0f:7e"
REGISTRATION = {"name": "pc-12", "ip": "10.0.9.12", "mac": MAC, "cluster": "cluster1", "heartbeat_seconds": 5,
                "memory_mb": 8192, "disk_mb": 250000}


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def pc(live_server, cloud_at):
    """A classroom PC's signed client to its cluster controller (this test server's CC, passing it on to the
    CLC, also this server)."""
    cloud_at(live_server.url)
    cache.clear()
    return RoleClient(live_server.url, enrolled_key("pc-12", "pc", mac=MAC))


@pytest.fixture
def staff(client):
    client.force_login(get_user_model().objects.create_user("boss", is_staff=True, is_superuser=True))
    return client


def states(staff) -> tuple[str, str, str]:
    """The PC's state as the database, the status API and the hosts API give it."""
    status = staff.get("/clc/api/1.0/status/").json()
    (from_status,) = [host["state"] for host in status["hosts"] if host["mac"] == MAC]
    return Host.objects.get(mac=MAC).state, from_status, staff.get(f"/clc/api/1.0/hosts/{MAC}/").json()["state"]


def test_a_pc_registering_with_its_cc_appears_on_the_clc_online(pc, staff):
    answer = pc.post("/cc/api/1.0/register/host/", REGISTRATION)
    assert answer == {"name": "pc-12", "mac": MAC}
    host = Host.objects.get(mac=MAC)
    assert (host.name, host.ip, host.cluster, host.memory_mb, host.heartbeat_seconds) == (
        "pc-12", "10.0.9.12", "cluster1", 8192, 5)
    assert host.last_seen is not None
    assert states(staff) == ("online", "online", "online")
    assert "pc-12" in staff.get("/clc/hosts/").content.decode()


def test_a_pc_of_another_cluster_is_refused_by_the_cc_and_not_added(pc):
    with pytest.raises(RemoteError) as error:
        pc.post("/cc/api/1.0/register/host/", REGISTRATION | {"cluster": "elsewhere"})
    assert error.value.status == 409
    assert not Host.objects.exists()


@pytest.mark.parametrize("field, value", [("mac", "52:54:00:3c:0f:7e;reboot"), ("name", "PC 12; reboot"),
                                          ("heartbeat_seconds", 0)])
def test_a_bad_registration_is_a_400_naming_the_field(pc, field, value):
    with pytest.raises(RemoteError) as error:
        pc.post("/cc/api/1.0/register/host/", REGISTRATION | {field: value})
    assert (error.value.status, field in error.value.detail) == (400, True)
    assert not Host.objects.exists()


def test_a_pc_that_starts_again_after_going_silent_is_online_again_everywhere_and_offline_after_silence(pc, staff):
    clock = Clock()
    folder = StatusFolder(missed_heartbeats=3, db_touch_seconds=60, clock=clock)
    pc.post("/cc/api/1.0/register/host/", REGISTRATION)
    # Two minutes ago it heartbeated (so the status cache holds its report), then it was switched off and fell silent.
    clock.now = Host.objects.get(mac=MAC).last_seen.timestamp() - 120
    folder.fold([HostStatus(name="pc-12", ip="10.0.9.12", mac=MAC, cluster="cluster1", interval=5, seq=1)])
    clock.now += 16
    assert folder.sweep() == [host_key(MAC)]
    assert states(staff) == ("offline", "offline", "offline")

    # Switched on again: it registers, and nothing cached from before says otherwise.
    pc.post("/cc/api/1.0/register/host/", REGISTRATION | {"ip": "10.0.9.13"})
    assert states(staff) == ("online", "online", "online")
    assert Host.objects.get(mac=MAC).ip == "10.0.9.13"

    # The status daemon learns of the new start on its next refresh, and notices the next silence.
    clock.now = Host.objects.get(mac=MAC).last_seen.timestamp()
    folder.refresh()
    assert folder.sweep() == []
    clock.now += 16
    assert folder.sweep() == [host_key(MAC)]
    assert states(staff) == ("offline", "offline", "offline")


def test_a_deleted_pc_is_added_again_when_it_next_registers(pc, staff):
    pc.post("/cc/api/1.0/register/host/", REGISTRATION)
    Host.objects.filter(mac=MAC).update(location="Room 1")
    assert staff.delete(f"/clc/api/1.0/hosts/{MAC}/").status_code == 204
    pc.post("/cc/api/1.0/register/host/", REGISTRATION)
    host = Host.objects.get(mac=MAC)
    assert (host.state, host.location) == ("online", "")


def test_registering_again_keeps_what_the_administrator_set(pc):
    pc.post("/cc/api/1.0/register/host/", REGISTRATION)
    Host.objects.filter(mac=MAC).update(location="Room 1", auto_poweroff=True)
    renamed = RoleClient(pc.base_url, enrolled_key("pc-12b", "pc", mac=MAC))  # a new name is a new enrolment
    renamed.post("/cc/api/1.0/register/host/", REGISTRATION | {"name": "pc-12b"})
    host = Host.objects.get(mac=MAC)
    assert (host.name, host.location, host.auto_poweroff) == ("pc-12b", "Room 1", True)


@pytest.mark.parametrize("route, body", [
    ("register/host/", REGISTRATION),
    ("register/server/", {"role": "cc", "name": "cc-9", "cluster": "cluster9", "heartbeat_seconds": 5,
                          "capacity": {"cpus": 0.0, "memory_mb": 0, "disk_mb": 0}})])
@pytest.mark.parametrize("ip", ["", "999.1.1.1"])
def test_a_registration_without_an_ip_address_is_a_400_naming_ip_not_a_server_error(signed_client, route, body, ip):
    response = signed_client.post(f"/clc/api/1.0/{route}", body | {"ip": ip})
    assert response.status_code == 400, response.content[:300]
    assert list(response.json()) == ["ip"]


def test_a_registration_with_capacity_past_the_database_column_is_a_400_naming_it(signed_client):
    server = {"role": "cc", "name": "cc-9", "ip": "10.0.9.1", "cluster": "cluster9", "heartbeat_seconds": 5,
              "capacity": {"cpus": 1, "memory_mb": 2**63, "disk_mb": 0}}
    response = signed_client.post("/clc/api/1.0/register/server/", server)
    assert response.status_code == 400
    assert list(response.json()) == ["capacity.memory_mb"]
