"""What the CLC makes of a node's booting and running reports: a booting instance is shown booting (its last run's
address gone), a running one with the guest's address on the admin's list and page, and one whose guest never
showed it is up as "Running, not answering" with a hint, on the admin's pages, in the API and on the student's
portal, until the node says it answers after all."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.core.cache import cache

from clc.services.status import StatusFolder
from luhyaapi.messages import InsStatus
from luhyadb.models import Account, Image, ImageVersion, Instance, OwnerGroup, OwnerGroupPermission, VMType

pytestmark = [pytest.mark.database, pytest.mark.django_db]

INSID = "ins-0000b007"
HINT = "the guest gave no sign of being up in time"


@pytest.fixture(autouse=True)
def _fresh_cache():
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def instance() -> Instance:
    """A remote desktop of a student (alice) in a school whose people may read and start instances, placed on
    nc-1, its previous run's address still on record."""
    OwnerGroup.objects.create(name="root", path="edu")
    group = OwnerGroup.objects.create(name="school", path="edu.school")
    OwnerGroupPermission.objects.create(owner_group=group, resource_type="instance", read=True, execute=True)
    image = Image.objects.create(image_id="img-0000abcd", name="Ubuntu desk", owner_group=group, current_version=1)
    ImageVersion.objects.create(image=image, number=1, label="1.0.0", size_bytes=1024, sha256="b" * 64,
                                format="qcow2")
    alice = get_user_model().objects.create_user("alice")
    Account.objects.create(user=alice, owner_group=group, role="user")
    return Instance.objects.create(
        instance_id=INSID, name="Maths desktop", kind="rvd", image=image, owner_group=group, assigned_to=alice,
        vm_type=VMType.objects.create(name="tiny", cpus=1, memory_mb=256, disk_gb=1), mac="52:54:00:00:b0:07",
        state="preparing", node="nc-1", cluster="c1", runs=2, guest_ip="10.0.2.99",
        console_url="vnc://10.0.0.5:6401")


def fold(**report) -> Instance:
    StatusFolder(missed_heartbeats=3, db_touch_seconds=60).fold(
        [InsStatus(insid=INSID, node="nc-1", seq=2, **report)])
    return Instance.objects.get(instance_id=INSID)


@pytest.fixture
def admin_pages(client):
    client.force_login(get_user_model().objects.create_user("boss", is_staff=True, is_superuser=True))

    def pages() -> str:
        return client.get("/clc/instances/").content.decode() + client.get(f"/clc/instances/{INSID}/").content.decode()

    return pages


def test_a_booting_instance_is_shown_booting_with_its_console_without_the_last_runs_address(instance, admin_pages):
    booting = fold(state="booting", vmstatus="started", console="vnc://10.0.0.5:6401")
    assert (booting.state, booting.guest_ip, booting.answering) == ("booting", "", True)
    pages = admin_pages()
    assert 'class="state booting">Booting<' in pages and "10.0.2.99" not in pages
    assert 'href="vnc://10.0.0.5:6401"' in pages, "the VM is started: its console shows what it does"


def test_a_running_guests_address_is_on_the_admins_list_and_page(instance, admin_pages):
    fold(state="booting")
    running = fold(state="running", vmstatus="running", guest_ip="10.0.2.15")
    assert (running.state, running.guest_ip, running.answering) == ("running", "10.0.2.15", True)
    pages = admin_pages()
    assert pages.count("10.0.2.15") == 2, "once on the list, once on the instance's page"
    assert 'class="state running">Running<' in pages and '<span id="not-answering" class="meta" hidden>' in pages


def test_a_guest_that_never_answered_is_running_not_answering_with_a_hint_everywhere(instance, admin_pages, client):
    stuck = fold(state="running", vmstatus="not answering", answering=False)
    assert (stuck.state, stuck.answering, stuck.state_text) == ("running", False, "Running, not answering")
    pages = admin_pages()
    assert pages.count('class="state running">Running, not answering<') == 2
    assert f'<span id="not-answering" class="meta">· its VM runs, but {HINT}' in pages
    api = client.get(f"/clc/api/1.0/instances/{INSID}/").json()
    assert (api["state"], api["answering"], api["state_text"]) == ("running", False, "Running, not answering")

    client.force_login(instance.assigned_to)
    (row,) = client.get("/portal/status/").json()["desktops"]
    assert row["state_label"] == "Running, not answering" and HINT in row["message"]
    assert "Running, not answering" in client.get("/portal/").content.decode()


def test_a_guest_that_answers_after_all_is_plain_running_again(instance):
    fold(state="running", vmstatus="not answering", answering=False)
    answering = fold(state="running", vmstatus="running", guest_ip="10.0.2.15")
    assert (answering.answering, answering.state_text, answering.guest_ip) == (True, "Running", "10.0.2.15")
