"""The cluster controller sends ``volume/attach`` and ``volume/detach`` (issue 16) to the node an instance runs on,
under the volume operation's own task, and refuses them for an instance it did not place or that does not run."""

from __future__ import annotations

import pytest

from cc.models import ClusterInstance
from cc.services.instances import InstanceRefused, attach_volume, detach_volume, run_instance
from cc.tests.test_instances import nodes, request  # noqa: F401 (the nodes fixture)
from luhyaapi.volumes import VolumeAttachParas, VolumeTarget, initiator_iqn, target_iqn
from tests.commands import broker, queued

pytestmark = [pytest.mark.database, pytest.mark.django_db(transaction=True)]

VOLUME = "vol-0000beef"
TARGET = VolumeTarget(volume_id=VOLUME, host="10.0.0.30", iqn=target_iqn(VOLUME), chap_user="u1",
                      chap_secret="Secret0Secret0", initiator=initiator_iqn("nc-1"))


@pytest.fixture
def running(nodes):  # noqa: F811
    url = broker()
    run_instance(url, request())
    queued("nc-1")  # the run's command
    ClusterInstance.objects.filter(instance_id="ins-0000000a").update(state="running")
    return url


def test_an_attach_goes_to_the_instances_node_under_the_volume_operations_task(running):
    attach_volume(running, "ins-0000000a", "vtask-1", TARGET)
    [command] = queued("nc-1")
    assert (command.op, command.tid, command.key) == ("volume/attach", "vtask-1", "vtask-1:volume/attach")
    assert VolumeAttachParas.model_validate(command.paras) == VolumeAttachParas(insid="ins-0000000a", target=TARGET)
    # The run itself is not touched: its state and its run number stay.
    assert ClusterInstance.objects.get().state == "running"


def test_a_detach_goes_to_the_instances_node(running):
    detach_volume(running, "ins-0000000a", "vtask-2", VOLUME)
    [command] = queued("nc-1")
    assert (command.op, command.tid, command.paras) == (
        "volume/detach", "vtask-2", {"insid": "ins-0000000a", "volume_id": VOLUME})


@pytest.mark.parametrize("state", ["stopping", "stopped", "preparing", "scheduled"])
def test_an_instance_that_does_not_run_is_a_409_and_nothing_is_sent(running, state):
    ClusterInstance.objects.update(state=state)
    with pytest.raises(InstanceRefused) as refused:
        attach_volume(running, "ins-0000000a", "vtask-3", TARGET)
    assert refused.value.status == 409 and f"is {state}" in str(refused.value)
    with pytest.raises(InstanceRefused):
        detach_volume(running, "ins-0000000a", "vtask-4", VOLUME)
    assert queued("nc-1") == []


def test_an_instance_this_cluster_did_not_place_is_a_404(nodes):  # noqa: F811
    with pytest.raises(InstanceRefused) as refused:
        attach_volume(broker(), "ins-0000ffff", "vtask-5", TARGET)
    assert refused.value.status == 404
