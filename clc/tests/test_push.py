"""Pushing a local desktop to classroom PCs, from its console page and from the API: offered are the PCs the person
may execute on whose owner-group's kiosk offers the desktop; each chosen PC's node controller (registered with this
test server's CC under the PC's name) is asked to pull the desktop's image, one image task each; every refusal names
the PC and why, and then nothing is pushed."""

from __future__ import annotations

import re

import pytest

from clc.services import authz
from clc.services.push import push_targets
from clc.tests.machines import MAC
from clc.tests.people import make_person
from luhyadb.models import Host, Image, ImageVersion, Instance, OwnerGroup, OwnerGroupPermission, Server, VMType
from tests.commands import queued

pytestmark = [pytest.mark.database, pytest.mark.django_db(transaction=True)]
pytest_plugins = ["clc.tests.people_fixtures"]  # the groups and login fixtures

SHA = "ab" * 32
DESKTOP = "ins-0000d001"


@pytest.fixture
def desktop(groups) -> Instance:
    """A local desktop of edu.school whose image has a file (version 2 is current)."""
    image = Image.objects.create(image_id="img-0000d001", name="Maths", owner_group=groups["edu.school"],
                                 current_version=2)
    ImageVersion.objects.create(image=image, number=2, label="1.0.1", size_bytes=4096, sha256=SHA, format="qcow2")
    return Instance.objects.create(instance_id=DESKTOP, name="Maths lab", kind="lvd", image=image,
                                   vm_type=VMType.objects.get(name="tiny"), owner_group=groups["edu.school"],
                                   mac="52:54:00:aa:bb:cc")


@pytest.fixture
def school_pc(groups, pc, node) -> Host:
    """pc-12 in edu.school, online, running its node controller (registered with this server's CC, online)."""
    pc.owner_group = groups["edu.school"]
    pc.save(update_fields=["owner_group"])
    return pc


def add_pc(name: str, number: int, group: OwnerGroup | None, state: str = "online") -> Host:
    return Host.objects.create(name=name, mac=f"52:54:00:00:0d:{number:02x}", ip=f"10.0.9.{number}",
                               cluster="cluster1", owner_group=group, state=state)


@pytest.fixture
def other_pcs(groups) -> dict[str, Host]:
    """PCs that are not offered: one of the class below the desktop's group, one of another school, one without an
    owner-group; one of the root (it offers the desktop, but a school's administrator may not act on it); and one of
    the school that is offline."""
    return {"class": add_pc("pc-20", 20, groups["edu.school.class1"]),
            "other": add_pc("pc-21", 21, groups["edu.other"]),
            "none": add_pc("pc-22", 22, None),
            "root": add_pc("pc-23", 23, groups["edu"]),
            "offline": add_pc("pc-24", 24, groups["edu.school"], state="offline")}


def push(client, macs, insid: str = DESKTOP):
    return client.post(f"/clc/api/1.0/instances/{insid}/push/", {"hosts": macs}, content_type="application/json")


def checkboxes(page: str) -> dict[str, bool]:
    """The PCs the push page offers, by MAC: whether each may be chosen (its checkbox is not disabled)."""
    return {mac: "disabled" not in rest
            for mac, rest in re.findall(r'<input type="checkbox" name="hosts" value="([0-9a-f:]{17})"([^>]*)>', page)}


# Which PCs are offered


def test_the_page_offers_the_pcs_of_the_desktops_group_the_person_may_execute_on(client, login, desktop, school_pc,
                                                                                 other_pcs):
    login("head", "poweradm", "edu.school")
    page = client.get(f"/clc/instances/{DESKTOP}/push/")
    assert page.status_code == 200
    text = page.content.decode()
    assert checkboxes(text) == {MAC: True, other_pcs["offline"].mac: False}
    assert "it is offline" in text

    client.force_login(make_person("chief", "superadm", "edu").user)  # the root's administrator reaches pc-23 too
    assert set(checkboxes(client.get(f"/clc/instances/{DESKTOP}/push/").content.decode())) == {
        MAC, other_pcs["offline"].mac, other_pcs["root"].mac}


def test_a_pc_whose_group_does_not_let_its_pcs_use_desktops_is_not_offered(groups, desktop, school_pc):
    chief = authz.actor_for(make_person("chief", "superadm", "edu").user)
    assert [target.host.mac for target in push_targets(chief, desktop)] == [MAC]
    OwnerGroupPermission.objects.filter(owner_group=groups["edu.school"], resource_type="instance").update(
        read=False)
    assert push_targets(chief, desktop) == []  # the kiosk's rule: instance read and execute for the PC's group


def test_the_console_page_of_a_local_desktop_links_to_pushing_and_other_kinds_do_not(client, login, desktop):
    login("head", "poweradm", "edu.school")
    assert f'href="/clc/instances/{DESKTOP}/push/">Push to PCs</a>' in client.get(
        f"/clc/instances/{DESKTOP}/").content.decode()
    Instance.objects.filter(pk=desktop.pk).update(kind="rvd")
    assert "Push to PCs" not in client.get(f"/clc/instances/{DESKTOP}/").content.decode()
    answer = client.get(f"/clc/instances/{DESKTOP}/push/", follow=True)
    assert "only local desktops are pushed to classroom PCs" in answer.content.decode()


# Pushing


def test_pushing_from_the_page_asks_the_chosen_pcs_node_controller_to_pull_the_image_and_shows_its_task(
        client, login, desktop, school_pc):
    login("head", "poweradm", "edu.school")
    page = client.post(f"/clc/instances/{DESKTOP}/push/", {"hosts": [MAC]})
    assert page.status_code == 200
    text = page.content.decode()
    [tid] = re.findall(r'<a href="/clc/api/1\.0/tasks/([^/]+)/">', text)
    assert "1 classroom PC(s) pull its image now" in text
    [command] = queued("pc-12")
    assert (command.op, command.tid) == ("image/prepare", tid)
    assert command.paras == {"image_id": "img-0000d001", "version": 2, "sha256": SHA, "size": 4096}


def test_pushing_through_the_api_answers_each_pcs_task(client, login, desktop, school_pc):
    login("head", "poweradm", "edu.school")
    answer = push(client, [MAC.upper()])  # MACs are taken in any case
    assert answer.status_code == 202, answer.content
    [pushed] = answer.json()["pushed"]
    assert (pushed["host"], pushed["mac"], pushed["node"]) == ("pc-12", MAC, "pc-12")
    assert pushed["task"].endswith(f"/clc/api/1.0/tasks/{pushed['tid']}/")
    [command] = queued("pc-12")
    assert (command.op, command.tid, command.paras["image_id"]) == ("image/prepare", pushed["tid"], "img-0000d001")
    task = client.get(pushed["task"]).json()
    assert task["phase"] == "preparing"


# Refusals: each names the PC and why, and nothing is pushed


@pytest.mark.parametrize("which, reason", [
    ("offline", "pc-24: it is offline"),
    ("class", "pc-20: not a PC of this desktop's group: its owner-group (edu.school.class1) does not offer Maths lab"),
    ("other", "pc-21: not a PC of this desktop's group: its owner-group (edu.other) does not offer Maths lab"),
    ("none", "pc-22: not a PC of this desktop's group: its owner-group (none) does not offer Maths lab"),
])
def test_a_pc_that_cannot_take_the_desktop_is_refused_by_name_and_nothing_is_pushed(client, desktop, school_pc,
                                                                                    other_pcs, which, reason):
    client.force_login(make_person("chief", "superadm", "edu").user)
    refused = push(client, [MAC, other_pcs[which].mac])
    assert refused.status_code == 409, refused.content
    assert reason in refused.json()["detail"]
    assert list(refused.json()["reasons"]) == [other_pcs[which].name]
    assert queued("pc-12") == []


def test_a_pc_the_person_may_not_execute_on_is_a_403_and_one_they_may_not_see_a_404(client, login, groups, desktop,
                                                                                     school_pc, other_pcs):
    OwnerGroupPermission.objects.filter(owner_group=groups["edu.school"], resource_type="host").update(execute=False)
    login("head", "poweradm", "edu.school")
    refused = push(client, [MAC])
    assert refused.status_code == 403
    assert refused.json()["reasons"] == {"pc-12": "you may not execute on this PC"}
    unseen = push(client, [other_pcs["root"].mac])
    assert unseen.status_code == 404
    assert unseen.json()["reasons"] == {other_pcs["root"].mac: "no such classroom PC"}  # its name is not revealed
    assert push(client, ["52:54:00:ff:ff:ff"]).json()["reasons"] == {"52:54:00:ff:ff:ff": "no such classroom PC"}
    assert queued("pc-12") == []


def test_a_pc_without_an_online_node_controller_of_its_own_is_refused(client, login, desktop, school_pc):
    login("head", "poweradm", "edu.school")
    Server.objects.filter(role="nc", name="pc-12").update(state="offline")
    assert push(client, [MAC]).json()["reasons"] == {"pc-12": "its node controller is offline"}
    Server.objects.filter(role="nc", name="pc-12").update(state="online", mac="52:54:00:99:99:99")
    assert "has MAC 52:54:00:99:99:99" in push(client, [MAC]).json()["reasons"]["pc-12"]
    Server.objects.filter(role="nc", name="pc-12").delete()
    assert push(client, [MAC]).json()["reasons"] == {"pc-12": "it runs no node controller registered with the cloud"}
    assert queued("pc-12") == []


def test_the_page_shows_a_refusal_and_keeps_the_choice(client, login, desktop, school_pc):
    login("head", "poweradm", "edu.school")
    Host.objects.filter(pk=school_pc.pk).update(state="offline")
    page = client.post(f"/clc/instances/{DESKTOP}/push/", {"hosts": [MAC]}).content.decode()
    assert "Maths lab was pushed to no PC: pc-12: it is offline" in page
    assert checkboxes(page) == {MAC: False}
    assert "Nothing was pushed: choose at least one classroom PC" in client.post(
        f"/clc/instances/{DESKTOP}/push/", {}).content.decode()


@pytest.mark.parametrize("body, status", [({"hosts": []}, 400), ({"hosts": "52:54:00:3c:0f:7e"}, 400),
                                          ({"hosts": ["52:54:00:3c:0f:7e; reboot"]}, 400), ({}, 400)])
def test_a_malformed_list_of_pcs_is_a_400_naming_hosts(client, login, desktop, school_pc, body, status):
    login("head", "poweradm", "edu.school")
    answer = client.post(f"/clc/api/1.0/instances/{DESKTOP}/push/", body, content_type="application/json")
    assert answer.status_code == status
    assert "hosts" in answer.json()


def test_only_local_desktops_with_an_image_file_are_pushed(client, login, desktop, school_pc):
    login("head", "poweradm", "edu.school")
    Instance.objects.filter(pk=desktop.pk).update(kind="rvd")
    refused = push(client, [MAC])
    assert (refused.status_code, "only local desktops" in refused.json()["detail"]) == (409, True)
    Instance.objects.filter(pk=desktop.pk).update(kind="lvd")
    Image.objects.filter(pk=desktop.image.pk).update(current_version=3)
    refused = push(client, [MAC])
    assert (refused.status_code, "has no file yet" in refused.json()["detail"]) == (409, True)
    assert queued("pc-12") == []


def test_pushing_needs_execute_on_the_desktop(client, login, groups, desktop, school_pc):
    OwnerGroupPermission.objects.filter(owner_group=groups["edu.school"], resource_type="instance").update(
        execute=False)
    login("head", "poweradm", "edu.school")
    assert push(client, [MAC]).status_code == 403
    assert client.post(f"/clc/instances/{DESKTOP}/push/", {"hosts": [MAC]}).status_code == 403
    assert queued("pc-12") == []


def test_pushing_is_for_people_a_hosts_signed_call_is_refused(signed_client, desktop, school_pc):
    refused = signed_client.post(f"/clc/api/1.0/instances/{DESKTOP}/push/", {"hosts": [MAC]})
    assert (refused.status_code, refused.json()["detail"]) == (403, "this call is not for signed hosts")
    assert queued("pc-12") == []
