"""The first hour of a new school administrator (issue 13): a new owner-group starts with the permissions of its
kind, a refusal says which permission is missing and who can grant it, students are sent to the portal, the
Instances list offers New only to who may create, the Accounts page's empty state does not deny the first
administrator, and every host serves its icon."""

from __future__ import annotations

import html

import pytest

from clc.tests.people import make_person
from luhyadb.models import OwnerGroup, OwnerGroupPermission

pytestmark = [pytest.mark.database, pytest.mark.django_db]
pytest_plugins = ["clc.tests.people_fixtures"]  # the groups and login fixtures

API = "/clc/api/1.0/ownergroups/"
EVERY = {"read", "write", "execute", "create", "delete"}
# What each kind of new group may do, restated here from docs/authorization.md (not read from the service).
PRESETS = {
    "class": {"instance": {"read", "execute"}, "pool": {"read", "execute"}, "share": {"read"}},
    "teachers": {"image": {"read", "write", "execute", "create"}, "instance": EVERY, "pool": EVERY, "task": {"read"},
                 "vmtype": {"read"}, "share": {"read", "write"}, "volume": EVERY},
    "school": {"image": EVERY, "instance": EVERY, "pool": EVERY, "host": EVERY, "account": EVERY,
               "ownergroup": EVERY, "task": {"read"}, "vmtype": {"read"}, "share": EVERY, "volume": EVERY},
    "none": {},
}


def granted(path: str) -> dict[str, set[str]]:
    actions = ("read", "write", "execute", "create", "delete")
    return {row.resource_type: {action for action in actions if getattr(row, action)}
            for row in OwnerGroupPermission.objects.filter(owner_group__path=path)}


@pytest.fixture
def school_admin(login):
    return login("head", "superadm", "edu.school")


# New owner-groups and their kinds.

def test_the_create_form_offers_the_kinds_with_class_chosen(client, school_admin):
    page = client.get("/clc/groups/new/").content.decode()
    assert '<select name="kind"' in page
    for kind in PRESETS:
        assert f'<option value="{kind}"' in page
    assert '<option value="class" selected>' in page


def test_a_class_group_made_in_the_form_lets_its_student_open_the_portal(client, school_admin):
    response = client.post("/clc/groups/new/", {"path": "edu.school.class2", "name": "Class 2", "kind": "class"})
    assert (response.status_code, response["Location"]) == (302, "/clc/groups/edu.school.class2/edit/")
    assert granted("edu.school.class2") == PRESETS["class"]
    pupil = make_person("pupil", "user", "edu.school.class2")
    client.force_login(pupil.user)
    assert client.get("/portal/").status_code == 200


@pytest.mark.parametrize("kind", PRESETS)
def test_each_kind_presets_its_permissions_through_the_api(client, school_admin, kind):
    response = client.post(API, {"path": f"edu.school.{kind}", "name": f"The {kind}", "kind": kind},
                           content_type="application/json")
    assert response.status_code == 201, response.content
    assert granted(f"edu.school.{kind}") == PRESETS[kind]
    assert {key: set(value) for key, value in response.json()["permissions"].items()} == PRESETS[kind]


def test_a_group_created_without_kind_or_permissions_is_a_class(client, school_admin):
    response = client.post(API, {"path": "edu.school.class7", "name": "Class 7"}, content_type="application/json")
    assert response.status_code == 201
    assert granted("edu.school.class7") == PRESETS["class"]


def test_given_permissions_are_kept_exactly(client, school_admin):
    response = client.post(API, {"path": "edu.school.lab", "name": "Lab", "permissions": {"image": ["read"]}},
                           content_type="application/json")
    assert response.status_code == 201
    assert granted("edu.school.lab") == {"image": {"read"}}


@pytest.mark.parametrize("body", [{"kind": "class", "permissions": {"image": ["read"]}}, {"kind": "classroom"}])
def test_a_bad_kind_or_a_kind_with_permissions_is_a_400_naming_kind(client, school_admin, body):
    response = client.post(API, {"path": "edu.school.lab", "name": "Lab"} | body, content_type="application/json")
    assert response.status_code == 400
    assert list(response.json()) == ["kind"]
    assert not OwnerGroup.objects.filter(path="edu.school.lab").exists()


def test_a_kind_does_not_change_an_existing_group(client, school_admin):
    response = client.patch(f"{API}edu.school.class1/", {"kind": "none"}, content_type="application/json")
    assert response.status_code == 400 and list(response.json()) == ["kind"]
    assert granted("edu.school.class1")["instance"] == EVERY


# Refusals say what is missing and who can grant it.

@pytest.fixture
def pupil_without_rights(client, school_admin):
    client.post("/clc/groups/new/", {"path": "edu.school.class2", "name": "Class 2", "kind": "none"})
    pupil = make_person("pupil", "user", "edu.school.class2")
    client.force_login(pupil.user)
    return pupil


MISSING = ("you may not read instance records: your owner-group edu.school.class2 does not grant read on instance "
           "records; a super administrator of edu.school.class2 or of a group above it (edu.school, edu) can grant "
           "it on the Owner-groups page")


def test_the_portal_tells_a_student_which_permission_is_missing_and_who_can_grant_it(client, pupil_without_rights):
    response = client.get("/portal/")
    page = html.unescape(response.content.decode())
    assert response.status_code == 403
    assert "Y" + MISSING[1:] in page
    assert "eduCloud account" not in page  # they have one: that advice would send them the wrong way


def test_the_apis_403_body_says_which_permission_is_missing_and_who_can_grant_it(client, pupil_without_rights):
    response = client.get("/clc/api/1.0/instances/")
    assert (response.status_code, response.json()) == (403, {"detail": MISSING})


def test_a_login_without_an_account_is_still_told_to_get_one(client, groups):
    from django.contrib.auth import get_user_model

    client.force_login(get_user_model().objects.create_user("visitor"))
    page = html.unescape(client.get("/portal/").content.decode())
    assert "your login has no eduCloud account" in page and "give your login an eduCloud account" in page


# Students use the portal; New is for who may create.

def test_a_student_opening_the_console_instance_list_is_sent_to_the_portal(client, login):
    login("pupil", "user", "edu.school.class1")
    response = client.get("/clc/instances/")
    assert (response.status_code, response["Location"]) == (302, "/portal/")


@pytest.mark.parametrize("create, shown", [(False, False), (True, True)])
def test_the_instance_lists_new_button_is_shown_only_with_create_rights(client, login, groups, create, shown):
    OwnerGroup.objects.get(path="edu.school").permissions.filter(resource_type="instance").update(create=create)
    login("teacher", "poweradm", "edu.school")
    page = client.get("/clc/instances/").content.decode()
    assert ('href="/clc/instances/new/"' in page) is shown
    assert ("New instance" in page) is shown


# The Accounts page's empty state.

def test_the_first_administrator_is_not_told_there_is_no_account(admin_client, groups):
    page = html.unescape(admin_client.get("/clc/accounts/").content.decode())
    assert "No account yet" not in page
    assert "Only you so far: <strong>admin</strong> is the cloud's first administrator" in page


# The icon.

def test_every_host_serves_its_icon_to_anyone(client):
    response = client.get("/favicon.ico")
    assert response.status_code == 200
    assert response["Content-Type"] == "image/vnd.microsoft.icon"
    assert b"".join(response.streaming_content)[:4] == b"\x00\x00\x01\x00"  # the ICO header


# Every Delete of the console lands on its list, with a message.

def _records():
    """(the Delete's URL, the list it must land on, the message) for one record of each kind the console deletes."""
    from clc.services.networks import save_network
    from clc.tests.test_networks import GOOD
    from luhyadb.models import Host, Image, Instance, VMType

    edu = OwnerGroup.objects.get(path="edu")
    Image.objects.create(image_id="img-0000dead", name="Old image", owner_group=edu)
    Instance.objects.create(instance_id="ins-0000dead", name="Old desktop", kind="rvd", owner_group=edu,
                            image=Image.objects.get(image_id="img-0000dead"), vm_type=VMType.objects.get(name="tiny"),
                            mac="52:54:00:00:00:09")
    VMType.objects.create(name="huge", cpus=16, memory_mb=32768, disk_gb=500)
    save_network(GOOD)
    OwnerGroup.objects.create(path="edu.school.lab", name="Lab")
    make_person("leaver", "user", "edu.school")
    Host.objects.create(name="pc-9", mac="52:54:00:00:00:99", ip="10.0.0.9", cluster="c1")
    return [
        ("/clc/instances/ins-0000dead/delete/", "/clc/instances/", "Instance Old desktop (ins-0000dead) deleted."),
        ("/clc/images/img-0000dead/delete/", "/clc/images/", "Image Old image (img-0000dead) deleted."),
        ("/clc/vmtypes/huge/delete/", "/clc/vmtypes/", "VM type huge deleted."),
        ("/clc/networks/c1/delete/", "/clc/networks/", "Network settings of cluster c1 deleted."),
        ("/clc/groups/edu.school.lab/delete/", "/clc/groups/", "Owner-group edu.school.lab deleted."),
        ("/clc/accounts/leaver/delete/", "/clc/accounts/", "Account leaver deleted."),
        ("/clc/hosts/52:54:00:00:00:99/delete/", "/clc/hosts/", "pc-9 (52:54:00:00:00:99) deleted"),
    ]


def test_every_delete_of_the_console_lands_on_its_list_with_a_message(admin_client, groups):
    for url, listing, message in _records():
        response = admin_client.post(url)
        assert (url, response.status_code, response["Location"]) == (url, 302, listing)
        page = admin_client.get(listing)
        assert page.status_code == 200 and message in html.unescape(page.content.decode()), url
