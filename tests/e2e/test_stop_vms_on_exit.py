"""Ctrl-C on a running all-in-one host with a real QEMU VM: by default the VM keeps running and the host says so
and how to stop it; with ``run_cloud --stop-vms`` or ``EDUCLOUD_STOP_VMS_ON_EXIT=1`` the VM's process is gone when
the host has exited."""

from __future__ import annotations

import os
import shutil
import signal
from pathlib import Path

import pytest

from tests.services import (
    ConsoleClient,
    RoleProcess,
    build_test_image,
    free_port_block,
    instance_record,
    kill_vms_under,
    processes_mentioning,
    wait_for,
)

pytestmark = [pytest.mark.e2e]


class CtrlCHost(RoleProcess):
    """An all-in-one host run with extra ``run_cloud`` arguments and environment."""

    def __init__(self, workdir: Path, ports: tuple[int, int], args: tuple[str, ...], env: dict[str, str]) -> None:
        low, high = ports
        super().__init__(workdir, "aio", "clc,walrus,cc,nc",
                         {"cloud": {"heartbeat_seconds": "1", "missed_heartbeats": "5"},
                          "cc": {"port_range": f"{low}-{high}"}, "nc": {"stop_timeout_seconds": "5"}})
        self.args, self.extra_env = args, env

    def _argv(self, *command: str) -> list[str]:
        return super()._argv(*command) + (list(self.args) if command == ("run_cloud",) else [])

    def environment(self) -> dict[str, str]:
        return super().environment() | self.extra_env

    def ctrl_c(self, timeout: float = 120) -> int:
        """What a terminal's Ctrl-C does: SIGINT to the host's process group; its exit code."""
        os.killpg(self.process.pid, signal.SIGINT)
        return self.process.wait(timeout=timeout)


def _running_vm(aio: CtrlCHost, image: Path) -> str:
    """A tiny instance of the test image, run until its VM process is up; its id."""
    client = ConsoleClient(aio.url)
    wait_for("the node and walrus online", lambda: {
        (s["role"], s["state"]) for s in client.get("/clc/api/1.0/status/")["services"]} >= {
        ("nc", "online"), ("walrus", "online"), ("cc", "online")}, timeout=60)
    image_id = aio.upload_image(image, "eduCloud test VM")
    insid = client.post("/clc/api/1.0/instances/", {"name": "Left on", "kind": "vs", "image": image_id,
                                                    "vm_type": "tiny", "owner_group": "edu"})["instance_id"]
    client.post(f"/clc/api/1.0/instances/{insid}/run/", {})
    wait_for(f"{insid} to run", lambda: (instance_record(client, insid) or {}).get("state") == "running", 180)
    assert processes_mentioning(insid), "no VM process for the running instance"
    return insid


@pytest.fixture
def host_with(tmp_path):
    """``host_with(args, env)``: a started host and the test image; afterwards any VM left is killed."""
    if shutil.which("qemu-system-x86_64") is None:
        pytest.skip("qemu-system-x86_64 is not installed; the test command (tests/run.sh) installs it")
    made = []

    def start(args: tuple[str, ...] = (), env: dict[str, str] | None = None) -> tuple[CtrlCHost, Path]:
        image = build_test_image()
        aio = CtrlCHost(tmp_path, free_port_block(20), args, env or {})
        made.append(aio)
        aio.start().wait_listening()
        return aio, image

    yield start
    for aio in made:
        aio.stop()
        print(f"----- aio log -----\n{aio.tail(30)}")
    kill_vms_under(tmp_path)


@pytest.mark.parametrize("args, env", [(("--stop-vms",), {}), ((), {"EDUCLOUD_STOP_VMS_ON_EXIT": "1"})],
                         ids=["flag", "environment"])
def test_ctrl_c_with_stop_vms_stops_the_nodes_vms_before_the_host_exits(host_with, args, env):
    aio, image = host_with(args, env)
    insid = _running_vm(aio, image)
    assert aio.ctrl_c() == 0
    assert not processes_mentioning(insid), "the VM process outlived the host"
    log = aio.log.read_text()
    assert f"stopping this node's 1 VM(s): {insid}" in log and "stopped 1 VM(s)" in log


def test_ctrl_c_without_stop_vms_leaves_the_vm_running_and_says_how_to_stop_it(host_with):
    aio, image = host_with()
    insid = _running_vm(aio, image)
    vm_pids = processes_mentioning(insid)
    assert aio.ctrl_c() == 0
    assert processes_mentioning(insid) == vm_pids, "the VM runs on after the host ended"
    log = aio.log.read_text()
    assert f"1 VM(s) of this node keep running: {insid}." in log
    assert "run_cloud --stop-vms" in log and "EDUCLOUD_STOP_VMS_ON_EXIT=1" in log
