"""The roles' REST APIs: ping, registration, status, node commands, and refusal of unsigned or bad calls."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model

from luhyaapi.client import RemoteError, RoleClient
from luhyaapi.trust import own_key
from luhyadb.choices import KeyStateChoices
from luhyadb.models import Account, Host, HostCredential, OwnerGroup, Server
from luhyadb.services.initial_data import seed_initial_data
from tests.commands import queued, take_queued
from tests.keys import enrolled_key, new_key

pytestmark = [pytest.mark.database, pytest.mark.django_db(transaction=True)]

REGISTRATION = {"role": "nc", "name": "nc-7", "ip": "10.0.0.7", "mac": "52:54:00:00:00:07", "cluster": "cluster1",
                "api_url": "http://10.0.0.7:8000", "heartbeat_seconds": 5,
                "capacity": {"cpus": 4, "memory_mb": 8192, "disk_mb": 100000}}


@pytest.mark.parametrize("role", ["clc", "walrus", "cc", "nc", "sc", "watch"])
def test_every_role_answers_ping(client, role):
    response = client.get(f"/{role}/api/1.0/ping/")
    assert response.status_code == 200
    assert response.json()["role"] == role


def test_status_refuses_an_unsigned_call_with_401_and_a_json_body(client):
    response = client.get("/clc/api/1.0/status/")
    assert response.status_code == 401
    assert "detail" in response.json()


def test_status_refuses_a_wrongly_signed_call_with_403_and_logs_it(signed_client, caplog):
    response = signed_client.get("/clc/api/1.0/status/", key=new_key(own_key().name))
    assert response.status_code == 403
    assert "wrong signature" in response.json()["detail"]
    assert any("refused GET /clc/api/1.0/status/" in record.getMessage() for record in caplog.records)


def test_status_is_for_people_a_hosts_signed_call_gets_a_403_saying_so(signed_client):
    response = signed_client.get("/clc/api/1.0/status/")
    assert (response.status_code, response.json()["detail"]) == (403, "this call is not for signed hosts")


def test_status_lists_servers_and_hosts_that_registered(signed_client, api_client):
    assert signed_client.post("/clc/api/1.0/register/server/", REGISTRATION).status_code == 201
    host = {"name": "pc-1", "ip": "192.168.0.10", "mac": "52:54:00:00:01:01", "cluster": "cluster1",
            "heartbeat_seconds": 300, "memory_mb": 4096, "disk_mb": 1000}
    assert signed_client.post("/clc/api/1.0/register/host/", host).status_code == 201
    status = api_client.get("/clc/api/1.0/status/").json()
    (server,) = [s for s in status["services"] if s["name"] == "nc-7"]
    assert (server["role"], server["state"], server["memory_mb"], server["cluster"]) == ("nc", "online", 8192,
                                                                                         "cluster1")
    assert server["age_seconds"] is not None
    assert [h["name"] for h in status["hosts"]] == ["pc-1"]


def test_status_filters_and_paginates(signed_client, api_client):
    for n in range(5):
        signed_client.post("/clc/api/1.0/register/server/", REGISTRATION | {"name": f"nc-{n}"})
    store = enrolled_key("store", "walrus")
    signed_client.post("/clc/api/1.0/register/server/", REGISTRATION | {"role": "walrus", "name": "store"}, key=store)
    page = api_client.get("/clc/api/1.0/status/?role=nc&limit=2&offset=2").json()
    assert (page["count"], [s["name"] for s in page["services"]]) == (5, ["nc-2", "nc-3"])


@pytest.mark.parametrize("query, field", [("role=dancer", "role"), ("limit=0", "limit"), ("limit=x", "limit"),
                                          ("state=sleepy", "state")])
def test_status_names_a_bad_query_parameter(api_client, query, field):
    response = api_client.get(f"/clc/api/1.0/status/?{query}")
    assert response.status_code == 400
    assert field in response.json()


def test_status_is_open_to_administrators_of_the_cloud_but_not_to_other_users(client):
    user_model = get_user_model()
    seed_initial_data()
    root = OwnerGroup.objects.get(path="edu")
    pupil = user_model.objects.create_user("pupil", password="pw-pupil-123")
    Account.objects.create(user=pupil, owner_group=root, role="user")
    client.login(username="pupil", password="pw-pupil-123")
    assert client.get("/clc/api/1.0/status/").status_code == 403
    teacher = user_model.objects.create_user("teacher", password="pw-teacher-123", is_staff=True)
    Account.objects.create(user=teacher, owner_group=root, role="poweradm")
    client.login(username="teacher", password="pw-teacher-123")
    assert client.get("/clc/api/1.0/status/").status_code == 200


def test_registration_refuses_unsigned_calls(client):
    response = client.post("/clc/api/1.0/register/server/", REGISTRATION, content_type="application/json")
    assert response.status_code == 401
    assert not Server.objects.exists()


@pytest.mark.parametrize("field, value", [("name", "nc 7; reboot"), ("name", "../etc"), ("role", "dancer"),
                                          ("mac", "zz"), ("heartbeat_seconds", 0), ("api_url", "javascript:x")])
def test_registration_names_the_bad_field(signed_client, field, value):
    response = signed_client.post("/clc/api/1.0/register/server/", REGISTRATION | {field: value})
    assert response.status_code == 400
    assert field in response.json()
    assert not Server.objects.exists()


def test_an_nc_registers_with_its_cc_which_announces_it_to_the_clc(live_server, cloud_at):
    cloud_at(live_server.url)
    client = RoleClient(live_server.url, enrolled_key("nc-7"))
    assert client.post("/cc/api/1.0/register/server/", REGISTRATION)["name"] == "nc-7"
    from cc.models import ClusterNode

    assert ClusterNode.objects.get(name="nc-7").ip == "10.0.0.7"
    assert Server.objects.get(role="nc", name="nc-7").state == "online"


def test_a_cc_refuses_a_node_of_another_cluster(live_server, cloud_at):
    cloud_at(live_server.url)
    client = RoleClient(live_server.url, enrolled_key("nc-7", cluster="elsewhere"))
    with pytest.raises(RemoteError) as error:
        client.post("/cc/api/1.0/register/server/", REGISTRATION | {"cluster": "elsewhere"})
    assert error.value.status == 409


@pytest.mark.parametrize("registration, reason", [
    (REGISTRATION | {"name": "nc-8"}, "nc-7 may register only itself, not nc-8"),
    (REGISTRATION | {"cluster": "elsewhere"}, "nc-7 was enrolled in cluster cluster1, not elsewhere"),
    (REGISTRATION | {"role": "sc"}, "nc-7 was enrolled as nc, not as sc"),
    (REGISTRATION | {"classroom_pc": True}, "nc-7 was enrolled as nc, not as a PC"),
])
def test_a_node_registers_only_itself_as_what_it_was_enrolled(live_server, cloud_at, registration, reason):
    cloud_at(live_server.url)
    with pytest.raises(RemoteError) as error:
        RoleClient(live_server.url, enrolled_key("nc-7")).post("/cc/api/1.0/register/server/", registration)
    assert (error.value.status, error.value.detail) == (403, reason)
    assert not Server.objects.filter(name="nc-8").exists()


def test_a_classroom_pc_registers_through_its_cc(live_server, cloud_at):
    cloud_at(live_server.url)
    client = RoleClient(live_server.url, enrolled_key("pc-1", "pc", mac="52:54:00:00:01:01"))
    client.post("/cc/api/1.0/register/host/", {"name": "pc-1", "ip": "192.168.0.10", "mac": "52:54:00:00:01:01",
                                               "cluster": "cluster1", "heartbeat_seconds": 300})
    assert Host.objects.get(mac="52:54:00:00:01:01").name == "pc-1"


def test_a_command_for_a_node_goes_clc_to_cc_to_the_nodes_queue(live_server, cloud_at, api_client):
    cloud_at(live_server.url)
    RoleClient(live_server.url, enrolled_key("nc-7")).post("/cc/api/1.0/register/server/", REGISTRATION)
    RoleClient(live_server.url, enrolled_key("cc-1", "cc")).post(
        "/clc/api/1.0/register/server/", REGISTRATION | {"role": "cc", "name": "cc-1", "api_url": live_server.url})
    response = api_client.post("/clc/api/1.0/nodes/nc-7/commands/", {"op": "status/report"})
    assert response.status_code == 202, response.content
    answer = response.json()
    assert answer["op"] == "status/report"

    got = take_queued("nc-7")
    assert [(item.task, item.task_id, item.command.op, item.command.msg_id) for item in got] == [
        ("nc.status_report", answer["msg_id"], "status/report", answer["msg_id"])]


def test_a_node_whose_key_was_revoked_is_sent_no_command(live_server, cloud_at, api_client):
    cloud_at(live_server.url)
    RoleClient(live_server.url, enrolled_key("nc-7")).post("/cc/api/1.0/register/server/", REGISTRATION)
    RoleClient(live_server.url, enrolled_key("cc-1", "cc")).post(
        "/clc/api/1.0/register/server/", REGISTRATION | {"role": "cc", "name": "cc-1", "api_url": live_server.url})
    HostCredential.objects.filter(name="nc-7").update(state=KeyStateChoices.REVOKED)
    response = api_client.post("/clc/api/1.0/nodes/nc-7/commands/", {"op": "status/report"})
    assert response.status_code == 409, response.content
    assert response.json()["detail"] == ("node controller 'nc-7' is not trusted (its key is not active): it is sent "
                                         "no commands")
    assert queued("nc-7") == []


def test_a_command_for_an_unknown_node_is_a_404(api_client):
    response = api_client.post("/clc/api/1.0/nodes/nc-404/commands/", {"op": "status/report"})
    assert response.status_code == 404
    assert "nc-404" in response.json()["detail"]


def test_a_command_with_a_hostile_node_name_or_op_is_a_400(api_client):
    assert api_client.post("/clc/api/1.0/nodes/NC;reboot/commands/", {"op": "status/report"}).status_code == 400
    response = api_client.post("/clc/api/1.0/nodes/nc-1/commands/", {"op": "status/report; reboot"})
    assert response.status_code == 400
    assert "op" in response.json()
