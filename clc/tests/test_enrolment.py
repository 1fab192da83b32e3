"""Hosts' keys on the CLC: enrolment (pending until approved, or at once with a join token), approval and revocation
by who may manage the host, join tokens, the peers lookup other roles use, and that each signed call is taken once."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from clc.services import authz, enrolment
from clc.tests.people import make_person
from luhyaapi import trust
from luhyaapi.messages import EnrolmentRequest
from luhyadb.models import Host, HostCredential, JoinToken, OwnerGroup
from tests.keys import enrolled_key, new_key

pytest_plugins = ["clc.tests.people_fixtures"]
pytestmark = [pytest.mark.database, pytest.mark.django_db]

ENROL = "/clc/api/1.0/enrolments/"
MAC = "52:54:00:3c:0f:7e"


def request_of(key, kind="server", roles=("cc",), cluster="cluster1", mac="", token="") -> dict:
    return {"name": key.name, "kind": kind, "roles": list(roles), "cluster": cluster, "mac": mac,
            "public_key": key.public_key, "join_token": token}


def post(client, path: str, body: dict | None = None):
    return client.post(path, json.dumps(body or {}), content_type="application/json")


def token(kind="server", roles=("cc",), cluster="cluster1", owner_group=None, uses=1) -> str:
    root = enrolment_admin()
    return enrolment.issue_join_token(root, kind=kind, roles=list(roles), cluster=cluster, owner_group=owner_group,
                                      uses=uses).secret


def enrolment_admin():
    from clc.management.commands.issue_join_token import HOST_ADMINISTRATOR

    return HOST_ADMINISTRATOR


# Enrolling


def test_a_host_without_a_join_token_waits_for_approval_and_its_calls_are_refused_meanwhile(client, signed_client,
                                                                                             groups):
    key = new_key("cc-7")
    answer = post(client, ENROL, request_of(key))
    assert answer.status_code == 202
    assert (answer.json()["state"], answer.json()["fingerprint"]) == ("pending", key.fingerprint)
    assert answer.json()["clc"] == trust.own_peer().as_json()
    refused = signed_client.get("/clc/api/1.0/peers/cc-7/", key=key)
    assert (refused.status_code, "not an enrolled host" in refused.json()["detail"]) == (401, True)

    enrolment.approve(HostCredential.objects.get(name="cc-7"), enrolment_admin(), key.fingerprint)
    assert post(client, ENROL, request_of(key)).json()["state"] == "active"
    assert signed_client.get("/clc/api/1.0/peers/cc-7/", key=key).json()["roles"] == ["cc"]


def test_a_join_token_enrols_at_once_and_only_once(client, groups):
    secret = token()
    first, second = new_key("cc-7"), new_key("cc-8")
    answer = post(client, ENROL, request_of(first, token=secret))
    assert (answer.status_code, answer.json()["state"]) == (200, "active")
    assert "join token" in HostCredential.objects.get(name="cc-7").approved_by
    refused = post(client, ENROL, request_of(second, token=secret))
    assert (refused.status_code, list(refused.json())) == (403, ["join_token"])
    assert not HostCredential.objects.filter(name="cc-8").exists()


@pytest.mark.parametrize("change, reason", [
    ({"kind": "pc", "roles": ["nc"], "mac": MAC}, "for a server of cluster cluster1"),
    ({"cluster": "cluster2"}, "for a server of cluster cluster1"),
    ({"roles": ["cc", "walrus"]}, "for roles cc only"),
])
def test_a_join_token_enrols_only_what_it_was_issued_for(client, groups, change, reason):
    secret = token()
    refused = post(client, ENROL, request_of(new_key("cc-7"), token=secret) | change)
    assert refused.status_code == 403 and reason in refused.json()["join_token"][0]
    assert JoinToken.objects.get().uses_left == 1  # a refusal spends nothing


def test_an_expired_or_unknown_join_token_is_refused(client, groups):
    secret = token()
    JoinToken.objects.update(expires=timezone.now() - timedelta(seconds=1))
    for attempt in (secret, "x" * 32):
        assert post(client, ENROL, request_of(new_key("cc-7"), token=attempt)).status_code == 403
    assert not HostCredential.objects.exists()


def test_a_name_enrolled_with_another_key_is_refused_until_its_key_is_revoked(client, groups):
    enrolled_key("cc-7", "cc")
    impostor = new_key("cc-7")
    refused = post(client, ENROL, request_of(impostor, token=token()))
    assert (refused.status_code, list(refused.json())) == (409, ["public_key"])
    assert "revoke the old key first" in refused.json()["public_key"][0]
    enrolment.revoke(HostCredential.objects.get(name="cc-7"), enrolment_admin())
    assert post(client, ENROL, request_of(impostor)).json()["state"] == "pending"


def test_a_classroom_pc_enrols_as_a_node_controller_with_its_mac(client, groups):
    key = new_key("pc-12")
    bad = post(client, ENROL, request_of(key, kind="pc", roles=("nc",)))
    assert (bad.status_code, list(bad.json())) == (400, ["mac"])
    worse = post(client, ENROL, request_of(key, kind="pc", roles=("cc",), mac=MAC))
    assert worse.status_code == 400
    assert post(client, ENROL, request_of(key, kind="pc", roles=("nc",), mac=MAC)).status_code == 202


def test_a_pc_token_puts_the_pc_in_its_owner_group_but_never_takes_another_schools_pc(client, groups):
    secret = token(kind="pc", roles=("nc",), owner_group=groups["edu.school"], uses=2)
    Host.objects.create(name="pc-12", mac=MAC, ip="10.0.0.12", cluster="cluster1")
    assert post(client, ENROL, request_of(new_key("pc-12"), "pc", ("nc",), mac=MAC, token=secret)).status_code == 200
    assert Host.objects.get(mac=MAC).owner_group == groups["edu.school"]
    theirs = "52:54:00:3c:0f:7f"
    Host.objects.create(name="pc-13", mac=theirs, ip="10.0.0.13", cluster="cluster1", owner_group=groups["edu.other"])
    refused = post(client, ENROL, request_of(new_key("pc-13"), "pc", ("nc",), mac=theirs, token=secret))
    assert refused.status_code == 403 and "outside the join token's owner-group" in refused.json()["join_token"][0]


def test_a_cc_passes_on_enrolments_of_its_own_clusters_nodes_only(signed_client, groups):
    cc = enrolled_key("cc-1", "cc", cluster="cluster1")
    node = request_of(new_key("nc-3"), roles=("nc",))
    assert signed_client.post(f"{ENROL}?address=10.0.0.3", node, key=cc).status_code == 202
    assert HostCredential.objects.get(name="nc-3").address == "10.0.0.3"
    other_cluster = signed_client.post(ENROL, request_of(new_key("nc-4"), roles=("nc",), cluster="c9"), key=cc)
    assert (other_cluster.status_code, list(other_cluster.json())) == (403, ["cluster"])
    a_controller = signed_client.post(ENROL, request_of(new_key("cc-5"), roles=("cc",)), key=cc)
    assert (a_controller.status_code, list(a_controller.json())) == (403, ["roles"])
    from_a_node = signed_client.post(ENROL, request_of(new_key("nc-6"), roles=("nc",)), key=enrolled_key("nc-1"))
    assert from_a_node.status_code == 403


def test_unapproved_enrolments_are_capped(client, groups, monkeypatch):
    monkeypatch.setattr(enrolment, "MAX_PENDING", 2)
    for number in range(2):
        assert post(client, ENROL, request_of(new_key(f"nc-{number}"), roles=("nc",))).status_code == 202
    assert post(client, ENROL, request_of(new_key("nc-9"), roles=("nc",))).status_code == 429
    assert post(client, ENROL, request_of(new_key("nc-9"), roles=("nc",), token=token(roles=("nc",)))
                ).status_code == 200


@pytest.mark.parametrize("body, field", [
    ({"roles": ["clc"]}, "roles.0"), ({"name": "CC 7"}, "name"), ({"public_key": "ed25519:short"}, "public_key"),
    ({"join_token": "not a token!"}, "join_token"), ({"kind": "router"}, "kind"), ({"extra": 1}, "extra"),
])
def test_a_malformed_enrolment_is_a_400_naming_the_field(client, groups, body, field):
    response = post(client, ENROL, request_of(new_key("cc-7")) | body)
    assert response.status_code == 400 and field in response.json(), response.json()


# Signed calls


def test_a_signed_call_is_taken_once_a_replay_is_refused(signed_client, groups):
    first = signed_client.get("/clc/api/1.0/peers/cc-1/", key=enrolled_key("cc-1", "cc"))
    assert first.status_code == 200
    caught = {name: value for name, value in first.wsgi_request.META.items() if name.startswith("HTTP_X_EDUCLOUD")}
    replayed = Client().get("/clc/api/1.0/peers/cc-1/", **caught)
    assert (replayed.status_code, "replayed" in replayed.json()["detail"]) == (401, True)


def test_peers_are_looked_up_by_servers_and_never_by_pcs(signed_client, groups):
    enrolled_key("nc-3", "nc")
    HostCredential.objects.create(name="nc-4", kind="server", roles="nc", cluster="cluster1", public_key="x",
                                  fingerprint="x", requested_at=timezone.now())  # pending
    walrus = enrolled_key("store", "walrus")
    assert signed_client.get("/clc/api/1.0/peers/nc-3/", key=walrus).json()["roles"] == ["nc"]
    assert signed_client.get("/clc/api/1.0/peers/nc-4/", key=walrus).status_code == 404
    pc = enrolled_key("pc-12", "pc", mac=MAC)
    assert signed_client.get("/clc/api/1.0/peers/nc-3/", key=pc).status_code == 403


def test_a_revoked_key_signs_nothing(signed_client, groups):
    cc = enrolled_key("cc-1", "cc")
    assert signed_client.get("/clc/api/1.0/peers/cc-1/", key=cc).status_code == 200
    enrolment.revoke(HostCredential.objects.get(name="cc-1"), enrolment_admin())
    assert signed_client.get("/clc/api/1.0/peers/cc-1/", key=cc).status_code == 401


# People managing keys and tokens


def test_a_school_administrator_approves_their_schools_pc_and_nothing_else(client, login, groups):
    Host.objects.create(name="pc-12", mac=MAC, ip="10.0.0.12", cluster="cluster1", owner_group=groups["edu.school"])
    Host.objects.create(name="pc-13", mac="52:54:00:3c:0f:7f", ip="10.0.0.13", cluster="cluster1",
                        owner_group=groups["edu.other"])
    for name, mac in (("pc-12", MAC), ("pc-13", "52:54:00:3c:0f:7f")):
        post(client, ENROL, request_of(new_key(name), "pc", ("nc",), mac=mac))
    post(client, ENROL, request_of(new_key("cc-7")))
    login("head", "poweradm", "edu.school")
    listed = client.get("/clc/api/1.0/hostkeys/?state=pending").json()
    assert [key["name"] for key in listed["results"]] == ["pc-12"]
    assert post(client, "/clc/api/1.0/hostkeys/pc-13/approve/").status_code == 404
    assert post(client, "/clc/api/1.0/hostkeys/cc-7/approve/").status_code == 404
    approved = post(client, "/clc/api/1.0/hostkeys/pc-12/approve/",
                    {"fingerprint": HostCredential.objects.get(name="pc-12").fingerprint})
    assert (approved.status_code, approved.json()["state"], approved.json()["approved_by"]) == (200, "active", "head")
    assert post(client, "/clc/api/1.0/hostkeys/pc-12/approve/").status_code == 409
    assert HostCredential.objects.get(name="pc-13").state == "pending"


def test_the_roots_administrator_revokes_a_servers_key(client, login, groups):
    enrolled_key("cc-7", "cc")
    login("chief", "superadm", "edu")
    revoked = post(client, "/clc/api/1.0/hostkeys/cc-7/revoke/")
    assert (revoked.status_code, revoked.json()["state"], revoked.json()["revoked_by"]) == (200, "revoked", "chief")
    assert trust.peer("cc-7") is None


def test_keys_are_for_people_and_signed_hosts_get_a_403(signed_client, groups):
    assert signed_client.get("/clc/api/1.0/hostkeys/").status_code == 403
    assert signed_client.get("/clc/api/1.0/jointokens/").status_code == 403


def test_join_tokens_are_issued_by_who_may_create_the_hosts_and_shown_once(client, login, groups):
    login("head", "poweradm", "edu.school")
    issued = post(client, "/clc/api/1.0/jointokens/", {"kind": "pc", "cluster": "cluster1",
                                                       "owner_group": "edu.school.class1", "uses": 30})
    assert issued.status_code == 201, issued.json()
    assert len(issued.json()["token"]) >= 32 and issued.json()["uses_left"] == 30
    assert JoinToken.objects.get().digest == enrolment.digest(issued.json()["token"])
    listed = client.get("/clc/api/1.0/jointokens/").json()["results"]
    assert [row.get("token") for row in listed] == [None]
    for body in ({"kind": "server", "cluster": "cluster1", "roles": ["nc"]},
                 {"kind": "pc", "cluster": "cluster1", "owner_group": "edu.other"}):
        assert post(client, "/clc/api/1.0/jointokens/", body).status_code == 403
    assert post(client, "/clc/api/1.0/jointokens/", {"kind": "pc", "cluster": "cluster1", "uses": 0}).status_code == 403
    login("chief", "superadm", "edu")
    bad = post(client, "/clc/api/1.0/jointokens/", {"kind": "server", "cluster": "cluster1", "roles": ["clc"]})
    assert (bad.status_code, list(bad.json())) == (400, ["roles"])
    assert OwnerGroup.objects.filter(path="edu.school.class1").get().join_tokens.count() == 1


def test_the_enrolment_request_schema_refuses_the_clc_role():
    with pytest.raises(ValueError):
        EnrolmentRequest.model_validate(request_of(new_key("x"), roles=("clc",)))



# Lookups of the console's pages


def person(username: str, role: str, path: str) -> authz.Actor:
    return authz.actor_for(make_person(username, role, path).user)


def test_key_kinds_are_servers_and_pcs_for_the_roots_administrators_pcs_for_who_may_create_them(groups):
    assert enrolment.key_kinds(person("chief", "superadm", "edu")) == ["server", "pc"]
    assert enrolment.key_kinds(person("ops", "poweradm", "edu")) == ["pc"]
    assert enrolment.key_kinds(person("head", "superadm", "edu.school")) == ["pc"]
    assert enrolment.key_kinds(person("teacher", "poweruser", "edu")) == []
    assert enrolment.key_kinds(authz.NOBODY) == []


def test_the_key_of_each_server_and_pc_says_whether_the_person_may_manage_it(groups):
    Host.objects.create(name="pc-12", mac=MAC, ip="10.0.0.12", cluster="cluster1", owner_group=groups["edu.school"])
    enrolled_key("cc-7", "cc")
    old = enrolled_key("pc-12-old", "pc", mac=MAC)
    enrolment.revoke(HostCredential.objects.get(name="pc-12-old"), enrolment_admin())
    enrolled_key("pc-12", "pc", mac=MAC)
    post(Client(), ENROL, request_of(new_key("pc-12-new"), "pc", ("nc",), mac=MAC))
    head = person("head", "poweradm", "edu.school")

    by_mac = enrolment.keys_by_mac(head, [MAC, "52:54:00:00:00:99"])
    assert list(by_mac) == [MAC]
    assert (by_mac[MAC].name, by_mac[MAC].state, by_mac[MAC].manageable) == ("pc-12", "active", True)
    HostCredential.objects.filter(name="pc-12").delete()
    HostCredential.objects.filter(name="pc-12-old").update(requested_at=timezone.now() + timedelta(minutes=1))
    assert enrolment.keys_by_mac(head, [MAC])[MAC].name == "pc-12-new"  # waiting, before a newer revoked one
    HostCredential.objects.filter(name="pc-12-new").delete()
    assert enrolment.keys_by_mac(head, [MAC])[MAC].public_key == old.public_key

    by_name = enrolment.keys_by_name(head, ["cc-7", "pc-12-old", "nc-404"])
    assert {name: key.manageable for name, key in by_name.items()} == {"cc-7": False, "pc-12-old": True}
    assert enrolment.keys_by_name(person("chief", "superadm", "edu"), ["cc-7"])["cc-7"].manageable


def test_a_join_token_is_usable_until_it_is_used_up_or_expires():
    now = timezone.now()
    token = JoinToken(uses_left=1, expires=now + timedelta(hours=1))
    assert enrolment.token_standing(token, now) == enrolment.USABLE
    assert enrolment.token_standing(JoinToken(uses_left=0, expires=token.expires), now) == enrolment.USED_UP
    assert enrolment.token_standing(JoinToken(uses_left=5, expires=now), now) == enrolment.EXPIRED


def test_a_new_pc_enrolled_with_a_schools_token_joins_the_school_when_it_registers(client, signed_client, groups):
    secret = token(kind="pc", roles=("nc",), owner_group=groups["edu.school"])
    assert post(client, ENROL, request_of(new_key("pc-12"), "pc", ("nc",), mac=MAC, token=secret)).status_code == 200
    registration = {"name": "pc-12", "ip": "10.0.0.12", "mac": MAC, "cluster": "cluster1", "heartbeat_seconds": 60}
    assert signed_client.post("/clc/api/1.0/register/host/", registration).status_code == 201  # via its CC
    assert Host.objects.get(mac=MAC).owner_group == groups["edu.school"]


def test_a_schools_administrator_manages_the_key_of_a_pc_their_token_enrolled_before_it_registered(groups):
    post_token = token(kind="pc", roles=("nc",), owner_group=groups["edu.school"])
    enrolment.enrol(EnrolmentRequest.model_validate(request_of(new_key("pc-12"), "pc", ("nc",), mac=MAC,
                                                               token=post_token)), address=None)
    head = authz.actor_for(make_person("head", "poweradm", "edu.school").user)
    other = authz.actor_for(make_person("other-head", "poweradm", "edu.other").user)
    credential = HostCredential.objects.get(name="pc-12")
    assert list(enrolment.manageable(head)) == [credential] and enrolment.may_manage(head, credential)
    assert list(enrolment.manageable(other)) == [] and not enrolment.may_manage(other, credential)


def test_the_roots_power_administrator_manages_the_key_of_a_pc_nobody_recorded(groups):
    post(Client(), ENROL, request_of(new_key("pc-12"), "pc", ("nc",), mac=MAC))
    credential = HostCredential.objects.get(name="pc-12")
    chief = authz.actor_for(make_person("chief", "poweradm", "edu").user)
    head = authz.actor_for(make_person("head", "poweradm", "edu.school").user)
    assert list(enrolment.manageable(chief)) == [credential] and enrolment.may_manage(chief, credential)
    assert list(enrolment.manageable(head)) == [] and not enrolment.may_manage(head, credential)


def test_a_revoked_host_comes_back_only_by_approval_even_with_a_token_left_in_its_configuration(client, groups):
    secret = token(uses=2)
    key = new_key("cc-7")
    assert post(client, ENROL, request_of(key, token=secret)).json()["state"] == "active"
    enrolment.revoke(HostCredential.objects.get(name="cc-7"), enrolment_admin())
    again = post(client, ENROL, request_of(key, token=secret))
    assert (again.status_code, again.json()["state"]) == (202, "pending")
    assert JoinToken.objects.get().uses_left == 1


def test_a_key_is_revoked_once(groups):
    enrolled_key("cc-7", "cc")
    credential = HostCredential.objects.get(name="cc-7")
    enrolment.revoke(credential, enrolment_admin())
    with pytest.raises(enrolment.EnrolmentRefused, match="revoked already"):
        enrolment.revoke(credential, enrolment_admin())


@pytest.mark.parametrize("change, field", [({"cluster": "Cluster 1"}, "cluster"), ({"label": "x" * 101}, "label"),
                                           ({"label": "a;rm -rf"}, "label")])
def test_a_join_token_with_a_bad_cluster_or_label_is_refused_naming_it(groups, change, field):
    values = {"kind": "server", "roles": ["cc"], "cluster": "cluster1"} | change
    with pytest.raises(enrolment.EnrolmentRefused) as refused:
        enrolment.issue_join_token(enrolment_admin(), **values)
    assert (refused.value.status, refused.value.field) == (400, field)


def test_nobody_swaps_the_key_waiting_for_approval_and_an_approval_takes_only_the_key_compared(client, groups):
    real, swapped = new_key("nc-9"), new_key("nc-9")
    assert post(client, ENROL, request_of(real, roles=("nc",))).status_code == 202
    refused = post(client, ENROL, request_of(swapped, roles=("nc",)))
    assert (refused.status_code, list(refused.json())) == (409, ["public_key"])
    credential = HostCredential.objects.get(name="nc-9")
    assert credential.public_key == real.public_key
    with pytest.raises(enrolment.EnrolmentRefused, match="not the one approved"):
        enrolment.approve(credential, enrolment_admin(), swapped.fingerprint)
    assert HostCredential.objects.get(name="nc-9").state == "pending"
    enrolment.approve(credential, enrolment_admin(), real.fingerprint)
    assert trust.peer("nc-9").public_key == real.public_key
