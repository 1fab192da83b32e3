"""The CLC's answer to a storage controller about a WebDAV login (``POST /clc/api/1.0/dav/authorize/``): the
password checked by the console's own authentication (and its throttle, by the WebDAV client's address), the
shares decided by the one rule (clc.services.authz, type ``share``), and the endpoint for signed SCs only."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.test import override_settings

from clc.services import authz
from clc.tests.classes import group
from luhyadb.choices import LoginThrottleKindChoices
from luhyadb.choices import ResourceTypeChoices as Type
from luhyadb.models import Account, LoginThrottle, OwnerGroup
from tests.keys import enrolled_key

pytestmark = [pytest.mark.database, pytest.mark.django_db]

URL = "/clc/api/1.0/dav/authorize/"
CLIENT = "203.0.113.9"


@pytest.fixture
def school():
    OwnerGroup.objects.create(name="root", path="edu")
    groups = {"edu.s1": group("edu.s1", "school"), "edu.s1.c1": group("edu.s1.c1", "class"),
              "edu.s1.teachers": group("edu.s1.teachers", "teachers"), "edu.s2": group("edu.s2", "school"),
              "edu.s1x": group("edu.s1x", "school")}
    people = {}
    for username, path, role in (("head", "edu.s1", "superadm"), ("teacher", "edu.s1.teachers", "poweruser"),
                                 ("student", "edu.s1.c1", "user"), ("other", "edu.s2", "poweradm")):
        people[username] = get_user_model().objects.create_user(username, password=f"{username}-pw")
        Account.objects.create(user=people[username], owner_group=groups[path], role=role)
    get_user_model().objects.create_user("noaccount", password="noaccount-pw")
    return people


def ask(signed_client, username: str, password: str, key=None, address: str = CLIENT):
    return signed_client.post(URL, {"username": username, "password": password, "address": address},
                              key=key or enrolled_key("sc-1", "sc"))


def test_a_good_login_gets_its_home_and_exactly_the_shares_the_rule_gives(signed_client, school):
    answers = {}
    for username in ("head", "teacher", "student", "other"):
        response = ask(signed_client, username, f"{username}-pw")
        assert response.status_code == 200, response.content
        answers[username] = response.json()
        assert answers[username]["authenticated"] is True
        assert answers[username]["username"] == username
        actor = authz.actor_for(school[username])
        expected = [{"path": g.path, "read": authz.allows(actor, "read", Type.SHARE, g.path),
                     "write": authz.allows(actor, "write", Type.SHARE, g.path)}
                    for g in OwnerGroup.objects.order_by("path")
                    if authz.allows(actor, "read", Type.SHARE, g.path) or authz.allows(actor, "write", Type.SHARE,
                                                                                       g.path)]
        assert answers[username]["shares"] == expected, username
    assert answers["head"]["owner_group"] == "edu.s1"
    assert [s["path"] for s in answers["head"]["shares"]] == ["edu.s1", "edu.s1.c1", "edu.s1.teachers"]
    assert answers["student"]["shares"] == [{"path": "edu.s1.c1", "read": True, "write": False}]
    assert answers["teacher"]["shares"] == [{"path": "edu.s1.teachers", "read": True, "write": True}]
    assert [s["path"] for s in answers["other"]["shares"]] == ["edu.s2"]


def test_a_refused_login_says_why_and_is_counted_against_the_clients_address(signed_client, school):
    answer = ask(signed_client, "student", "wrong").json()
    assert answer == {"authenticated": False, "detail": "wrong user name or password", "username": "",
                      "owner_group": "", "shares": []}
    assert LoginThrottle.objects.filter(kind=LoginThrottleKindChoices.ADDRESS, key=CLIENT).exists()
    assert not LoginThrottle.objects.filter(kind=LoginThrottleKindChoices.ADDRESS, key="127.0.0.1").exists(), \
        "the SC's own address is never the one counted"
    assert ask(signed_client, "noaccount", "noaccount-pw").json()["detail"] == "your login has no eduCloud account"


@override_settings()
def test_the_throttle_locks_a_guessed_user_name_for_webdav_too(signed_client, school, settings):
    from dataclasses import replace

    settings.EDUCLOUD = replace(settings.EDUCLOUD, login_max_failures=3)
    for _ in range(3):
        ask(signed_client, "student", "guess")
    answer = ask(signed_client, "student", "student-pw").json()
    assert answer["authenticated"] is False and "Too many failed logins" in answer["detail"]


def test_only_storage_controllers_may_ask(signed_client, client, school):
    assert ask(signed_client, "student", "student-pw", key=enrolled_key("nc-1", "nc")).status_code == 403
    assert client.post(URL, {"username": "student", "password": "student-pw"},
                       content_type="application/json").status_code == 401
    client.force_login(school["head"])
    assert client.post(URL, {"username": "student", "password": "student-pw"},
                       content_type="application/json").status_code == 403


@pytest.mark.parametrize(("body", "field"), [({"password": "x"}, "username"), ({"username": "x"}, "password"),
                                             ({"username": "x", "password": "y", "address": "not-an-ip"}, "address"),
                                             ({"username": "u" * 151, "password": "y"}, "username")])
def test_a_malformed_question_is_a_400_naming_the_field(signed_client, school, body, field):
    response = signed_client.post(URL, body, key=enrolled_key("sc-1", "sc"))
    assert response.status_code == 400 and field in response.json()


def test_my_files_links_the_home_on_an_online_sc_and_is_hidden_without_one(client, school):
    from luhyadb.models import Server

    client.force_login(school["student"])
    assert 'id="my-files"' not in client.get("/portal/").content.decode(), "no SC known: no link"
    Server.objects.create(name="sc-1", role="sc", ip="10.0.0.9", cluster="cluster1", api_url="http://10.0.0.9:8000",
                          state="offline")
    assert 'id="my-files"' not in client.get("/portal/").content.decode(), "an offline SC is not offered"
    Server.objects.create(name="sc-2", role="sc", ip="10.0.0.10", cluster="cluster1",
                          api_url="https://sc.school.example", state="online")
    page = client.get("/portal/").content.decode()
    assert 'href="https://sc.school.example/sc/dav/home/student/" id="my-files"' in page
