"""A node controller says which console its hypervisor serves (QEMU: VNC, VirtualBox: RDP) when it registers; the CC
keeps it on the node's record and gives an instance placed there a console of that kind: a VNC one with the run's
password, an RDP one without (VirtualBox's VRDE authenticates it), with the access map saying which."""

from __future__ import annotations

from dataclasses import replace

import pytest

from cc.services.instances import run_instance
from cc.tests.nodes import NODE_REGISTRATION, register, run_request
from daemons.heartbeat import HeartbeatPublisher
from daemons.roles import build_workers
from luhyaapi.bus import InProcessBus
from luhyaapi.messages import ServerRegistration
from tests.commands import broker

NODE = {key: value for key, value in NODE_REGISTRATION.items() if key != "classroom_pc"}


@pytest.mark.parametrize("hypervisor, console", [("qemu", "vnc"), ("virtualbox", "rdp")])
def test_a_node_controller_registers_the_console_its_hypervisor_serves(settings, tmp_path, hypervisor, console):
    settings.EDUCLOUD = replace(settings.EDUCLOUD, data_dir=tmp_path, hypervisor=hypervisor, roles=("nc",))
    _workers, heartbeats = build_workers(settings.EDUCLOUD, stop=None)
    assert heartbeats["nc"].registration().console == console


def test_a_node_that_says_nothing_of_its_console_serves_vnc(settings, tmp_path):
    assert ServerRegistration.model_validate(NODE).console == "vnc"  # as nodes before this field sent it
    config = replace(settings.EDUCLOUD, data_dir=tmp_path)
    assert HeartbeatPublisher("nc", config, InProcessBus()).registration().console == "vnc"


@pytest.mark.database
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("console, password", [("vnc", "Pw4run99"), ("rdp", "")])
def test_an_instance_gets_the_console_its_node_serves(cc, signed_client, console, password):
    assert register(signed_client, NODE | {"console": console}).console_protocol == console
    record = run_instance(broker(), run_request(console_password="Pw4run99"))
    port = record.options["console"]["port"]
    assert record.options["console"] == {"protocol": console, "listen": "10.0.9.21", "port": port,
                                         "password": password}
    assert record.access["console"] == f"{console}://10.0.9.21:{port}"
