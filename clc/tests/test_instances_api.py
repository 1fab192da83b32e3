"""The instances API on the CLC: define, run through a cluster controller (a real REST call to the CC role),
stop, delete, and clear refusals."""

from __future__ import annotations

import json
import re

import pytest

from cc.models import ClusterInstance, PortLease
from clc.services.status import StatusFolder
from luhyaapi.messages import InsStatus
from luhyadb.models import Image, ImageVersion, Instance, OwnerGroup, Server, TaskTransaction, VMType
from tests.commands import queued

pytestmark = [pytest.mark.database, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def image():
    group = OwnerGroup.objects.create(name="root", path="edu")
    image = Image.objects.create(image_id="img-0000abcd", name="Test VM", owner_group=group, current_version=1)
    ImageVersion.objects.create(image=image, number=1, label="1.0.0", size_bytes=1024, sha256="b" * 64,
                                format="qcow2")
    VMType.objects.create(name="tiny", cpus=1, memory_mb=256, disk_gb=1)
    VMType.objects.create(name="huge", cpus=1, memory_mb=65536, disk_gb=1)
    return image


def define(api_client, **changes):
    body = {"name": "Maths desktop", "kind": "rvd", "image": "img-0000abcd", "vm_type": "tiny", "owner_group": "edu",
            "services": [80]} | changes
    response = api_client.post("/clc/api/1.0/instances/", body)
    assert response.status_code == 201, response.json()
    return response.json()


def test_an_instance_is_defined_with_an_id_a_mac_and_state_defined(api_client, one_node_cloud, image):
    instance = define(api_client)
    assert instance["instance_id"].startswith("ins-")
    assert instance["mac"].startswith("52:54:00:")
    assert (instance["state"], instance["node"], instance["runs"]) == ("defined", "", 0)
    assert instance["tid"] == f"img-0000abcd:img-0000abcd:{instance['instance_id']}"


def test_run_places_it_through_the_cluster_controller_and_says_how_to_reach_it(api_client, one_node_cloud, image):
    insid = define(api_client)["instance_id"]
    response = api_client.post(f"/clc/api/1.0/instances/{insid}/run/", {})
    assert response.status_code == 202, response.json()
    running = response.json()
    ports = dict(PortLease.objects.values_list("purpose", "port"))
    assert (running["state"], running["node"], running["cluster"], running["runs"]) == (
        "scheduled", "nc-1", one_node_cloud.cluster, 1)
    assert running["console_url"] == f"vnc://127.0.0.1:{ports['console']}"
    assert running["access"]["http"] == f"http://127.0.0.1:{ports['tcp/80']}/"
    task = TaskTransaction.objects.get(tid=running["tid"])
    assert (task.phase, task.state, task.done) == ("preparing", "init", False)


def test_each_run_gets_its_own_console_password_which_reaches_the_node_but_not_the_record(
        api_client, one_node_cloud, image):
    insid = define(api_client)["instance_id"]
    queued("nc-1")  # what earlier tests left on the node's queue
    passwords = []
    for _ in range(2):
        running = api_client.post(f"/clc/api/1.0/instances/{insid}/run/", {}).json()
        password = Instance.objects.get(instance_id=insid).console_password
        assert re.fullmatch(r"[A-Za-z0-9]{8}", password)
        assert password not in json.dumps(running)
        assert password not in json.dumps(api_client.get(f"/clc/api/1.0/instances/{insid}/").json())
        (command,) = [command for command in queued("nc-1") if command.op == "instance/run"]
        assert command.paras["options"]["console"]["password"] == password
        passwords.append(password)
        Instance.objects.filter(instance_id=insid).update(state="stopped")
        ClusterInstance.objects.filter(instance_id=insid).update(state="stopped")
    assert passwords[0] != passwords[1]


def test_the_console_call_gives_url_and_password_of_the_running_console_only(api_client, one_node_cloud, image):
    insid = define(api_client)["instance_id"]
    assert api_client.get(f"/clc/api/1.0/instances/{insid}/console/").status_code == 409
    api_client.post(f"/clc/api/1.0/instances/{insid}/run/", {})
    Instance.objects.filter(instance_id=insid).update(state="running")
    instance = Instance.objects.get(instance_id=insid)
    response = api_client.get(f"/clc/api/1.0/instances/{insid}/console/")
    assert response.status_code == 200
    assert response.json() == {"url": instance.console_url, "protocol": "vnc", "password": instance.console_password}


def test_running_a_running_instance_is_a_409(api_client, one_node_cloud, image):
    insid = define(api_client)["instance_id"]
    api_client.post(f"/clc/api/1.0/instances/{insid}/run/", {})
    response = api_client.post(f"/clc/api/1.0/instances/{insid}/run/", {})
    assert response.status_code == 409
    assert "stop it first" in response.json()["detail"]


def test_when_no_node_fits_the_409_says_why_for_each_node(api_client, one_node_cloud, image):
    insid = define(api_client, vm_type="huge")["instance_id"]
    response = api_client.post(f"/clc/api/1.0/instances/{insid}/run/", {})
    assert response.status_code == 409
    assert "nc-1: 3584 MB memory free, 65536 MB needed" in response.json()["detail"]
    assert Instance.objects.get(instance_id=insid).state == "defined"


def test_with_no_cluster_controller_online_run_is_a_503(api_client, one_node_cloud, image):
    insid = define(api_client)["instance_id"]
    Server.objects.filter(role="cc").update(state="offline")
    response = api_client.post(f"/clc/api/1.0/instances/{insid}/run/", {})
    assert response.status_code == 503
    assert "no online cluster controller" in response.json()["detail"]


def test_stop_and_delete_follow_the_nodes_reports(api_client, one_node_cloud, image):
    insid = define(api_client)["instance_id"]
    api_client.post(f"/clc/api/1.0/instances/{insid}/run/", {})
    folder = StatusFolder(missed_heartbeats=3, db_touch_seconds=60)
    folder.fold([InsStatus(insid=insid, node="nc-1", seq=1, state="running", guest_ip="10.0.2.15")])
    assert Instance.objects.get(instance_id=insid).guest_ip == "10.0.2.15"
    assert api_client.post(f"/clc/api/1.0/instances/{insid}/stop/", {}).status_code == 202
    assert Instance.objects.get(instance_id=insid).state == "stopping"
    folder.fold([InsStatus(insid=insid, node="nc-1", seq=1, state="stopped")])
    assert Instance.objects.get(instance_id=insid).state == "stopped"
    assert api_client.post(f"/clc/api/1.0/instances/{insid}/stop/", {}).status_code == 409
    response = api_client.request("DELETE", f"/clc/api/1.0/instances/{insid}/")
    assert (response.status_code, response.json()) == (202, {"state": "deleting"})
    folder.fold([InsStatus(insid=insid, node="nc-1", seq=1, state="deleted")])
    assert not Instance.objects.filter(instance_id=insid).exists()


def test_an_instance_that_never_ran_is_deleted_at_once(api_client, one_node_cloud, image):
    insid = define(api_client)["instance_id"]
    assert api_client.request("DELETE", f"/clc/api/1.0/instances/{insid}/").status_code == 204
    assert not Instance.objects.exists()


def test_a_running_instance_cannot_be_changed(api_client, one_node_cloud, image):
    insid = define(api_client)["instance_id"]
    api_client.post(f"/clc/api/1.0/instances/{insid}/run/", {})
    response = api_client.request("PATCH", f"/clc/api/1.0/instances/{insid}/", {"vm_type": "huge"})
    assert response.status_code == 400
    assert "stop it before changing it" in str(response.json()["state"])


@pytest.mark.parametrize("field, value", [
    ("name", "x; rm -rf /"), ("name", "../../etc"), ("name", "nul\x00"), ("kind", "vm"), ("image", "img-ffffffff"),
    ("image", "../img"), ("vm_type", "gigantic"), ("services", [0]), ("services", [80, 80]), ("services", ["80; id"]),
    ("pinned_node", "NC_1;reboot"), ("owner_group", "no.group"),
])
def test_hostile_or_unknown_values_are_refused_with_400_naming_the_field(api_client, one_node_cloud, image, field,
                                                                         value):
    body = {"name": "Maths desktop", "kind": "rvd", "image": "img-0000abcd", "vm_type": "tiny", "owner_group": "edu"}
    response = api_client.post("/clc/api/1.0/instances/", body | {field: value})
    assert response.status_code == 400
    assert field in response.json()
    assert not Instance.objects.exists()


def test_an_image_without_a_file_cannot_back_an_instance(api_client, one_node_cloud, image):
    Image.objects.filter(pk=image.pk).update(current_version=0)
    body = {"name": "Maths desktop", "kind": "rvd", "image": "img-0000abcd", "vm_type": "tiny", "owner_group": "edu"}
    response = api_client.post("/clc/api/1.0/instances/", body)
    assert response.status_code == 400
    assert "no file yet" in str(response.json()["image"])


@pytest.mark.parametrize("bad_id", ["ins-xyz", "ins-0000abc%3Bid", "%2E%2E", "img-0000abcd"])
def test_a_malformed_instance_id_in_the_path_is_a_400(api_client, one_node_cloud, image, bad_id):
    response = api_client.post(f"/clc/api/1.0/instances/{bad_id}/run/", {})
    assert response.status_code == 400
    assert "instance_id" in response.json()


def test_a_school_administrator_assigns_desktops_to_their_own_people_and_never_learns_where_others_are(client, image):
    from django.contrib.auth import get_user_model

    from luhyadb.models import Account, OwnerGroupPermission

    school, other = (OwnerGroup.objects.create(name=path, path=path) for path in ("edu.s1", "edu.s2"))
    OwnerGroupPermission.objects.create(owner_group=school, resource_type="instance", read=True, write=True,
                                        create=True)
    OwnerGroupPermission.objects.create(owner_group=school, resource_type="image", read=True)
    users = {name: get_user_model().objects.create_user(name) for name in ("head", "pupil-1", "pupil-2")}
    for name, group, role in (("head", school, "poweradm"), ("pupil-1", school, "user"), ("pupil-2", other, "user")):
        Account.objects.create(user=users[name], owner_group=group, role=role)
    Image.objects.filter(pk=image.pk).update(owner_group=school)
    client.force_login(users["head"])
    body = {"name": "Desk", "kind": "rvd", "image": image.image_id, "vm_type": "tiny", "owner_group": "edu.s1"}
    assert client.post("/clc/api/1.0/instances/", body | {"assigned_to": "pupil-1"},
                       content_type="application/json").status_code == 201
    refused = client.post("/clc/api/1.0/instances/", body | {"assigned_to": "pupil-2"},
                          content_type="application/json")
    assert (refused.status_code, list(refused.json())) == (400, ["assigned_to"])
    assert "edu.s2" not in refused.content.decode()
