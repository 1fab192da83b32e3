"""The admin console's pages of hosts' keys and join tokens: the Keys page (approve, reject, revoke, for whoever
manages each key), the Key column and its Revoke button on the Servers and Classroom PCs pages, and the Join tokens
page (a token's secret shown once). Real requests through the console's forms, in the owner-group tree of
``clc.tests.people_fixtures`` (``edu``, ``edu.school``, ``edu.school.class1``, ``edu.other``)."""

from __future__ import annotations

import hashlib
import json
import re
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.contrib.sessions.models import Session
from django.forms.models import model_to_dict
from django.test import Client
from django.utils import timezone

from clc.services import authz, enrolment
from luhyaapi import trust
from luhyaapi.messages import EnrolmentRequest
from luhyadb.choices import ResourceTypeChoices
from luhyadb.models import Host, HostCredential, JoinToken, OwnerGroup, OwnerGroupPermission, Server
from tests.keys import enrolled_key, new_key

pytest_plugins = ["clc.tests.people_fixtures"]
pytestmark = [pytest.mark.database, pytest.mark.django_db]

KEYS, TOKENS, NEW_TOKEN = "/clc/hosts/keys/", "/clc/hosts/tokens/", "/clc/hosts/tokens/new/"
MAC_12, MAC_13, MAC_14 = "52:54:00:3c:0f:12", "52:54:00:3c:0f:13", "52:54:00:3c:0f:14"
CHIEF = authz.Actor(username="chief", path="edu", role="superadm")


def flashes(response) -> list[tuple[str, str]]:
    return re.findall(r'<p class="flash (\w+)">([^<]*)</p>', response.content.decode())


def text_of(response) -> str:
    """The page's text with its line breaks and indents as single spaces."""
    return " ".join(response.content.decode().split())


def key_rows(response) -> list[str]:
    return re.findall(r'<tr id="key-([\w-]+)">', response.content.decode())


def field_errors(response) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    page = response.content.decode()
    for field, error in re.findall(r'<span class="error" id="id_(\w+)-error">([^<]*)</span>', page):
        found.setdefault(field, []).append(error)
    return found


def asks(name: str, kind: str = "server", roles: tuple[str, ...] = ("cc",), mac: str = "", token: str = ""):
    """Host ``name`` sends its new key, as it does at its start (from 10.0.0.7); its key pair and its record."""
    key = new_key(name)
    credential = enrolment.enrol(EnrolmentRequest(name=name, kind=kind, roles=list(roles), cluster="cluster1",
                                                  mac=mac, public_key=key.public_key, join_token=token),
                                 address="10.0.0.7")
    return key, credential


def pc(name: str, mac: str, path: str | None) -> Host:
    group = OwnerGroup.objects.get(path=path) if path else None
    return Host.objects.create(name=name, mac=mac, ip="10.0.9.1", cluster="cluster1", owner_group=group)


@pytest.fixture
def school(groups):
    """PCs pc-12 of edu.school and pc-13 of edu.other, pc-14 not recorded yet, and server cc-7: each has asked to
    be enrolled and waits for approval."""
    pc("pc-12", MAC_12, "edu.school")
    pc("pc-13", MAC_13, "edu.other")
    for name, mac in (("pc-12", MAC_12), ("pc-13", MAC_13), ("pc-14", MAC_14)):
        asks(name, "pc", ("nc",), mac)
    asks("cc-7")


def state_of(name: str) -> str:
    return HostCredential.objects.get(name=name).state


# The Keys page


def test_the_roots_super_administrator_sees_a_waiting_servers_key_and_approves_it(client, login, groups):
    key, _ = asks("cc-7")
    login("chief", "superadm", "edu")
    page = client.get(KEYS)
    text = page.content.decode()
    assert key_rows(page) == ["cc-7"]
    for shown in (key.fingerprint, "Server", "cluster1", "10.0.0.7", "Waiting for approval",
                  'action="/clc/hosts/keys/cc-7/approve/"', 'action="/clc/hosts/keys/cc-7/revoke/"',
                  "this host's key SHA256:… waits for approval"):
        assert shown in text
    assert trust.peer("cc-7") is None

    assert f'name="fingerprint" value="{key.fingerprint}"' in text  # the approval names the key compared
    approved = client.post("/clc/hosts/keys/cc-7/approve/", {"next": "/clc/hosts/keys/?state=pending",
                                                             "fingerprint": key.fingerprint})
    assert approved["Location"] == "/clc/hosts/keys/?state=pending"
    listed = client.get(KEYS)
    assert ("success", f"The key of cc-7 ({key.fingerprint}) is approved: cc-7 is trusted from now on.") in flashes(
        listed)
    assert "approved by chief" in listed.content.decode()
    assert trust.peer("cc-7").public_key == key.public_key


def test_waiting_keys_come_first_and_the_state_filter_and_search_narrow_the_list(client, login, groups):
    enrolled_key("a-1", "nc")
    asks("z-9")
    enrolled_key("b-2", "nc")
    enrolment.revoke(HostCredential.objects.get(name="b-2"), CHIEF)
    login("chief", "superadm", "edu")
    assert key_rows(client.get(KEYS)) == ["z-9", "a-1", "b-2"]
    assert key_rows(client.get(KEYS, {"state": "revoked"})) == ["b-2"]
    assert key_rows(client.get(KEYS, {"q": "z-"})) == ["z-9"]
    assert key_rows(client.get(KEYS, {"q": HostCredential.objects.get(name="a-1").fingerprint[7:20]})) == ["a-1"]
    assert key_rows(client.get(KEYS, {"state": "'; drop table"})) == ["z-9", "a-1", "b-2"]
    assert "No key matches." in client.get(KEYS, {"q": "nothing-like-it"}).content.decode()


def test_the_keys_list_shows_25_a_page(client, login, groups):
    for number in range(30):
        asks(f"nc-{number:02d}", roles=("nc",))
    login("chief", "superadm", "edu")
    first = client.get(KEYS, {"state": "pending"})
    assert len(key_rows(first)) == 25 and "Page 1 of 2" in first.content.decode()
    assert "?state=pending&amp;page=2" in first.content.decode()
    assert len(key_rows(client.get(KEYS, {"state": "pending", "page": 2}))) == 5


def test_a_schools_power_administrator_sees_only_the_waiting_keys_of_pcs_recorded_in_their_school_and_approves_one(
        client, login, school):
    login("head", "poweradm", "edu.school")
    assert key_rows(client.get(KEYS, {"state": "pending"})) == ["pc-12"]
    response = client.post("/clc/hosts/keys/pc-12/approve/",
                           {"fingerprint": HostCredential.objects.get(name="pc-12").fingerprint}, follow=True)
    credential = HostCredential.objects.get(name="pc-12")
    assert ("success", f"The key of pc-12 ({credential.fingerprint}) is approved: pc-12 is trusted from now "
                       "on.") in flashes(response)
    assert (credential.state, credential.approved_by) == ("active", "head")
    assert trust.peer("pc-12") is not None


@pytest.mark.parametrize("name", ["cc-7", "pc-13", "pc-14", "CC 7"])
@pytest.mark.parametrize("action", ["approve", "revoke"])
def test_a_schools_power_administrator_gets_a_404_for_a_servers_key_or_another_schools_pc_key(client, login, school,
                                                                                            name, action):
    login("head", "poweradm", "edu.school")
    assert client.post(f"/clc/hosts/keys/{name}/{action}/").status_code == 404
    assert set(HostCredential.objects.values_list("state", flat=True)) == {"pending"}


def test_approving_a_key_that_is_not_waiting_is_refused_with_a_message(client, login, groups):
    enrolled_key("cc-7", "cc")
    login("chief", "superadm", "edu")
    fingerprint = HostCredential.objects.get(name="cc-7").fingerprint
    response = client.post("/clc/hosts/keys/cc-7/approve/", follow=True)
    assert response.status_code == 200
    assert ("error", f"The key of cc-7 ({fingerprint}) was not approved: the key of cc-7 is active, not waiting for "
                     "approval") in flashes(response)


def test_rejecting_a_waiting_key_says_the_host_may_enrol_again_and_a_second_revoke_changes_nothing(client, login,
                                                                                                  groups):
    key, _ = asks("cc-7")
    login("chief", "superadm", "edu")
    rejected = client.post("/clc/hosts/keys/cc-7/revoke/", follow=True)
    assert ("success", f"The key of cc-7 ({key.fingerprint}) is rejected: cc-7 may enrol again and wait for "
                       "approval.") in flashes(rejected)
    assert "rejected by chief" in rejected.content.decode()
    revoked_at = HostCredential.objects.get(name="cc-7").revoked_at
    again = client.post("/clc/hosts/keys/cc-7/revoke/", follow=True)
    assert ("error", f"The key of cc-7 ({key.fingerprint}) was revoked already.") in flashes(again)
    assert HostCredential.objects.get(name="cc-7").revoked_at == revoked_at


def test_a_person_with_no_key_to_manage_sees_an_empty_list_saying_why(client, login, groups):
    login("head", "poweradm", "edu.school")
    keys = client.get(KEYS)
    assert keys.status_code == 200 and key_rows(keys) == []
    assert "you manage the keys of the classroom PCs recorded in edu.school" in text_of(keys)
    tokens = client.get(TOKENS)
    assert tokens.status_code == 200 and "No join token for your owner-groups yet" in text_of(tokens)


# The Key column of the Servers and Classroom PCs pages


def test_revoking_from_the_servers_page_stops_trusting_the_host(groups):
    Server.objects.create(role="cc", name="cc-7", ip="10.0.9.7", cluster="cluster1")
    enrolled_key("cc-7", "cc")
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(get_user_model().objects.create_user("boss", is_staff=True, is_superuser=True))
    page = browser.get("/clc/hosts/servers/").content.decode()
    assert '<a href="/clc/hosts/keys/?q=cc-7#key-cc-7"' in page and "key-active" in page
    [form] = re.findall(r'<form method="post" action="(/clc/hosts/keys/cc-7/revoke/)".*?name="csrfmiddlewaretoken" '
                        r'value="(\w+)"', page, re.S)
    action, csrf = form
    assert browser.post(action, {"next": "/clc/hosts/servers/"}).status_code == 403  # no CSRF token
    assert trust.peer("cc-7") is not None

    response = browser.post(action, {"next": "/clc/hosts/servers/", "csrfmiddlewaretoken": csrf})
    assert response["Location"] == "/clc/hosts/servers/"
    assert trust.peer("cc-7") is None
    after = browser.get("/clc/hosts/servers/")
    fingerprint = HostCredential.objects.get(name="cc-7").fingerprint
    assert ("success", f"The key of cc-7 ({fingerprint}) is revoked: the calls of cc-7 are refused (by the other "
                       f"hosts within {trust.PEER_CACHE_SECONDS} seconds) until it enrols again and is "
                       "approved.") in flashes(after)
    assert "key-revoked" in after.content.decode() and "/clc/hosts/keys/cc-7/revoke/" not in after.content.decode()


def test_the_servers_page_shows_each_servers_key_and_the_clcs_own(client, login, groups):
    own = trust.own_key()
    Server.objects.create(role="clc", name=own.name, ip="10.0.0.1", cluster="cluster1")
    Server.objects.create(role="cc", name="cc-7", ip="10.0.9.7", cluster="cluster1")
    Server.objects.create(role="nc", name="nc-8", ip="10.0.9.8", cluster="cluster1")
    asks("cc-7")
    login("chief", "superadm", "edu")
    cells = re.findall(r'<td class="key">(.*?)</td>', client.get("/clc/hosts/servers/").content.decode(), re.S)
    assert len(cells) == 3
    states = {re.sub(r"<[^>]+>", "", cell).strip() for cell in cells}
    assert states == {"The CLC's own", "Waiting for approval", "none"}


def test_the_classroom_pcs_page_shows_each_pcs_key_and_revokes_the_active_one(client, login, groups):
    for name, mac in (("pc-12", MAC_12), ("pc-13", MAC_13), ("pc-14", MAC_14), ("pc-15", "52:54:00:3c:0f:15")):
        pc(name, mac, "edu.school")
    enrolled_key("pc-12", "pc", mac=MAC_12)
    asks("pc-13", "pc", ("nc",), MAC_13)
    asks("pc-14", "pc", ("nc",), MAC_14)
    login("head", "poweradm", "edu.school")
    client.post("/clc/hosts/keys/pc-14/revoke/")
    page = client.get("/clc/hosts/").content.decode()
    cells = [re.sub(r"<[^>]+>", "", cell).strip() for cell in re.findall(r'<td class="key">(.*?)</td>', page, re.S)]
    assert cells == ["Active", "Waiting for approval", "Revoked", "none"]
    assert re.findall(r'action="/clc/hosts/keys/([\w-]+)/revoke/"', page) == ["pc-12"]

    response = client.post("/clc/hosts/keys/pc-12/revoke/", {"next": "/clc/hosts/"}, follow=True)
    assert response.redirect_chain == [("/clc/hosts/", 302)]
    assert trust.peer("pc-12") is None and state_of("pc-12") == "revoked"


def test_the_key_column_offers_revoke_only_to_who_may_manage_the_key(client, login, groups):
    Server.objects.create(role="cc", name="cc-7", ip="10.0.9.7", cluster="cluster1")
    enrolled_key("cc-7", "cc")
    login("ops", "poweradm", "edu")  # reads servers, manages PCs' keys only
    page = client.get("/clc/hosts/servers/").content.decode()
    assert "key-active" in page
    assert "/clc/hosts/keys/cc-7/revoke/" not in page and "/clc/hosts/keys/?q=cc-7" not in page
    assert client.post("/clc/hosts/keys/cc-7/revoke/").status_code == 404
    assert trust.peer("cc-7") is not None


# Join tokens


def issue(client, **fields):
    form = {"label": "", "kind": "pc", "cluster": "cluster1", "uses": "1", "hours": "24"} | fields
    return client.post(NEW_TOKEN, form)


def test_a_token_issued_on_the_page_shows_its_secret_once(client, login, groups):
    login("chief", "superadm", "edu")
    form = client.get(NEW_TOKEN).content.decode()
    assert 'value="server"' in form and 'value="pc"' in form and 'name="roles" value="walrus"' in form
    issued = issue(client, label="Room 12", owner_group="edu.school.class1", uses="30")
    assert issued.status_code == 200 and issued["Cache-Control"] == "no-store"
    page = issued.content.decode()
    [secret] = re.findall(r'<code id="token-config">join_token = ([\w-]+)</code>', page)
    assert f"EDUCLOUD_HOST_JOIN_TOKEN={secret}" in page and "host.join_token" in page

    token = JoinToken.objects.get()
    assert (token.label, token.kind, token.owner_group.path, token.uses_left, token.created_by) == (
        "Room 12", "pc", "edu.school.class1", 30, "chief")
    assert token.digest == hashlib.sha256(secret.encode()).hexdigest()
    assert secret not in json.dumps(model_to_dict(token), default=str)
    assert all(secret not in json.dumps(session.get_decoded()) for session in Session.objects.all())
    for reload in (TOKENS, NEW_TOKEN):
        assert secret not in client.get(reload).content.decode()
    listed = client.get(TOKENS).content.decode()
    assert "Room 12" in listed and "edu.school.class1" in listed and "chief" in listed

    _, credential = asks("pc-12", "pc", ("nc",), MAC_12, token=secret)
    assert credential.state == "active"


def test_a_server_tokens_errors_show_next_to_their_fields(client, login, groups):
    login("chief", "superadm", "edu")
    no_roles = issue(client, kind="server")
    assert no_roles.status_code == 200
    assert field_errors(no_roles) == {"roles": ["a server token names its roles, some of walrus, cc, nc, sc, watch"]}
    assert "Not issued: change the fields marked below." in no_roles.content.decode()
    assert field_errors(issue(client, kind="server", roles=["cc"], owner_group="edu.school")) == {
        "owner_group": ["servers belong to the whole cloud: a server token has no owner-group"]}
    assert field_errors(issue(client, uses="0")) == {"uses": ["uses must be 1 to 1000"]}
    assert field_errors(issue(client, hours="0")) == {"hours": ["hours must be more than 0 and at most 720"]}
    assert list(field_errors(issue(client, cluster="Cluster 1"))) == ["cluster"]
    assert not JoinToken.objects.exists()
    issued = issue(client, kind="server", roles=["cc", "nc"])
    assert "join_token = " in issued.content.decode() and JoinToken.objects.get().roles == "cc,nc"


def test_a_school_administrator_cannot_issue_a_server_token_or_a_pc_token_for_another_school(client, login, groups):
    login("head", "poweradm", "edu.school")
    form = client.get(NEW_TOKEN).content.decode()
    assert 'value="server"' not in form and 'name="roles"' not in form and "edu.other" not in form
    assert list(field_errors(issue(client, kind="server", roles=["cc"]))) == ["kind"]
    assert list(field_errors(issue(client, owner_group="edu.other"))) == ["owner_group"]
    assert field_errors(issue(client)) == {"owner_group": ["you may not create a host in owner-group &#x27;edu&#x27;"]}
    assert not JoinToken.objects.exists()
    assert "join_token = " in issue(client, owner_group="edu.school.class1").content.decode()


def test_each_person_sees_and_withdraws_only_their_tokens(client, login, groups):
    server = enrolment.issue_join_token(CHIEF, kind="server", cluster="cluster1", roles=["cc"], label="new cc").record
    theirs = enrolment.issue_join_token(CHIEF, kind="pc", cluster="cluster1", owner_group=groups["edu.other"],
                                        label="other school").record
    ours = enrolment.issue_join_token(CHIEF, kind="pc", cluster="cluster1", owner_group=groups["edu.school"],
                                      label="our lab", uses=30).record
    JoinToken.objects.filter(pk=ours.pk).update(expires=timezone.now() - timedelta(minutes=1))
    login("head", "poweradm", "edu.school")
    listed = client.get(TOKENS).content.decode()
    assert re.findall(r'<tr id="token-(\d+)">', listed) == [str(ours.pk)]
    assert "our lab" in listed and "expired" in listed
    for other in (server, theirs):
        assert client.post(f"/clc/hosts/tokens/{other.pk}/withdraw/").status_code == 404
    response = client.post(f"/clc/hosts/tokens/{ours.pk}/withdraw/", follow=True)
    assert ("success", "Join token our lab withdrawn: no host enrols with it any more (the hosts it enrolled "
                       "stay).") in flashes(response)
    assert set(JoinToken.objects.values_list("label", flat=True)) == {"new cc", "other school"}


# Who gets the pages


PAGES = [("get", KEYS), ("get", TOKENS), ("get", NEW_TOKEN), ("post", NEW_TOKEN),
         ("post", "/clc/hosts/keys/cc-7/approve/"), ("post", "/clc/hosts/keys/cc-7/revoke/"),
         ("post", "/clc/hosts/tokens/1/withdraw/")]


@pytest.mark.parametrize("method, path", PAGES)
def test_students_logins_without_an_account_and_signed_hosts_get_a_403(client, login, signed_client, groups, method,
                                                                       path):
    asks("cc-7")
    assert getattr(client, method)(path).status_code == 302  # not logged in: to the login page
    signed = signed_client.get(path, key=enrolled_key("cc-1", "cc")) if method == "get" else signed_client.post(
        path, {}, key=enrolled_key("cc-1", "cc"))
    assert signed.status_code == 403
    for person in (lambda: login("pupil", "user", "edu.school.class1"),
                   lambda: login("teacher", "poweruser", "edu.school"),
                   lambda: client.force_login(get_user_model().objects.create_user("no-account"))):
        person()
        refused = getattr(client, method)(path)
        assert refused.status_code == 403 and "You may not do this" in refused.content.decode()
    assert state_of("cc-7") == "pending" and not JoinToken.objects.exists()


def test_the_keys_and_join_tokens_tabs_appear_for_who_may_manage_keys(client, login, groups):
    tabs = ('href="/clc/hosts/keys/">Keys</a>', 'href="/clc/hosts/tokens/">Join tokens</a>')
    login("chief", "superadm", "edu")
    assert all(tab in client.get("/clc/hosts/servers/").content.decode() for tab in tabs)
    login("head", "poweradm", "edu.school")
    assert all(tab in client.get("/clc/hosts/").content.decode() for tab in tabs)
    # A school whose administrators may read PCs but not add them: no keys of theirs to manage.
    OwnerGroupPermission.objects.filter(owner_group=groups["edu.other"], resource_type=ResourceTypeChoices.HOST
                                        ).update(create=False)
    login("reader", "poweradm", "edu.other")
    page = client.get("/clc/hosts/").content.decode()
    assert page and not any(tab in page for tab in tabs)
    assert client.get(KEYS).status_code == 403


def test_every_page_renders_in_the_test_world(client, login, groups, school):
    enrolment.issue_join_token(CHIEF, kind="server", cluster="cluster1", roles=["cc", "nc"])
    enrolment.issue_join_token(CHIEF, kind="pc", cluster="cluster1", owner_group=groups["edu.school"])
    for username, role, path, pages in (
            ("chief", "superadm", "edu", (KEYS, TOKENS, NEW_TOKEN, "/clc/hosts/", "/clc/hosts/servers/")),
            ("head", "poweradm", "edu.school", (KEYS, TOKENS, NEW_TOKEN, "/clc/hosts/"))):
        login(username, role, path)
        for page in pages:
            assert client.get(page).status_code == 200, (username, page)


def test_who_approved_a_key_is_named_only_to_people_of_their_own_branch(client, login, school):
    """The cloud's administrator approved a school's PC: the school's administrator sees that it was approved, not
    the login of someone above their school (page and API alike); the approver sees their own name."""
    from clc.tests.people import make_person

    root_admin = make_person("cloud-chief", "superadm", "edu")
    enrolment.approve(HostCredential.objects.get(name="pc-12"), authz.actor_for(root_admin.user),
                      HostCredential.objects.get(name="pc-12").fingerprint)
    login("head", "poweradm", "edu.school")
    page = text_of(client.get(KEYS))
    assert "approved by an administrator outside your owner-group" in page and "cloud-chief" not in page
    listed = client.get("/clc/api/1.0/hostkeys/").json()["results"]
    assert [key["approved_by"] for key in listed if key["name"] == "pc-12"] == [enrolment.UNNAMED_ACTOR]
    client.force_login(root_admin.user)
    assert "approved by cloud-chief" in text_of(client.get(KEYS))
