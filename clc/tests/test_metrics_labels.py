"""What the cloud tells a node about an instance's metrics (issue 17): its image, owner group and monitoring switch
go with each run (CLC -> CC, a real REST call, -> the node's ``instance/run`` command as ``labels``); the switch is
set through the API (on its own at any time: the node of a run at work is told at once with ``instance/monitoring``)
and the console's forms."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model

from cc.models import ClusterInstance
from luhyadb.models import Image, ImageVersion, Instance, OwnerGroup, Server, VMType
from tests.commands import queued

pytestmark = [pytest.mark.database, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def records():
    root = OwnerGroup.objects.create(name="root", path="edu")
    OwnerGroup.objects.create(name="Class 2", path="edu.school1.class2")
    image = Image.objects.create(image_id="img-0000abcd", name="Test VM", owner_group=root, current_version=1)
    ImageVersion.objects.create(image=image, number=1, label="1.0.0", size_bytes=1024, sha256="b" * 64,
                                format="qcow2")
    tiny = VMType.objects.create(name="tiny", cpus=1, memory_mb=256, disk_gb=1)
    return {"image": image, "tiny": tiny}


def define(api_client, **changes) -> dict:
    body = {"name": "Maths desktop", "kind": "vs", "image": "img-0000abcd", "vm_type": "tiny",
            "owner_group": "edu.school1.class2"} | changes
    response = api_client.post("/clc/api/1.0/instances/", body)
    assert response.status_code == 201, response.json()
    return response.json()


def run_labels(api_client, insid: str) -> dict:
    queued("nc-1")  # what earlier runs left on the node's queue
    response = api_client.post(f"/clc/api/1.0/instances/{insid}/run/", {})
    assert response.status_code == 202, response.json()
    [command] = queued("nc-1")
    assert command.op == "instance/run"
    return command.paras["labels"]


def test_the_nodes_run_command_carries_the_instances_image_owner_group_and_monitoring(api_client, one_node_cloud,
                                                                                      records):
    instance = define(api_client, monitoring=False)
    assert instance["monitoring"] is False
    assert run_labels(api_client, instance["instance_id"]) == {
        "image_id": "img-0000abcd", "owner_group": "edu.school1.class2", "monitoring": False}
    assert define(api_client, name="Other")["monitoring"] is True, "monitored unless said otherwise"


def test_monitoring_is_switched_alone_while_it_runs_and_goes_with_the_next_run(api_client, one_node_cloud, records):
    insid = define(api_client)["instance_id"]
    assert run_labels(api_client, insid)["monitoring"] is True
    switched = api_client.request("PATCH", f"/clc/api/1.0/instances/{insid}/", {"monitoring": False})
    assert switched.status_code == 200, switched.json()
    assert (switched.json()["monitoring"], switched.json()["state"]) == (False, "scheduled")
    refused = api_client.request("PATCH", f"/clc/api/1.0/instances/{insid}/", {"monitoring": True, "name": "New"})
    assert refused.status_code == 400 and "stop it before changing it" in str(refused.json()["state"])
    assert Instance.objects.get(instance_id=insid).monitoring is False, "a refused change changes nothing"
    Instance.objects.filter(instance_id=insid).update(state="stopped")  # as the node's report of its stop leaves it
    ClusterInstance.objects.filter(instance_id=insid).update(state="stopped")
    assert run_labels(api_client, insid)["monitoring"] is False


def switch(api_client, insid: str, monitoring: bool) -> None:
    response = api_client.request("PATCH", f"/clc/api/1.0/instances/{insid}/", {"monitoring": monitoring})
    assert response.status_code == 200, response.json()
    assert response.json()["monitoring"] is monitoring


def test_switching_a_run_at_work_tells_its_node_at_once_naming_the_run(api_client, one_node_cloud, records):
    insid = define(api_client)["instance_id"]
    run_labels(api_client, insid)
    switch(api_client, insid, False)
    [command] = queued("nc-1")
    assert command.op == "instance/monitoring"
    assert command.paras | {"at": 0} == {"insid": insid, "run": 1, "monitoring": False, "at": 0}
    switch(api_client, insid, False)
    assert queued("nc-1") == [], "no change, nothing sent"
    switch(api_client, insid, True)
    [again] = queued("nc-1")
    assert again.paras["monitoring"] is True and again.paras["at"] >= command.paras["at"]


def test_a_stopped_instance_or_an_unreachable_node_is_sent_nothing_and_the_next_run_carries_the_switch(
        api_client, one_node_cloud, records):
    insid = define(api_client)["instance_id"]
    switch(api_client, insid, False)  # defined: no run anywhere
    assert queued("nc-1") == []
    run_labels(api_client, insid)
    Server.objects.filter(role="cc").update(state="offline")
    switch(api_client, insid, True)  # saved, though its cluster's controller cannot pass it on
    assert queued("nc-1") == []
    Server.objects.filter(role="cc").update(state="online")
    Instance.objects.filter(instance_id=insid).update(state="stopped")
    ClusterInstance.objects.filter(instance_id=insid).update(state="stopped")
    assert run_labels(api_client, insid)["monitoring"] is True


def test_a_monitoring_value_that_is_not_a_boolean_is_a_400_naming_it(api_client, one_node_cloud, records):
    insid = define(api_client)["instance_id"]
    response = api_client.request("PATCH", f"/clc/api/1.0/instances/{insid}/", {"monitoring": "sometimes"})
    assert response.status_code == 400 and "monitoring" in response.json()
    schema = api_client.get("/clc/api/1.0/schema/")
    assert schema.status_code == 200 and "its node is told at once" in schema.content.decode()


def test_the_console_forms_define_and_change_the_monitoring_switch(client, records):
    client.force_login(get_user_model().objects.create_user("boss", is_staff=True, is_superuser=True))
    group = OwnerGroup.objects.get(path="edu.school1.class2")
    page = client.get("/clc/instances/new/").content.decode()
    assert 'name="monitoring"' in page and "its node is told at once" in page
    response = client.post("/clc/instances/new/", {
        "name": "Quiet", "kind": "vs", "image": records["image"].pk, "vm_type": records["tiny"].pk,
        "owner_group": group.pk, "services": "", "pinned_node": ""})  # a checkbox left unticked is not sent
    assert response.status_code == 302
    instance = Instance.objects.get(name="Quiet")
    assert instance.monitoring is False
    response = client.post(f"/clc/instances/{instance.instance_id}/edit/", {
        "name": "Quiet", "vm_type": records["tiny"].pk, "monitoring": "on"})
    assert response.status_code == 302
    assert Instance.objects.get(pk=instance.pk).monitoring is True


def test_the_instance_page_shows_the_switches_and_turns_monitoring_off_telling_the_node(
        client, api_client, one_node_cloud, records):
    client.force_login(get_user_model().objects.create_user("boss", is_staff=True, is_superuser=True))
    insid = define(api_client, restart_when_dead=True)["instance_id"]
    run_labels(api_client, insid)
    page = client.get(f"/clc/instances/{insid}/").content.decode()
    assert "on: its node samples it" in page and "Turn off" in page and "starts it again" in page
    response = client.post(f"/clc/instances/{insid}/monitoring/", {"monitoring": "off"}, follow=True)
    assert "is off; node nc-1 is told at once" in response.content.decode()
    [command] = queued("nc-1")
    assert (command.op, command.paras["monitoring"]) == ("instance/monitoring", False)
    assert "Turn on" in response.content.decode()
    response = client.post(f"/clc/instances/{insid}/monitoring/", {"monitoring": "off"}, follow=True)
    assert "is off already" in response.content.decode() and queued("nc-1") == []

    response = client.post(f"/clc/instances/{insid}/monitoring/", {"monitoring": "maybe"}, follow=True)
    assert "monitoring must be on or off" in response.content.decode()
    assert Instance.objects.get(instance_id=insid).monitoring is False and queued("nc-1") == []
