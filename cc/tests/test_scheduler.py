"""The cluster controller never places the cloud's instances on a classroom PC: a PC's node controller says so when it
registers (``classroom_pc``, False for nodes that leave it out), the CC keeps it on the node's record, and the
scheduler skips the PC with the reason in its refusal."""

from __future__ import annotations

from dataclasses import replace

import pytest

from cc.models import ClusterNode
from cc.services.instances import InstanceRefused, run_instance
from cc.services.scheduler import CLASSROOM_PC, Candidate, Need, NoNodeFits, pick_node
from cc.tests.nodes import NODE_REGISTRATION, PC_REGISTRATION, node_key, register, run_request
from daemons.heartbeat import HeartbeatPublisher
from luhyaapi.bus import InProcessBus
from luhyaapi.messages import ServerRegistration
from luhyadb.models import Server
from tests.commands import broker


def candidate(name: str, memory_mb: int = 8192, classroom_pc: bool = False, online: bool = True) -> Candidate:
    return Candidate(name=name, online=online, cpus=4, memory_mb=memory_mb, free_disk_mb=100_000,
                     classroom_pc=classroom_pc)


# The rule


def test_a_classroom_pc_is_never_chosen_even_with_the_most_room():
    chosen = pick_node(Need(1, 512), [candidate("pc-12", 65536, classroom_pc=True), candidate("nc-1", 4096)])
    assert chosen.name == "nc-1"


def test_when_only_pcs_are_left_the_refusal_says_each_is_a_classroom_pc():
    with pytest.raises(NoNodeFits) as raised:
        pick_node(Need(1, 512), [candidate("pc-12", classroom_pc=True), candidate("nc-1", online=False)])
    assert raised.value.reasons == {"pc-12": CLASSROOM_PC, "nc-1": "offline"}
    assert f"pc-12: {CLASSROOM_PC}" in str(raised.value)


def test_a_classroom_pc_is_refused_when_an_instance_is_pinned_to_it():
    with pytest.raises(NoNodeFits, match=f"pc-12: {CLASSROOM_PC}"):
        pick_node(Need(1, 512), [candidate("pc-12", classroom_pc=True), candidate("nc-1")], pinned="pc-12")


def test_a_pc_says_so_in_its_registration_and_other_nodes_and_older_ones_do_not(settings, tmp_path):
    config = replace(settings.EDUCLOUD, name="pc-12", data_dir=tmp_path, host_mode=True, mac="52:54:00:3c:0f:7e")
    assert HeartbeatPublisher("nc", config, InProcessBus()).registration().classroom_pc is True
    node = replace(config, name="nc-1", host_mode=False)
    assert HeartbeatPublisher("nc", node, InProcessBus()).registration().classroom_pc is False
    older = {key: value for key, value in NODE_REGISTRATION.items() if key != "classroom_pc"}
    assert ServerRegistration.model_validate(older).classroom_pc is False


# Through the CC: registration kept on the node's record, placement skips the PC




@pytest.mark.database
@pytest.mark.django_db(transaction=True)
def test_the_cc_keeps_that_a_node_is_a_classroom_pc_and_places_instances_elsewhere(cc, signed_client):
    assert register(signed_client, PC_REGISTRATION).classroom_pc
    assert Server.objects.get(role="nc", name="pc-12").state == "online"  # still announced to the CLC as a node
    with pytest.raises(InstanceRefused) as raised:
        run_instance(broker(), run_request())
    assert raised.value.status == 409 and f"pc-12: {CLASSROOM_PC}" in str(raised.value)

    older = {key: value for key, value in NODE_REGISTRATION.items() if key != "classroom_pc"}
    assert not register(signed_client, older).classroom_pc
    assert run_instance(broker(), run_request()).node == "nc-1"  # pc-12 has 16 times the room, and is skipped


@pytest.mark.database
@pytest.mark.django_db(transaction=True)
def test_a_pc_pinned_instance_is_refused_and_a_node_that_stops_being_a_pc_is_used_again(cc, signed_client):
    register(signed_client, PC_REGISTRATION)
    with pytest.raises(InstanceRefused, match=f"pc-12: {CLASSROOM_PC}"):
        run_instance(broker(), run_request(pinned_node="pc-12"))
    assert not register(signed_client, PC_REGISTRATION | {"classroom_pc": False}).classroom_pc
    assert run_instance(broker(), run_request(pinned_node="pc-12")).node == "pc-12"


@pytest.mark.database
@pytest.mark.django_db(transaction=True)
def test_the_cc_keeps_it_even_when_the_clc_cannot_be_told_yet(cc, signed_client, settings):
    settings.EDUCLOUD = replace(settings.EDUCLOUD, clc_url="http://127.0.0.1:9")
    answer = signed_client.post("/cc/api/1.0/register/server/", PC_REGISTRATION, key=node_key(PC_REGISTRATION))
    assert answer.status_code == 502  # the PC's node controller registers again later
    assert ClusterNode.objects.get(role="nc", name="pc-12").classroom_pc
    with pytest.raises(InstanceRefused, match=f"pc-12: {CLASSROOM_PC}"):
        run_instance(broker(), run_request())
