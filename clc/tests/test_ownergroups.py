"""Owner-groups: the tree page (indentation, search), creating a group only inside one's authority, the permission
matrix (and that the rule follows it), deleting only what nothing uses, and the same through ``ownergroups/``."""

from __future__ import annotations

import html
import re

import pytest

from clc.tests.people import make_person
from luhyadb.choices import ResourceTypeChoices
from luhyadb.models import Host, Image, OwnerGroup

pytestmark = [pytest.mark.database, pytest.mark.django_db]
pytest_plugins = ["clc.tests.people_fixtures"]  # the groups and login fixtures

API = "/clc/api/1.0/ownergroups/"


def rows(page: str) -> list[tuple[str, str]]:
    """(path, depth) of each row of the tree."""
    return re.findall(r'<tr data-path="([^"]+)"><td class="tree" data-depth="(\d+)"', page)


def errors_of(page: str, field: str) -> list[str]:
    row = re.search(rf'<p id="row-{field}">(.*?)</p>', page, re.S)
    assert row, f"no row for {field}"
    return [html.unescape(text) for text in re.findall(r'<span class="error">(.*?)</span>', row[1], re.S)]


def granted(path: str) -> dict[str, set[str]]:
    group = OwnerGroup.objects.get(path=path)
    actions = ("read", "write", "execute", "create", "delete")
    return {row.resource_type: {action for action in actions if getattr(row, action)}
            for row in group.permissions.all()}


def create(client, path: str, name: str) -> str:
    """The create form's answer to a new class group at ``path``."""
    return client.post("/clc/groups/new/", {"path": path, "name": name, "kind": "class"}).content.decode()


@pytest.fixture
def school_admin(login):
    return login("head", "superadm", "edu.school")


# Pages.

def test_the_list_is_the_tree_of_the_authority_indented_by_depth(client, school_admin):
    OwnerGroup.objects.create(path="edu.school-annex", name="Annex")  # sorts between the school and its class
    OwnerGroup.objects.create(path="edu.school.class1.team-a", name="Team A")
    OwnerGroup.objects.create(path="edu.school.a-lab", name="A lab")
    assert rows(client.get("/clc/groups/").content.decode()) == [
        ("edu.school", "0"), ("edu.school.a-lab", "1"), ("edu.school.class1", "1"),
        ("edu.school.class1.team-a", "2")]


def test_the_root_administrator_sees_the_whole_tree(admin_client, groups):
    assert [path for path, _ in rows(admin_client.get("/clc/groups/").content.decode())] == [
        "edu", "edu.other", "edu.school", "edu.school.class1"]


def test_the_list_searches_name_path_and_description_and_shows_accounts_and_permissions(client, school_admin):
    OwnerGroup.objects.create(path="edu.school.lab", name="Computer lab", description="Room 12 PCs")
    assert [path for path, _ in rows(client.get("/clc/groups/?q=room 12").content.decode())] == ["edu.school.lab"]
    assert [path for path, _ in rows(client.get("/clc/groups/?q=CLASS").content.decode())] == ["edu.school.class1"]
    page = client.get("/clc/groups/?q=edu.school.lab").content.decode()
    assert '<span class="meta">none</span>' in page  # the new lab has no permission yet
    school_row = re.search(r'<tr data-path="edu.school">.*?</tr>', client.get("/clc/groups/").content.decode(), re.S)
    assert "<td>1</td>" in school_row[0] and "instance: read, write, execute, create, delete" in school_row[0]


def test_the_list_has_pages_of_25(client, school_admin):
    for number in range(30):
        OwnerGroup.objects.create(path=f"edu.school.room{number:02}", name=f"Room {number:02}")
    first = client.get("/clc/groups/").content.decode()
    assert len(rows(first)) == 25 and "Page 1 of 2" in first
    assert len(rows(client.get("/clc/groups/?page=2").content.decode())) == 7


def test_a_school_administrator_creates_a_group_inside_their_school_only(client, school_admin):
    assert 'value="edu.school."' in client.get("/clc/groups/new/").content.decode()
    response = client.post("/clc/groups/new/", {"path": "edu.school.class2", "name": "Class 2", "kind": "none",
                                                "description": ""})
    assert (response.status_code, response["Location"]) == (302, "/clc/groups/edu.school.class2/edit/")
    assert granted("edu.school.class2") == {}
    page = create(client, "edu.other.class9", "Class 9")
    assert "outside your authority" in errors_of(page, "path")[0]
    page = create(client, "edu.school.nowhere.deep", "Deep")
    assert errors_of(page, "path") == ["must lie below an existing owner-group (edu.school.nowhere does not exist)"]
    page = create(client, "edu.school.x y", "Bad")
    assert "is not an owner-group path" in errors_of(page, "path")[0]
    page = create(client, "edu.school.class3", "Class 1")
    assert errors_of(page, "name") == ["the name 'Class 1' is taken by another owner-group"]
    assert not OwnerGroup.objects.filter(path__in=["edu.other.class9", "edu.school.class3"]).exists()


def test_the_matrix_sets_each_types_actions_and_ticking_full_gives_all_five(client, school_admin):
    OwnerGroup.objects.create(path="edu.school.lab", name="Lab")
    page = client.get("/clc/groups/edu.school.lab/edit/").content.decode()
    assert page.count('type="checkbox"') == len(ResourceTypeChoices) * 6 and " checked" not in page
    response = client.post("/clc/groups/edu.school.lab/edit/", {
        "name": "Computer lab", "description": "room 12",
        "perm_instance_read": "on", "perm_instance_execute": "on", "perm_image_full": "on"})
    assert response.status_code == 302
    assert granted("edu.school.lab") == {"instance": {"read", "execute"},
                                         "image": {"read", "write", "execute", "create", "delete"}}
    group = OwnerGroup.objects.get(path="edu.school.lab")
    assert (group.name, group.description) == ("Computer lab", "room 12")
    page = client.get("/clc/groups/edu.school.lab/edit/").content.decode()
    assert 'name="perm_image_full" id="id_perm_image_full" checked' in page
    assert 'name="perm_instance_full" id="id_perm_instance_full">' in page


def test_unticking_one_action_of_a_full_row_keeps_the_other_four(client, school_admin):
    cells = {f"perm_instance_{action}": "on" for action in ("read", "write", "execute", "create", "full")}
    client.post("/clc/groups/edu.school.class1/edit/", {"name": "Class 1"} | cells)
    assert granted("edu.school.class1") == {"instance": {"read", "write", "execute", "create"}}


def test_the_rule_follows_the_matrix(client, login):
    login("designer", "poweruser", "edu.school.class1")
    assert client.get("/clc/images/").status_code == 200
    OwnerGroup.objects.get(path="edu.school.class1").permissions.filter(resource_type="image").update(read=False)
    assert client.get("/clc/images/").status_code == 403


def test_a_group_of_another_school_is_a_404_on_every_page_and_in_the_api(client, school_admin):
    for url in ("/clc/groups/edu.other/edit/", "/clc/groups/edu.other/delete/", "/clc/groups/edu/edit/"):
        assert client.get(url).status_code == 404, url
    assert client.post("/clc/groups/edu.other/delete/").status_code == 404
    assert client.get(f"{API}edu.other/").status_code == 404
    assert OwnerGroup.objects.filter(path="edu.other").exists()


def test_delete_is_refused_while_accounts_images_instances_or_hosts_use_the_group(client, school_admin, groups):
    make_person("pupil", "user", "edu.school.class1")
    Image.objects.create(image_id="img-0000abcd", name="Desk", owner_group=groups["edu.school.class1"])
    Host.objects.create(name="pc-1", mac="52:54:00:00:00:01", ip="10.0.0.1", cluster="c1",
                        owner_group=groups["edu.school.class1"])
    page = client.get("/clc/groups/edu.school.class1/delete/").content.decode()
    assert "1 account (pupil)" in page and "1 image (img-0000abcd)" in page and "1 host (pc-1)" in page
    response = client.post("/clc/groups/edu.school.class1/delete/", follow=True)
    assert "Not deleted: owner-group edu.school.class1 is in use by 1 account (pupil)" in html.unescape(
        response.content.decode())
    assert OwnerGroup.objects.filter(path="edu.school.class1").exists()


def test_a_group_with_sub_groups_is_not_deleted(client, school_admin):
    OwnerGroup.objects.create(path="edu.school.class1.team", name="Team")
    response = client.post("/clc/groups/edu.school.class1/delete/", follow=True)
    assert "1 sub-group (edu.school.class1.team)" in response.content.decode()


def test_an_unused_group_is_deleted_after_confirmation(client, school_admin):
    page = client.get("/clc/groups/edu.school.class1/delete/").content.decode()
    assert 'action="/clc/groups/edu.school.class1/delete/"' in page
    response = client.post("/clc/groups/edu.school.class1/delete/")
    assert (response.status_code, response["Location"]) == (302, "/clc/groups/")
    assert not OwnerGroup.objects.filter(path="edu.school.class1").exists()


def test_the_root_group_is_never_deleted(admin_client, groups):
    for path in ("edu.school.class1", "edu.school", "edu.other"):
        OwnerGroup.objects.get(path=path).delete()
    response = admin_client.post("/clc/groups/edu/delete/", follow=True)
    assert "the root owner-group holds the whole cloud" in response.content.decode()
    assert OwnerGroup.objects.filter(path="edu").exists()


def test_a_power_administrator_may_not_open_the_owner_group_pages(client, login):
    login("teacher", "poweradm", "edu.school")
    assert client.get("/clc/groups/").status_code == 403
    assert client.get("/clc/groups/edu.school/edit/").status_code == 403
    assert client.get(API).status_code == 403


# API.

def test_the_api_creates_a_group_with_nested_permissions_and_gets_it_by_path(client, school_admin):
    response = client.post(API, {"path": "edu.school.class2", "name": "Class 2",
                                 "permissions": {"instance": ["read", "execute"], "image": ["full"]}},
                           content_type="application/json")
    assert response.status_code == 201, response.json()
    assert response.json()["permissions"] == {"image": ["read", "write", "execute", "create", "delete"],
                                              "instance": ["read", "execute"]}
    fetched = client.get(f"{API}edu.school.class2/").json()
    assert (fetched["name"], fetched["accounts"], fetched["permissions"]["instance"]) == ("Class 2", 0,
                                                                                         ["read", "execute"])


def test_the_api_lists_and_searches_only_the_authority(client, school_admin):
    listed = client.get(API).json()
    assert [group["path"] for group in listed["results"]] == ["edu.school", "edu.school.class1"]
    assert [group["path"] for group in client.get(f"{API}?search=class").json()["results"]] == ["edu.school.class1"]


def test_the_api_refuses_a_path_outside_the_authority_with_a_403(client, school_admin):
    response = client.post(API, {"path": "edu.other.class9", "name": "Class 9"}, content_type="application/json")
    assert response.status_code == 403 and "outside your authority" in response.json()["detail"]


@pytest.mark.parametrize("body, field", [
    ({"path": "edu.school.c2", "name": "C2", "permissions": {"spaceship": ["read"]}}, "permissions"),
    ({"path": "edu.school.c2", "name": "C2", "permissions": {"image": ["fly"]}}, "permissions"),
    ({"path": "edu.school.c2", "name": "C2", "permissions": ["image"]}, "permissions"),
    ({"path": "edu.school..c2", "name": "C2"}, "path"),
    ({"path": "edu.school.C2", "name": "C2"}, "path"),
    ({"path": "edu.school.c2", "name": "C2; rm -rf"}, "name"),
    ({"path": "edu.school.c2"}, "name"),
    ({"path": "edu.school.class1", "name": "Again"}, "path"),
])
def test_the_api_names_the_bad_field_with_a_400(client, school_admin, body, field):
    response = client.post(API, body, content_type="application/json")
    assert response.status_code == 400 and field in response.json(), response.json()
    assert not OwnerGroup.objects.filter(path="edu.school.c2").exists()


def test_the_api_changes_name_and_permissions_but_never_the_path(client, school_admin):
    response = client.patch(f"{API}edu.school.class1/", {"name": "Class 1A", "permissions": {"task": ["read"]}},
                            content_type="application/json")
    assert response.status_code == 200 and response.json()["permissions"] == {"task": ["read"]}
    assert granted("edu.school.class1") == {"task": {"read"}}
    response = client.patch(f"{API}edu.school.class1/", {"path": "edu.school.renamed"},
                            content_type="application/json")
    assert response.status_code == 400 and "path" in response.json()


def test_the_api_deletes_an_unused_group_and_refuses_one_in_use_with_a_409(client, school_admin):
    make_person("pupil", "user", "edu.school.class1")
    response = client.delete(f"{API}edu.school.class1/")
    assert response.status_code == 409 and "1 account (pupil)" in response.json()["detail"]
    OwnerGroup.objects.create(path="edu.school.empty", name="Empty")
    assert client.delete(f"{API}edu.school.empty/").status_code == 204
    assert not OwnerGroup.objects.filter(path="edu.school.empty").exists()
