"""The CC's half of attaching volumes (issue 16), against a real storage controller: this test server's SC role
(registered with the CC as ``sc-1`` at the live server's address, its store in the test's data dir, a tgtd of the
test's own). The CLC's attach exports the volume to the instance's node and queues ``volume/attach`` with the SC's
target; its detach queues ``volume/detach``, and the node's report that it is done ends the export at the SC; a run
carries every volume's target (moved to the chosen node) and names those the SC would not export. Refusals: an
instance not placed here 404, not running 409 with nothing exported, an SC the cluster does not know 400 naming
``sc``, the SC's own refusals passed on, an SC away 503, bad ids 400 naming the field, other callers than the CLC
refused."""

from __future__ import annotations

import pytest

from cc.consumers.cc_status import CcStatusConsumer
from cc.models import ClusterInstance, ClusterNode, VolumeExport
from cc.services.instances import run_instance
from cc.services.nodes import NodeStatusRelay
from cc.tests.test_cc_status_consumer import Upstream
from cc.tests.test_instances import nodes, request  # noqa: F401 (the nodes fixture)
from luhyaapi.bus import InProcessBus
from luhyaapi.messages import TaskStatus
from luhyaapi.queues import cc_status
from luhyaapi.volumes import (
    RUN_VOLUMES,
    RUN_VOLUMES_MISSING,
    VolumeAttachParas,
    VolumeRef,
    VolumeTarget,
    initiator_iqn,
    target_iqn,
    volume_task_id,
)
from sc.models import Export
from sc.services.store import create_volume
from sc.services.targets import export_volume
from sc.tests.conftest import store, tgtd, through_iscsi  # noqa: F401 (the SC's store and tgtd fixtures)
from tests.commands import broker, queued
from tests.consuming import deliver
from tests.keys import enrolled_key
from tests.services import free_port_block

pytestmark = [pytest.mark.database, pytest.mark.django_db(transaction=True)]

API = "/cc/api/1.0"
INSID = "ins-0000000a"
VOLUME = "vol-0000c0c0"
MIB = 2**20


@pytest.fixture
def sc(cc, nodes, tgtd):  # noqa: F811
    """This test server's SC, registered with this CC as sc-1, keeping one volume of 8 MiB."""
    ClusterNode.objects.create(role="sc", name="sc-1", ip="127.0.0.1", api_url=cc.cc_url)
    create_volume(size=8 * MIB, volume_id=VOLUME)
    return "sc-1"


@pytest.fixture
def running(sc):
    """The instance placed on nc-1 and running there (its run's command taken off nc-1's queue)."""
    run_instance(broker(), request())
    queued("nc-1")
    ClusterInstance.objects.filter(instance_id=INSID).update(state="running")
    return INSID


def attach(client, insid=INSID, volume_id=VOLUME, sc="sc-1", **options):
    return client.post(f"{API}/instances/{insid}/volumes/", {"volume": {"volume_id": volume_id, "sc": sc}},
                       **options)


def detach(client, insid=INSID, volume_id=VOLUME, sc="sc-1", path_volume=None):
    return client.post(f"{API}/instances/{insid}/volumes/{path_volume or volume_id}/detach/",
                       {"volume": {"volume_id": volume_id, "sc": sc}})


def test_an_attach_exports_the_volume_to_the_instances_node_and_queues_its_attach_there(running, signed_client,
                                                                                        tmp_path):
    answer = attach(signed_client)
    assert answer.status_code == 202, answer.content
    tid = volume_task_id(VOLUME, INSID)
    assert answer.json() == {"insid": INSID, "volume_id": VOLUME, "node": "nc-1", "tid": tid}
    export = Export.objects.get(volume__volume_id=VOLUME)
    assert (export.node, export.initiator) == ("nc-1", initiator_iqn("nc-1"))
    [command] = queued("nc-1")
    assert (command.op, command.tid, command.key) == ("volume/attach", tid, f"{tid}:volume/attach")
    target = VolumeAttachParas.model_validate(command.paras).target
    assert (target.volume_id, target.iqn, target.initiator) == (VOLUME, target_iqn(VOLUME), initiator_iqn("nc-1"))
    # The node gets a target that logs in: the SC's export itself, CHAP secret and all.
    through_iscsi(target, tmp_path, "read 0 4096")
    # Asked again (the CLC lost the answer): the SC answers the same export, the node gets the same attach again.
    assert attach(signed_client).status_code == 202
    [again] = queued("nc-1")
    assert VolumeAttachParas.model_validate(again.paras).target == target


def relay_from_node(message) -> list:
    """Put a node's report on the cluster's status queue, signed by nc-1, and run the CC's consumer; returns what
    went up to the CLC."""
    bus, upstream = InProcessBus(), Upstream()
    bus.publish(cc_status("cluster1"), message, key=enrolled_key("nc-1"))
    deliver(bus, cc_status("cluster1"), CcStatusConsumer(NodeStatusRelay(upstream, touch_seconds=0)).consume, 1)
    return upstream.published


def test_a_detach_is_queued_and_the_export_ends_when_the_node_reports_it_done(running, signed_client, tgtd):  # noqa: F811
    assert attach(signed_client).status_code == 202
    queued("nc-1")
    answer = detach(signed_client)
    assert answer.status_code == 202, answer.content
    tid = volume_task_id(VOLUME, INSID)
    assert answer.json() == {"insid": INSID, "volume_id": VOLUME, "node": "nc-1", "tid": tid}
    [command] = queued("nc-1")
    assert (command.op, command.tid, command.paras) == ("volume/detach", tid, {"insid": INSID, "volume_id": VOLUME})
    assert Export.objects.filter(volume__volume_id=VOLUME).exists(), "the export stays until the node let go"

    # Progress, and a failed detach (the guest kept the disk), end nothing.
    relay_from_node(TaskStatus(tid=tid, phase="failed", state="detaching", failed=True, errormsg="kept"))
    assert Export.objects.filter(volume__volume_id=VOLUME).exists()
    done = TaskStatus(tid=tid, phase="editing", state="detached", progress=100, done=True)
    assert [report.tid for report in relay_from_node(done)] == [tid], "the report still goes up to the CLC"
    assert not Export.objects.filter(volume__volume_id=VOLUME).exists()
    assert target_iqn(VOLUME) not in tgtd.tgtadm("--op", "show", "--mode", "target").stdout
    assert not VolumeExport.objects.exists()


def test_a_detach_done_for_an_export_attached_again_meanwhile_leaves_it(running, signed_client):
    assert attach(signed_client).status_code == 202
    assert detach(signed_client).status_code == 202
    assert attach(signed_client).status_code == 202  # the CLC attached it again before the node's report came
    relay_from_node(TaskStatus(tid=volume_task_id(VOLUME, INSID), phase="editing", state="detached", done=True))
    assert Export.objects.filter(volume__volume_id=VOLUME).exists()


def test_an_instance_not_placed_here_is_a_404(sc, signed_client):
    answer = attach(signed_client, insid="ins-0000ffff")
    assert answer.status_code == 404 and "not placed in this cluster" in answer.json()["detail"]
    assert detach(signed_client, insid="ins-0000ffff").status_code == 404


@pytest.mark.parametrize("state", ["stopped", "scheduled", "stopping"])
def test_an_instance_that_does_not_run_is_a_409_and_nothing_is_exported_or_sent(running, signed_client, state):
    ClusterInstance.objects.filter(instance_id=INSID).update(state=state)
    answer = attach(signed_client)
    assert answer.status_code == 409 and f"is {state}" in answer.json()["detail"]
    assert not Export.objects.exists() and not VolumeExport.objects.exists()
    assert detach(signed_client).status_code == 409
    assert queued("nc-1") == []


def test_an_sc_this_cluster_does_not_know_is_a_400_naming_sc(running, signed_client):
    for answer in (attach(signed_client, sc="sc-9"), detach(signed_client, sc="sc-9")):
        assert answer.status_code == 400 and "sc" in answer.json(), answer.content
        assert "sc-9" in answer.json()["detail"]
    assert queued("nc-1") == [] and not Export.objects.exists()


def test_the_scs_refusals_are_passed_on_with_its_words(running, signed_client):
    unknown = attach(signed_client, volume_id="vol-0000dead")
    assert unknown.status_code == 404 and unknown.json()["detail"].startswith("storage controller sc-1: ")
    export_volume(VOLUME, "nc-2")  # exported to another node (the CLC's records say otherwise)
    taken = attach(signed_client)
    assert taken.status_code == 409 and "exported to node nc-2" in taken.json()["detail"]
    assert queued("nc-1") == []


def test_an_sc_that_cannot_be_reached_is_a_503(running, signed_client):
    closed, _ = free_port_block(1, low=20000, high=29999)
    ClusterNode.objects.filter(role="sc").update(api_url=f"http://127.0.0.1:{closed}")
    answer = attach(signed_client)
    assert answer.status_code == 503 and "storage controller sc-1" in answer.json()["detail"]
    assert queued("nc-1") == []


@pytest.mark.parametrize(("insid", "volume_id", "field"), [
    ("..", VOLUME, "insid"), ("x" * 300, VOLUME, "insid"), ("vol-0000000a", VOLUME, "insid"),
    (INSID, "..", "volume_id"), (INSID, "v" * 300, "volume_id"), (INSID, "ins-0000000a", "volume_id")])
def test_a_bad_id_in_the_url_is_a_400_naming_it(running, signed_client, insid, volume_id, field):
    answer = detach(signed_client, insid=insid, path_volume=volume_id)
    assert answer.status_code == 400 and field in answer.json(), answer.content
    if field == "insid":
        answer = attach(signed_client, insid=insid)
        assert answer.status_code == 400 and field in answer.json(), answer.content
    assert queued("nc-1") == []


@pytest.mark.parametrize(("body", "field"), [
    ({}, "volume"), ({"volume": {"volume_id": "../x", "sc": "sc-1"}}, "volume.volume_id"),
    ({"volume": {"volume_id": VOLUME, "sc": "SC;1"}}, "volume.sc"),
    ({"volume": {"volume_id": VOLUME, "sc": "sc-1", "node": "nc-2"}}, "volume.node")])
def test_a_bad_body_is_a_400_naming_the_field(running, signed_client, body, field):
    answer = signed_client.post(f"{API}/instances/{INSID}/volumes/", body)
    assert answer.status_code == 400 and field in answer.json(), answer.content


def test_a_detach_naming_another_volume_than_its_url_is_a_400(running, signed_client):
    answer = detach(signed_client, volume_id="vol-0000c0c1", path_volume=VOLUME)
    assert answer.status_code == 400 and "volume_id" in answer.json()


def test_only_the_clc_may_attach_or_detach(running, client, signed_client):
    answer = attach(signed_client, key=enrolled_key("nc-1"))
    assert answer.status_code == 403
    assert client.post(f"{API}/instances/{INSID}/volumes/", {}, content_type="application/json").status_code == 401
    assert not Export.objects.exists()


def test_a_run_carries_every_volumes_target_moved_to_its_node_and_names_the_missing(sc, tmp_path):
    export_volume(VOLUME, "nc-2")  # where the instance ran last time
    volumes = (VolumeRef(volume_id=VOLUME, sc="sc-1"), VolumeRef(volume_id="vol-0000dead", sc="sc-1"),
               VolumeRef(volume_id="vol-0000beef", sc="sc-9"))
    record = run_instance(broker(), request(volumes=volumes))
    assert record.node == "nc-1"
    [command] = queued("nc-1")
    [target] = [VolumeTarget.model_validate(found) for found in command.paras[RUN_VOLUMES]]
    assert (target.volume_id, target.initiator) == (VOLUME, initiator_iqn("nc-1"))
    assert Export.objects.get(volume__volume_id=VOLUME).node == "nc-1", "the export moved to the run's node"
    through_iscsi(target, tmp_path, "read 0 4096")
    missing = command.paras[RUN_VOLUMES_MISSING]
    assert set(missing) == {"vol-0000dead", "vol-0000beef"}
    assert missing["vol-0000dead"].startswith("storage controller sc-1: ") and "sc-9" in missing["vol-0000beef"]
    assert ClusterInstance.objects.get(instance_id=INSID).run_sent


def test_a_run_without_volumes_says_so_and_a_run_sent_again_exports_again(sc):
    run_instance(broker(), request())
    [command] = queued("nc-1")
    assert (command.paras[RUN_VOLUMES], command.paras[RUN_VOLUMES_MISSING]) == ([], {})
    # The broker did not take the first command (run_sent false): the CLC asks again with the same run number.
    ClusterInstance.objects.filter(instance_id=INSID).update(run_sent=False)
    run_instance(broker(), request(volumes=(VolumeRef(volume_id=VOLUME, sc="sc-1"),)))
    [again] = queued("nc-1")
    assert [found["volume_id"] for found in again.paras[RUN_VOLUMES]] == [VOLUME]
    assert Export.objects.get(volume__volume_id=VOLUME).node == "nc-1"
