"""Accounts: pages and API to create, list (search, filters, pages), change, reset the password of and delete the
people of one's authority; the refusals that keep anyone from giving more than they hold; one's own password; the
navigation bar and front page by role; the error pages."""

from __future__ import annotations

import html
import re

import pytest
from django.contrib.auth import get_user_model
from django.test import Client, RequestFactory
from django.views.defaults import server_error

from clc.services import authz
from clc.services.accounts import AccountRefused, create_account
from clc.tests.people import PASSWORD, make_person
from luhyadb.models import Account, OwnerGroup

pytestmark = [pytest.mark.database, pytest.mark.django_db]
pytest_plugins = ["clc.tests.people_fixtures"]  # the groups and login fixtures

API = "/clc/api/1.0/accounts/"


def errors_of(page: str, field: str) -> list[str]:
    """The messages shown in the form row of ``field``."""
    row = re.search(rf'<p id="row-{field}">(.*?)</p>', page, re.S)
    assert row, f"no row for {field}"
    return [html.unescape(text) for text in re.findall(r'<span class="error">(.*?)</span>', row[1], re.S)]


def new_account(**changes) -> dict:
    return {"username": "pupil1", "first_name": "Ada", "last_name": "Lovelace", "email": "ada@school.example",
            "role": "user", "owner_group": "edu.school.class1", "is_active": "on", "password": "",
            "password2": ""} | changes


def usernames(page: str) -> list[str]:
    return re.findall(r'<tr><td><a href="/clc/accounts/([^/]+)/edit/">', page)


@pytest.fixture
def school_admin(login):
    return login("head", "superadm", "edu.school")


def can_log_in(username: str, password: str) -> bool:
    return Client().login(username=username, password=password)


# Pages: create, list, change, password, delete.

def test_an_account_is_created_from_the_page_with_a_given_password_and_can_log_in(client, school_admin):
    response = client.post("/clc/accounts/new/", new_account(password=PASSWORD, password2=PASSWORD))
    assert (response.status_code, response["Location"]) == (302, "/clc/accounts/")
    account = Account.objects.select_related("user", "owner_group").get(user__username="pupil1")
    assert (account.role, account.owner_group.path, account.user.email) == ("user", "edu.school.class1",
                                                                           "ada@school.example")
    assert not account.user.is_staff
    assert can_log_in("pupil1", PASSWORD)


def test_without_a_password_one_is_generated_and_shown_once(client, school_admin):
    response = client.post("/clc/accounts/new/", new_account(role="poweradm"))
    assert response.status_code == 200 and response["Cache-Control"] == "no-store"
    password = re.search(r'<code id="password">([^<]+)</code>', response.content.decode())[1]
    assert len(password) >= 16 and can_log_in("pupil1", password)
    assert password not in client.get("/clc/accounts/").content.decode()


def test_the_form_shows_a_taken_user_name_a_weak_password_and_a_mismatch_next_to_their_fields(client, school_admin):
    make_person("pupil1", "user", "edu.school")
    page = client.post("/clc/accounts/new/", new_account(password="abc", password2="abc")).content.decode()
    assert errors_of(page, "username") == ["the user name 'pupil1' is taken"]
    page = client.post("/clc/accounts/new/", new_account(username="pupil2", password="abc",
                                                         password2="abc")).content.decode()
    assert "too short" in " ".join(errors_of(page, "password"))
    page = client.post("/clc/accounts/new/", new_account(username="pupil2", password=PASSWORD,
                                                         password2=PASSWORD + "x")).content.decode()
    assert errors_of(page, "password2") == ["the two passwords differ"]
    assert not get_user_model().objects.filter(username="pupil2").exists()


def test_the_page_offers_only_owner_groups_within_the_authority_and_refuses_another(client, school_admin):
    page = client.get("/clc/accounts/new/").content.decode()
    assert 'value="edu.school.class1"' in page and 'value="edu.other"' not in page and 'value="edu"' not in page
    page = client.post("/clc/accounts/new/", new_account(owner_group="edu.other")).content.decode()
    assert errors_of(page, "owner_group")
    assert not get_user_model().objects.filter(username="pupil1").exists()


def test_the_list_shows_only_accounts_within_the_authority(client, school_admin):
    make_person("inclass", "user", "edu.school.class1")
    make_person("elsewhere", "user", "edu.other")
    make_person("rootadmin", "superadm", "edu")
    assert usernames(client.get("/clc/accounts/").content.decode()) == ["head", "inclass"]


def test_an_account_of_another_school_is_a_404_on_every_page_and_in_the_api(client, school_admin):
    make_person("elsewhere", "user", "edu.other")
    for url in ("/clc/accounts/elsewhere/edit/", "/clc/accounts/elsewhere/password/",
                "/clc/accounts/elsewhere/delete/"):
        assert client.get(url).status_code == 404, url
    assert client.post("/clc/accounts/elsewhere/delete/").status_code == 404
    assert client.get(f"{API}elsewhere/").status_code == 404
    assert client.delete(f"{API}elsewhere/").status_code == 404
    assert Account.objects.filter(user__username="elsewhere").exists()


def test_the_list_searches_user_name_name_and_e_mail_and_filters_by_role_and_owner_group(client, school_admin):
    make_person("amy", "user", "edu.school.class1", first_name="Amy", email="amy@x.example")
    make_person("bob", "poweruser", "edu.school.class1", last_name="Stone")
    make_person("cyd", "user", "edu.school", email="cyd@stone.example")
    assert usernames(client.get("/clc/accounts/?q=stone").content.decode()) == ["bob", "cyd"]
    assert usernames(client.get("/clc/accounts/?q=AMY").content.decode()) == ["amy"]
    assert usernames(client.get("/clc/accounts/?role=user").content.decode()) == ["amy", "cyd"]
    assert usernames(client.get("/clc/accounts/?group=edu.school.class1").content.decode()) == ["amy", "bob"]
    assert usernames(client.get("/clc/accounts/?role=user&group=edu.school").content.decode()) == ["cyd"]


def test_the_list_has_pages_of_25_that_keep_the_filters(client, school_admin):
    for number in range(30):
        make_person(f"pupil{number:02}", "user", "edu.school.class1")
    first = client.get("/clc/accounts/?role=user").content.decode()
    assert len(usernames(first)) == 25 and "Page 1 of 2" in first
    assert 'href="?role=user&amp;page=2"' in first
    second = client.get("/clc/accounts/?role=user&page=2").content.decode()
    assert usernames(second) == [f"pupil{number:02}" for number in range(25, 30)]


def test_an_account_is_changed_and_deactivated_from_the_page(client, school_admin):
    make_person("amy", "user", "edu.school.class1")
    response = client.post("/clc/accounts/amy/edit/", {"first_name": "Amy", "last_name": "", "email": "",
                                                       "role": "poweruser", "owner_group": "edu.school"})
    assert response.status_code == 302
    account = Account.objects.select_related("user", "owner_group").get(user__username="amy")
    assert (account.role, account.owner_group.path, account.user.first_name) == ("poweruser", "edu.school", "Amy")
    assert not account.user.is_active and not account.user.is_staff
    assert not can_log_in("amy", PASSWORD)
    assert "inactive" in client.get("/clc/accounts/").content.decode()


def test_nobody_demotes_moves_or_deactivates_themselves_on_the_page(client, school_admin):
    page = client.get("/clc/accounts/head/edit/").content.decode()
    assert "This is your own account" in page
    for change, field in (({"role": "poweradm"}, "role"), ({"owner_group": "edu.school.class1"}, "owner_group"),
                          ({"is_active": ""}, "is_active")):
        values = {"role": "superadm", "owner_group": "edu.school", "is_active": "on"} | change
        page = client.post("/clc/accounts/head/edit/", values).content.decode()
        assert errors_of(page, field), field
    account = Account.objects.select_related("owner_group", "user").get(user__username="head")
    assert (account.role, account.owner_group.path, account.user.is_active) == ("superadm", "edu.school", True)


def test_nobody_deletes_themselves(client, school_admin):
    assert "ask another administrator to delete it" in client.get("/clc/accounts/head/delete/").content.decode()
    response = client.post("/clc/accounts/head/delete/", follow=True)
    assert "you may not delete your own account" in response.content.decode()
    assert client.delete(f"{API}head/").status_code == 403
    assert Account.objects.filter(user__username="head").exists()


def test_an_account_is_deleted_after_confirmation(client, school_admin):
    make_person("amy", "user", "edu.school.class1")
    page = client.get("/clc/accounts/amy/delete/").content.decode()
    assert "Delete the account amy?" in page and 'action="/clc/accounts/amy/delete/"' in page
    assert Account.objects.filter(user__username="amy").exists()
    response = client.post("/clc/accounts/amy/delete/")
    assert (response.status_code, response["Location"]) == (302, "/clc/accounts/")
    assert not get_user_model().objects.filter(username="amy").exists()


def test_a_password_is_reset_to_a_given_one_or_a_generated_one(client, school_admin):
    make_person("amy", "user", "edu.school.class1")
    new = "another-long-phrase-42"
    response = client.post("/clc/accounts/amy/password/", {"password": new, "password2": new})
    assert response.status_code == 302 and can_log_in("amy", new)
    page = client.post("/clc/accounts/amy/password/", {"password": "", "password2": ""}).content.decode()
    generated = re.search(r'<code id="password">([^<]+)</code>', page)[1]
    assert can_log_in("amy", generated) and not can_log_in("amy", new)
    page = client.post("/clc/accounts/amy/password/", {"password": "123", "password2": "123"}).content.decode()
    assert errors_of(page, "password")


def test_a_power_administrator_may_not_open_the_accounts_pages(client, login):
    login("teacher", "poweradm", "edu.school")
    for url in ("/clc/accounts/", "/clc/accounts/new/", "/clc/accounts/teacher/edit/"):
        assert client.get(url).status_code == 403, url


# API.

def test_the_api_creates_an_account_and_returns_a_generated_password_once(client, school_admin):
    response = client.post(API, {"username": "pupil1", "role": "user", "owner_group": "edu.school.class1",
                                 "email": "ada@school.example"}, content_type="application/json")
    assert response.status_code == 201, response.json()
    body = response.json()
    assert (body["username"], body["role"], body["owner_group"], body["is_active"]) == (
        "pupil1", "user", "edu.school.class1", True)
    assert can_log_in("pupil1", body["generated_password"])
    fetched = client.get(f"{API}pupil1/").json()
    assert "password" not in fetched and "generated_password" not in fetched


def test_the_api_takes_a_given_password_and_never_shows_it(client, school_admin):
    response = client.post(API, {"username": "pupil1", "role": "user", "owner_group": "edu.school",
                                 "password": PASSWORD}, content_type="application/json")
    assert response.status_code == 201 and "generated_password" not in response.json()
    assert PASSWORD not in response.content.decode() and can_log_in("pupil1", PASSWORD)


@pytest.mark.parametrize("field, value", [("username", "no spaces allowed"), ("username", ""),
                                          ("email", "not-an-address"), ("role", "emperor"),
                                          ("owner_group", "edu.nowhere"), ("password", "short"),
                                          ("first_name", "tab\tinside")])
def test_the_api_names_the_bad_field_with_a_400(client, school_admin, field, value):
    body = {"username": "pupil1", "role": "user", "owner_group": "edu.school", "password": PASSWORD} | {field: value}
    response = client.post(API, body, content_type="application/json")
    assert response.status_code == 400 and field in response.json(), response.json()
    assert not get_user_model().objects.filter(username="pupil1").exists()


def test_the_api_lists_searches_and_filters_within_the_authority(client, school_admin):
    make_person("amy", "user", "edu.school.class1", email="amy@x.example")
    make_person("bob", "poweruser", "edu.school.class1")
    make_person("elsewhere", "user", "edu.other")
    listed = client.get(API).json()
    assert (listed["count"], [a["username"] for a in listed["results"]]) == (3, ["amy", "bob", "head"])
    assert [a["username"] for a in client.get(f"{API}?search=amy@").json()["results"]] == ["amy"]
    assert [a["username"] for a in client.get(f"{API}?role=poweruser").json()["results"]] == ["bob"]
    assert client.get(f"{API}?owner_group=edu.school").json()["count"] == 1
    assert "role" in client.get(f"{API}?role=emperor").json()


def test_the_api_changes_and_deletes_an_account_and_resets_its_password(client, school_admin):
    make_person("amy", "user", "edu.school.class1")
    response = client.patch(f"{API}amy/", {"role": "poweradm", "is_active": False}, content_type="application/json")
    assert response.status_code == 200 and (response.json()["role"], response.json()["is_active"]) == (
        "poweradm", False)
    assert client.patch(f"{API}amy/", {"username": "amelia"}, content_type="application/json").json() == {
        "username": ["a user name never changes; create another account instead"]}
    assert client.post(f"{API}amy/password/", {"password": "x"}, content_type="application/json").status_code == 400
    assert client.post(f"{API}amy/password/", {"password": "new-long-phrase-77"},
                       content_type="application/json").status_code == 204
    generated = client.post(f"{API}amy/password/", {}, content_type="application/json").json()["generated_password"]
    client.patch(f"{API}amy/", {"is_active": True}, content_type="application/json")
    assert can_log_in("amy", generated)
    assert client.delete(f"{API}amy/").status_code == 204
    assert not get_user_model().objects.filter(username="amy").exists()


def test_the_api_refuses_self_demotion_and_an_owner_group_outside_the_authority(client, school_admin):
    response = client.patch(f"{API}head/", {"role": "user"}, content_type="application/json")
    assert response.status_code == 403 and "your own role" in response.json()["detail"]
    response = client.post(API, {"username": "pupil1", "role": "user", "owner_group": "edu.other"},
                           content_type="application/json")
    assert response.status_code == 403 and "edu.other" in response.json()["detail"]
    assert Account.objects.get(user__username="head").role == "superadm"


def test_a_power_administrator_may_create_no_account_at_all(client, login):
    login("teacher", "poweradm", "edu.school")
    for body in ({"username": "boss", "role": "superadm", "owner_group": "edu.school"},
                 {"username": "pupil", "role": "user", "owner_group": "edu.other"},
                 {"username": "pupil", "role": "user", "owner_group": "edu.school"}):
        assert client.post(API, body, content_type="application/json").status_code == 403
    assert client.get(API).status_code == 403
    assert not Account.objects.filter(user__username__in=["boss", "pupil"]).exists()


def test_the_service_refuses_a_role_above_ones_own_and_a_group_outside_ones_authority(groups):
    teacher = authz.Actor(user_id=None, username="teacher", path="edu.school", role="poweradm",
                          grants={"account": authz.ALL})
    school = OwnerGroup.objects.get(path="edu.school")
    with pytest.raises(AccountRefused) as refused:
        create_account(teacher, username="boss", role="superadm", owner_group=school)
    assert (refused.value.status, refused.value.field) == (403, "role")
    head = authz.Actor(user_id=None, username="head", path="edu.school", role="superadm")
    with pytest.raises(AccountRefused) as refused:
        create_account(head, username="pupil", role="user", owner_group=OwnerGroup.objects.get(path="edu.other"))
    assert (refused.value.status, refused.value.field) == (403, "owner_group")
    assert not get_user_model().objects.filter(username__in=["boss", "pupil"]).exists()


def test_a_super_administrator_manages_no_peer_beside_them_but_those_of_deeper_groups(client, school_admin):
    deputy = make_person("deputy", "superadm", "edu.school")
    class_head = make_person("classhead", "superadm", "edu.school.class1")
    for response in (client.patch(f"{API}deputy/", {"is_active": False}, content_type="application/json"),
                     client.post(f"{API}deputy/password/", {}, content_type="application/json"),
                     client.delete(f"{API}deputy/")):
        assert response.status_code == 403 and "a peer of yours" in response.json()["detail"]
    deputy.user.refresh_from_db()
    assert deputy.user.is_active and can_log_in("deputy", PASSWORD)
    response = client.post(API, {"username": "deputy2", "role": "superadm", "owner_group": "edu.school"},
                           content_type="application/json")
    assert response.status_code == 403 and "would be a peer of yours" in str(response.json())
    assert client.patch(f"{API}classhead/", {"is_active": False}, content_type="application/json").status_code == 200
    class_head.user.refresh_from_db()
    assert not class_head.user.is_active


def test_a_root_super_administrator_manages_every_account_their_peers_included(client, login):
    login("root1", "superadm", "edu")
    make_person("root2", "superadm", "edu")
    assert client.patch(f"{API}root2/", {"is_active": False}, content_type="application/json").status_code == 200
    assert not get_user_model().objects.get(username="root2").is_active


# One's own account and password.

def test_anyone_logged_in_changes_their_own_password(client, groups):
    make_person("pupil", "user", "edu.school.class1")
    assert client.login(username="pupil", password=PASSWORD)
    page = client.get("/clc/password/").content.decode()
    assert "My account" in page and "edu.school.class1" in page
    new = "my-own-new-phrase-31"
    response = client.post("/clc/password/", {"old_password": PASSWORD, "new_password1": new, "new_password2": new})
    assert (response.status_code, response["Location"]) == (302, "/clc/password/")
    assert "Your password was changed." in client.get("/clc/password/").content.decode()  # still logged in
    assert can_log_in("pupil", new) and not can_log_in("pupil", PASSWORD)


def test_a_wrong_old_password_is_a_form_error(client, groups):
    make_person("pupil", "user", "edu.school.class1")
    client.login(username="pupil", password=PASSWORD)
    page = client.post("/clc/password/", {"old_password": "wrong", "new_password1": "x-long-phrase-88",
                                          "new_password2": "x-long-phrase-88"}).content.decode()
    assert errors_of(page, "old_password")


# The navigation bar, the front page and the error pages.

NAV = {"System status": "/clc/", "Images": "/clc/images/", "Instances": "/clc/instances/",
       "Desktop pools": "/clc/pools/", "Volumes": "/clc/volumes/", "Hosts": "/clc/hosts/", "Networks": "/clc/networks/",
       "Tasks": "/clc/tasks/",
       "VM types": "/clc/vmtypes/", "Accounts": "/clc/accounts/", "Owner-groups": "/clc/groups/",
       "My desktops": "/portal/", "Records": "/admin/"}


def nav_links(page: str) -> list[str]:
    nav = re.search(r"<nav>(.*?)</nav>", page, re.S)[1]
    return [label for label, href in NAV.items() if f'<a href="{href}">{label}</a>' in nav]


@pytest.mark.parametrize("role, path, links", [
    # A student's desktops are the portal's: no console list of instances or pools.
    ("user", "edu.school.class1", ["My desktops"]),
    ("poweruser", "edu.school", ["Images", "Instances", "Desktop pools", "Volumes", "Tasks", "VM types",
                                 "My desktops"]),
    # Networks (and servers on the status page) are the whole cloud's: the root's administrators only.
    ("poweradm", "edu.school", ["System status", "Images", "Instances", "Desktop pools", "Volumes", "Hosts", "Tasks",
                                "VM types", "My desktops"]),
    ("superadm", "edu.school", ["System status", "Images", "Instances", "Desktop pools", "Volumes", "Hosts", "Tasks",
                                "VM types", "Accounts", "Owner-groups", "My desktops"]),
])
def test_the_navigation_shows_only_the_links_the_person_may_follow(client, login, role, path, links):
    login("someone", role, path)
    page = client.get("/clc/password/").content.decode()
    assert nav_links(page) == links
    assert 'href="/clc/password/">My account</a>' in page


def test_a_superuser_sees_every_link_and_the_records(admin_client, groups):
    assert nav_links(admin_client.get("/clc/").content.decode()) == list(NAV)


def test_the_navigation_follows_the_owner_groups_permissions(client, login):
    OwnerGroup.objects.get(path="edu.school").permissions.filter(resource_type="task").delete()
    login("teacher", "poweradm", "edu.school")
    assert "Tasks" not in nav_links(client.get("/clc/password/").content.decode())


def test_logging_in_sends_each_person_to_a_page_they_may_see(client, groups):
    make_person("pupil", "user", "edu.school.class1")
    make_person("designer", "poweruser", "edu.school")
    make_person("teacher", "poweradm", "edu.school")
    for username, landing in (("pupil", "/portal/"), ("designer", "/clc/images/"), ("teacher", None)):
        client.logout()
        response = client.post("/clc/login/?next=/clc/", {"username": username, "password": PASSWORD,
                                                          "next": "/clc/"}, follow=False)
        assert response["Location"] == "/clc/"
        response = client.get("/clc/")
        if landing is None:
            assert response.status_code == 200 and "System status" in response.content.decode()
        else:
            assert (response.status_code, response["Location"]) == (302, landing)


def test_the_403_page_says_why_and_what_to_do(client, login):
    login("teacher", "poweradm", "edu.school")
    response = client.get("/clc/accounts/")
    page = html.unescape(response.content.decode())
    assert response.status_code == 403
    assert "you may not read account records" in page
    assert "log in as someone else" in page and "ask an administrator" in page
    assert 'action="/clc/logout/"' in page and "eduCloud" in page


def test_the_404_page_is_the_consoles(client, login):
    login("head", "superadm", "edu.school")
    response = client.get("/clc/accounts/nobody-here/edit/")
    assert response.status_code == 404
    page = response.content.decode()
    assert "Not found" in page and "eduCloud" in page and 'href="/clc/accounts/">Accounts</a>' in page
    assert client.get("/clc/no/such/page/").status_code == 404
    assert client.get("/clc/api/1.0/no-such-thing/").json()["detail"].startswith("no such API endpoint")


def test_the_500_page_renders_without_a_request_context():
    response = server_error(RequestFactory().get("/clc/"))
    page = response.content.decode()
    assert response.status_code == 500 and "eduCloud" in page and "Something went wrong" in page


def test_the_django_admin_lists_and_searches_accounts(admin_client, groups):
    make_person("amy", "user", "edu.school.class1")
    make_person("bob", "user", "edu.other")
    page = admin_client.get("/admin/luhyadb/account/?q=amy").content.decode()
    assert "amy" in page and "bob" not in page


@pytest.mark.parametrize("method, route, body", [
    ("POST", "", {"username": "new1", "role": "user", "owner_group": "edu"}),
    ("PATCH", "pupil/", {"first_name": "B"}), ("DELETE", "pupil/", None), ("POST", "pupil/password/", {})])
def test_a_signed_call_that_changes_an_account_is_refused_with_a_403_not_a_server_error(signed_client, groups, method,
                                                                                       route, body):
    make_person("pupil", "user", "edu.school.class1")
    response = signed_client.request(method, f"{API}{route}", body)
    assert response.status_code == 403, response.content[:300]
    assert response.json()["detail"] == "this call is not for signed hosts"
    assert Account.objects.filter(user__username="pupil").exists()


def test_a_signed_call_that_creates_an_owner_group_is_refused_with_a_403_not_a_server_error(signed_client, groups):
    response = signed_client.post("/clc/api/1.0/ownergroups/", {"path": "edu.new", "name": "New"})
    assert response.status_code == 403, response.content[:300]
    assert not OwnerGroup.objects.filter(path="edu.new").exists()
