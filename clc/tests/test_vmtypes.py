"""VM types: everyone of the console reads them; only administrators of the root create, change and delete them,
on the pages and through ``vmtypes/``; a bad value is named; a type in use is not deleted."""

from __future__ import annotations

import html
import re

import pytest

from luhyadb.models import Image, Instance, VMType

pytestmark = [pytest.mark.database, pytest.mark.django_db]
pytest_plugins = ["clc.tests.people_fixtures"]  # the groups and login fixtures

API = "/clc/api/1.0/vmtypes/"
GOOD = {"name": "huge", "cpus": 16, "memory_mb": 32768, "disk_gb": 500}


def errors_of(page: str, field: str) -> list[str]:
    row = re.search(rf'<p id="row-{field}">(.*?)</p>', page, re.S)
    assert row, f"no row for {field}"
    return [html.unescape(text) for text in re.findall(r'<span class="error">(.*?)</span>', row[1], re.S)]


@pytest.fixture
def root_admin(login):
    return login("chief", "superadm", "edu")


@pytest.fixture
def used_small(groups):
    image = Image.objects.create(image_id="img-0000abcd", name="Desk", owner_group=groups["edu.school"],
                                 current_version=1)
    return Instance.objects.create(instance_id="ins-0000abcd", name="desk", kind="rvd", image=image,
                                   vm_type=VMType.objects.get(name="small"), owner_group=groups["edu.school"])


# Pages.

def test_the_list_shows_every_type_to_a_power_user_without_changes(client, login, used_small):
    login("designer", "poweruser", "edu.school.class1")
    page = client.get("/clc/vmtypes/").content.decode()
    for name in ("tiny", "small", "medium", "large", "xlarge"):
        assert f"<td>{name}</td>" in page, name
    assert "<td>1</td><td>1024</td><td>20</td><td>1</td>" in page  # small: 1 CPU, 1 GB, 20 GB, one instance
    assert "/clc/vmtypes/new/" not in page and "/edit/" not in page


def test_a_root_administrator_creates_changes_and_deletes_a_type_on_the_pages(client, root_admin):
    page = client.get("/clc/vmtypes/").content.decode()
    assert 'href="/clc/vmtypes/new/"' in page and 'href="/clc/vmtypes/small/edit/"' in page
    response = client.post("/clc/vmtypes/new/", GOOD)
    assert (response.status_code, response["Location"]) == (302, "/clc/vmtypes/")
    assert VMType.objects.filter(**GOOD).exists()
    response = client.post("/clc/vmtypes/huge/edit/", GOOD | {"name": "giant", "cpus": 32})
    assert response.status_code == 302
    assert VMType.objects.get(name="giant").cpus == 32
    assert 'action="/clc/vmtypes/giant/delete/"' in client.get("/clc/vmtypes/giant/delete/").content.decode()
    assert client.post("/clc/vmtypes/giant/delete/").status_code == 302
    assert not VMType.objects.filter(name="giant").exists()


def test_the_form_names_each_bad_value(client, root_admin):
    page = client.post("/clc/vmtypes/new/", GOOD | {"name": "Big One", "cpus": 0}).content.decode()
    assert "is not a valid name" in errors_of(page, "name")[0]
    assert errors_of(page, "cpus") == ["Ensure this value is greater than or equal to 1."]
    page = client.post("/clc/vmtypes/new/", GOOD | {"name": "small"}).content.decode()
    assert errors_of(page, "name") == ["a VM type 'small' exists already"]
    page = client.post("/clc/vmtypes/small/edit/", GOOD | {"name": "small", "memory_mb": 8}).content.decode()
    assert errors_of(page, "memory_mb") == ["Ensure this value is greater than or equal to 64."]
    assert not VMType.objects.filter(name__in=["huge", "Big One"]).exists()


def test_a_type_in_use_is_not_deleted_and_the_page_says_by_what(client, root_admin, used_small):
    assert "instances use it (ins-0000abcd)" in client.get("/clc/vmtypes/small/delete/").content.decode()
    response = client.post("/clc/vmtypes/small/delete/", follow=True)
    assert "Not deleted: VM type small is used by 1 instance (ins-0000abcd)" in html.unescape(
        response.content.decode())
    assert VMType.objects.filter(name="small").exists()


def test_a_school_administrator_may_read_but_not_change_types(client, login):
    login("head", "superadm", "edu.school")
    assert client.get("/clc/vmtypes/").status_code == 200
    for url in ("/clc/vmtypes/new/", "/clc/vmtypes/small/edit/", "/clc/vmtypes/small/delete/"):
        assert client.get(url).status_code == 403, url
    assert client.post("/clc/vmtypes/new/", GOOD).status_code == 403
    assert client.post("/clc/vmtypes/small/delete/").status_code == 403
    assert not VMType.objects.filter(name="huge").exists() and VMType.objects.filter(name="small").exists()


def test_an_unknown_type_is_a_404(client, root_admin):
    assert client.get("/clc/vmtypes/nothing/edit/").status_code == 404


# API.

def test_the_api_lists_and_gets_types_for_a_power_user(client, login):
    login("designer", "poweruser", "edu.school.class1")
    listed = client.get(API).json()
    assert listed["count"] == 5 and listed["results"][0] == {"name": "tiny", "cpus": 1, "memory_mb": 256,
                                                            "disk_gb": 1}
    assert client.get(f"{API}medium/").json()["memory_mb"] == 2048


def test_the_api_creates_changes_and_deletes_a_type_for_the_root(client, root_admin):
    response = client.post(API, GOOD, content_type="application/json")
    assert (response.status_code, response.json()) == (201, GOOD)
    response = client.patch(f"{API}huge/", {"disk_gb": 750}, content_type="application/json")
    assert (response.status_code, response.json()["disk_gb"]) == (200, 750)
    assert client.put(f"{API}huge/", GOOD | {"name": "giant"}, content_type="application/json").status_code == 200
    assert client.delete(f"{API}giant/").status_code == 204
    assert not VMType.objects.filter(name__in=["huge", "giant"]).exists()


@pytest.mark.parametrize("field, value", [("name", "Big One"), ("name", "small"), ("cpus", 0), ("cpus", "many"),
                                          ("memory_mb", 10), ("disk_gb", 10**6)])
def test_the_api_names_the_bad_field_with_a_400(client, root_admin, field, value):
    response = client.post(API, GOOD | {field: value}, content_type="application/json")
    assert response.status_code == 400 and field in response.json(), response.json()
    assert not VMType.objects.filter(name="huge").exists()


def test_the_api_refuses_changes_by_a_school_administrator(client, login):
    login("head", "superadm", "edu.school")
    assert client.post(API, GOOD, content_type="application/json").status_code == 403
    assert client.patch(f"{API}small/", {"cpus": 64}, content_type="application/json").status_code == 403
    assert client.delete(f"{API}small/").status_code == 403
    assert VMType.objects.get(name="small").cpus == 1


def test_the_api_refuses_to_delete_a_type_in_use_with_a_409(client, root_admin, used_small):
    response = client.delete(f"{API}small/")
    assert response.status_code == 409 and "ins-0000abcd" in response.json()["detail"]


def test_a_student_reads_no_type(client, login):
    login("pupil", "user", "edu.school.class1")
    assert client.get("/clc/vmtypes/").status_code == 403
    assert client.get(API).status_code == 403
