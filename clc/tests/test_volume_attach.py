"""Attaching and detaching volumes, the CLC's half (issue 16), against this test server's real cluster controller
(which placed the instance on nc-1) and its real storage controller (sc-1, exporting with a tgtd of the test's
own): an attach makes the volume ``attaching`` and the CC exports it to nc-1 and queues ``volume/attach`` there;
the node's reports, folded as the CLC's status daemon folds them, make it ``in-use`` with its device or
``available`` again, a late or repeated report changing nothing newer; a detach likewise. The refusals: an attached
volume, a stopped instance, another cluster's instance, another school's or an unknown instance (a 400 naming
``instance_id`` alike), a CC that does not know the instance (the record put back). Every run of an instance
carries its volumes to the node; stopping keeps them, deleting the instance frees them. The console's Attach form
and Detach button, and the instance's page listing its volumes."""

from __future__ import annotations

import pytest

from clc.services.instances import define_instance, run_instance
from clc.services.status import StatusFolder
from clc.tests.classes import as_, report
from luhyaapi.messages import InsStatus, TaskStatus
from luhyaapi.volumes import RUN_VOLUMES, VolumeAttachParas, VolumeDetachParas, initiator_iqn, volume_task_id
from luhyadb.models import Instance, TaskTransaction, Volume
from sc.models import Export
from tests.commands import queued

pytestmark = [pytest.mark.database, pytest.mark.django_db(transaction=True)]

API = "/clc/api/1.0"
MIB = 2**20
FOLDER = StatusFolder(missed_heartbeats=3, db_touch_seconds=60)


def new_volume(schools, name: str = "Data") -> str:
    answer = as_(schools["head1"]).post(f"{API}/volumes/", {"name": name, "owner_group": "edu.s1", "size": 8 * MIB},
                                        content_type="application/json")
    assert answer.status_code == 201, answer.content
    return answer.json()["volume_id"]


def running_server(schools, name: str = "server", school: str = "s1") -> Instance:
    """A virtual server of the school, placed on nc-1 by the CC and reported running (its run's command taken off
    nc-1's queue)."""
    instance = define_instance(name=name, kind="vs", image=schools["images"][f"edu.{school}"], vm_type=schools["tiny"],
                               owner_group=schools[school])
    run_instance(instance)
    report(instance, "booting")
    report(instance, "running")
    queued("nc-1")
    instance.refresh_from_db()
    assert (instance.state, instance.node, instance.cluster) == ("running", "nc-1", "cluster1")
    return instance


def attach(user, volume_id: str, instance_id: str):
    return as_(user).post(f"{API}/volumes/{volume_id}/attach/", {"instance_id": instance_id},
                          content_type="application/json")


def detach(user, volume_id: str):
    return as_(user).post(f"{API}/volumes/{volume_id}/detach/", content_type="application/json")


def node_says(volume_id: str, insid: str, state: str, **fields) -> Volume:
    """The node's report on the volume's task, folded by the CLC's status folder (one for the whole test, as the
    daemon's: it remembers what it folded)."""
    phase = "failed" if fields.get("failed") else "editing"
    FOLDER.fold([TaskStatus(tid=volume_task_id(volume_id, insid), phase=phase, state=state, **fields)])
    return Volume.objects.select_related("instance").get(volume_id=volume_id)


def attached(volume_id: str, insid: str, device: str = "vdb") -> Volume:
    return node_says(volume_id, insid, "attached", progress=100, done=True,
                     result={"volume_id": volume_id, "insid": insid, "device": device, "serial": volume_id})


def detached(volume_id: str, insid: str) -> Volume:
    return node_says(volume_id, insid, "detached", progress=100, done=True)


def test_an_attach_asks_the_cc_and_the_nodes_reports_make_it_in_use_then_available_again(schools, exporting,
                                                                                        caplog):
    head = schools["head1"]
    volume_id, server = new_volume(schools), running_server(schools)
    answer = attach(head, volume_id, server.instance_id)
    assert answer.status_code == 202, answer.content
    assert (answer.json()["state"], answer.json()["instance"]) == ("attaching", server.instance_id)
    # The CC had sc-1 export it to nc-1 and queued the attach there, on the volume's own task.
    export = Export.objects.get(volume__volume_id=volume_id)
    assert (export.node, export.initiator) == ("nc-1", initiator_iqn("nc-1"))
    [command] = queued("nc-1")
    assert (command.op, command.tid) == ("volume/attach", volume_task_id(volume_id, server.instance_id))
    assert VolumeAttachParas.model_validate(command.paras).target.volume_id == volume_id

    volume = attached(volume_id, server.instance_id)
    assert (volume.state, volume.instance, volume.device) == ("in-use", server, "vdb")
    assert not TaskTransaction.objects.filter(tid__startswith="vol-").exists(), "the volume's record, not a task's"
    assert "malformed tid" not in caplog.text
    page = as_(head).get(f"/clc/instances/{server.instance_id}/").content.decode()
    assert volume_id in page and "vdb" in page

    answer = detach(head, volume_id)
    assert answer.status_code == 202, answer.content
    assert answer.json()["state"] == "detaching"
    [command] = queued("nc-1")
    assert command.op == "volume/detach"
    assert VolumeDetachParas.model_validate(command.paras).volume_id == volume_id
    volume = detached(volume_id, server.instance_id)
    assert (volume.state, volume.instance, volume.device) == ("available", None, "")

    # Again, on the same task id: the second attach's report is folded too (not taken for a repeat of the first).
    assert attach(head, volume_id, server.instance_id).status_code == 202
    assert attached(volume_id, server.instance_id, "vdc").state == "in-use"
    assert Volume.objects.get(volume_id=volume_id).device == "vdc"


def test_a_failed_attach_makes_it_available_and_a_failed_detach_in_use_again_with_the_nodes_reason(schools,
                                                                                                   exporting):
    head = schools["head1"]
    volume_id, server = new_volume(schools), running_server(schools)
    assert attach(head, volume_id, server.instance_id).status_code == 202
    volume = node_says(volume_id, server.instance_id, "attaching", failed=True, errormsg="iSCSI: Target not found")
    assert (volume.state, volume.instance) == ("available", None)
    assert "iSCSI: Target not found" in volume.message
    assert attach(head, volume_id, server.instance_id).status_code == 202
    attached(volume_id, server.instance_id)
    assert detach(head, volume_id).status_code == 202
    volume = node_says(volume_id, server.instance_id, "detaching", failed=True, errormsg="the guest kept the disk")
    assert (volume.state, volume.instance) == ("in-use", server)
    assert "the guest kept the disk" in volume.message


def test_late_or_repeated_reports_do_not_undo_a_newer_state(schools, exporting):
    head = schools["head1"]
    volume_id = new_volume(schools)
    first, second = running_server(schools, "first"), running_server(schools, "second")
    assert attach(head, volume_id, first.instance_id).status_code == 202
    attached(volume_id, first.instance_id)
    assert detach(head, volume_id).status_code == 202
    detached(volume_id, first.instance_id)
    assert attach(head, volume_id, second.instance_id).status_code == 202
    # The first instance's reports arrive again, late: the volume is on its way to the second.
    for late in (lambda: attached(volume_id, first.instance_id), lambda: detached(volume_id, first.instance_id),
                 lambda: node_says(volume_id, first.instance_id, "attaching", failed=True, errormsg="old")):
        volume = late()
        assert (volume.state, volume.instance) == ("attaching", second)
    attached(volume_id, second.instance_id)
    # A repeated "attached" after a detach was asked does not make it in-use again; a late failed attach neither.
    assert detach(head, volume_id).status_code == 202
    assert attached(volume_id, second.instance_id).state == "detaching"
    assert node_says(volume_id, second.instance_id, "attaching", failed=True, errormsg="old").state == "detaching"
    assert detached(volume_id, second.instance_id).state == "available"


def test_refusals_name_the_instance_or_the_field(schools, exporting):
    head = schools["head1"]
    volume_id, server = new_volume(schools), running_server(schools)
    other = new_volume(schools, "Other")
    refused = detach(head, volume_id)
    assert refused.status_code == 409 and "nothing to detach" in refused.json()["volume_id"][0], "not attached"
    for bad in ("", "ins-1", "../etc", "x" * 300):
        answer = attach(head, volume_id, bad)
        assert answer.status_code == 400 and "instance_id" in answer.json(), (bad, answer.content)
    unknown = attach(head, volume_id, "ins-0000dead")
    assert unknown.status_code == 400 and "instance_id" in unknown.json()
    # Another school's running instance: exactly as an unknown one.
    theirs = running_server(schools, "their server", "s2")
    refused = attach(head, volume_id, theirs.instance_id)
    assert (refused.status_code, list(refused.json())) == (400, ["instance_id"])
    assert refused.json()["instance_id"] == [f"no instance {theirs.instance_id} that you may use"]
    # A stopped instance: start it first.
    stopped = define_instance(name="stopped", kind="vs", image=schools["images"]["edu.s1"], vm_type=schools["tiny"],
                              owner_group=schools["s1"])
    answer = attach(head, volume_id, stopped.instance_id)
    assert answer.status_code == 409 and "start it first" in answer.json()["instance_id"][0]
    # Another cluster's instance.
    Instance.objects.filter(pk=stopped.pk).update(state="running", cluster="cluster2", node="nc-9")
    answer = attach(head, volume_id, stopped.instance_id)
    assert answer.status_code == 400 and "cluster" in answer.json()["instance_id"][0]
    # An attached volume names the instance it is on.
    assert attach(head, volume_id, server.instance_id).status_code == 202
    answer = attach(head, volume_id, server.instance_id.replace("ins-", "ins-"))
    assert answer.status_code == 202, "asked again while attaching to the same instance: the CC is asked again"
    attached(volume_id, server.instance_id)
    answer = attach(head, volume_id, server.instance_id)
    assert answer.status_code == 409 and server.instance_id in answer.json()["volume_id"][0]
    assert Volume.objects.get(volume_id=volume_id).state == "in-use"
    # A student may do nothing with volumes; a teacher of the other school does not find it.
    assert attach(schools["students"][0], other, server.instance_id).status_code == 403
    assert attach(schools["teacher2"], other, theirs.instance_id).status_code == 404
    # Detaching from a stopped instance: start it or delete the instance.
    report(server, "stopping")
    report(server, "stopped")
    answer = detach(head, volume_id)
    assert answer.status_code == 409 and "detaching from a stopped instance" in answer.json()["instance_id"][0]
    assert Volume.objects.get(volume_id=volume_id).state == "in-use", "it stays the instance's: back at its start"


def test_a_cc_refusal_puts_the_record_back(schools, exporting):
    volume_id = new_volume(schools)
    # Running as far as the CLC knows, but never placed by this cluster's CC: it answers 404.
    ghost = define_instance(name="ghost", kind="vs", image=schools["images"]["edu.s1"], vm_type=schools["tiny"],
                            owner_group=schools["s1"])
    Instance.objects.filter(pk=ghost.pk).update(state="running", cluster="cluster1", node="nc-1")
    answer = attach(schools["head1"], volume_id, ghost.instance_id)
    assert answer.status_code == 409, answer.content
    assert "not placed in this cluster" in answer.json()["detail"]
    volume = Volume.objects.get(volume_id=volume_id)
    assert (volume.state, volume.instance) == ("available", None)
    assert not Export.objects.exists(), "the CC refused before exporting anything"


def test_every_run_carries_the_volumes_stopping_keeps_them_and_deleting_the_instance_frees_them(schools,
                                                                                                exporting):
    head = schools["head1"]
    volume_id, server = new_volume(schools), running_server(schools)
    assert attach(head, volume_id, server.instance_id).status_code == 202
    queued("nc-1")
    attached(volume_id, server.instance_id)
    report(server, "stopping")
    report(server, "stopped")
    assert Volume.objects.get(volume_id=volume_id).state == "in-use"
    run_instance(server)
    [command] = queued("nc-1")
    assert command.op == "instance/run"
    assert [target["volume_id"] for target in command.paras[RUN_VOLUMES]] == [volume_id]
    # The instance is deleted on its node: its volume is free, not "in-use" on nothing.
    server.refresh_from_db()
    FOLDER.fold([InsStatus(insid=server.instance_id, node="nc-1", seq=server.runs, state="deleted")])
    assert not Instance.objects.filter(pk=server.pk).exists()
    volume = Volume.objects.get(volume_id=volume_id)
    assert (volume.state, volume.instance, volume.device) == ("available", None, "")


def test_a_detach_under_way_when_the_instance_stops_is_done(schools, exporting):
    head = schools["head1"]
    volume_id, server = new_volume(schools), running_server(schools)
    assert attach(head, volume_id, server.instance_id).status_code == 202
    attached(volume_id, server.instance_id)
    assert detach(head, volume_id).status_code == 202
    report(server, "stopping")
    report(server, "stopped")
    volume = Volume.objects.get(volume_id=volume_id)
    assert (volume.state, volume.instance) == ("available", None)


def test_the_volumes_page_attaches_to_a_running_instance_of_the_person_and_detaches(schools, exporting):
    head = as_(schools["head1"])
    volume_id, server = new_volume(schools), running_server(schools)
    theirs = running_server(schools, "their server", "s2")
    define_instance(name="resting", kind="vs", image=schools["images"]["edu.s1"], vm_type=schools["tiny"],
                    owner_group=schools["s1"])
    page = head.get(f"/clc/volumes/{volume_id}/").content.decode()
    assert 'id="attach-form"' in page and f'value="{server.instance_id}"' in page
    assert theirs.instance_id not in page and "resting" not in page, "only running instances the person may use"
    answer = head.post(f"/clc/volumes/{volume_id}/attach/", {"instance_id": theirs.instance_id}, follow=True)
    assert "Not done" in answer.content.decode() and Volume.objects.get(volume_id=volume_id).state == "available"
    answer = head.post(f"/clc/volumes/{volume_id}/attach/", {"instance_id": server.instance_id}, follow=True)
    assert "is being attached" in answer.content.decode()
    assert Volume.objects.get(volume_id=volume_id).state == "attaching"
    attached(volume_id, server.instance_id)
    page = head.get(f"/clc/volumes/{volume_id}/").content.decode()
    assert 'id="detach-form"' in page and 'id="attach-form"' not in page
    answer = head.post(f"/clc/volumes/{volume_id}/detach/", follow=True)
    assert "is being detached" in answer.content.decode()
    assert Volume.objects.get(volume_id=volume_id).state == "detaching"
