"""Attaching an SC's iSCSI volume to running VMs for real (issue 16): the QEMU driver hot-plugs a LUN of a real tgtd
(``tests/iscsi.py``) into the project's test VM, the guest writes bytes to it through its CGI (``/cgi-bin/blockwrite``,
``blockread``), the volume is detached and attached to a second VM, which reads the same bytes. A wrong CHAP secret
and another node's initiator are refused at once with the target's reason, leaving nothing behind. The guest's
timed sequential pass (``/cgi-bin/blockbench``, what ``bench/volume_io.py`` measures with) writes its pattern into
the exported file and reads it back, on the guest's clock.
"""

from __future__ import annotations

import secrets
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from luhyaapi.ids import new_id
from luhyaapi.vmspec import ConsoleSpec, NicSpec, PortForward, RuntimeOptions, VMSpec
from luhyaapi.volumes import initiator_iqn
from nc.drivers.base import AttachedVolume, DriverError, VMNotRunning
from nc.drivers.qemu import QemuDriver
from nc.drivers.qemu_qmp import QMPClient
from tests.services import build_test_image, free_port_block

pytestmark = pytest.mark.timeout(600)

QEMU = shutil.which("qemu-system-x86_64")
BOOT_TIMEOUT = 180.0
# A hot-plugged disk shows in the guest once its kernel took the ACPI notification and probed the device.
PLUG_TIMEOUT = 60.0
NODE = "nc-volumes"
MiB = 1024 * 1024
VOLUME_BYTES = 16 * MiB
# What /cgi-bin/blockbench writes, over and over (tools/testimage/README.md).
BENCH_LINE = b"eduCloud-bench " * 273 + b"\n"


@pytest.fixture(scope="module")
def driver(tmp_path_factory) -> Iterator[QemuDriver]:
    if QEMU is None:
        pytest.skip("qemu-system-x86_64 is not installed (tests/run.sh installs qemu-system-x86)")
    driver = QemuDriver(tmp_path_factory.mktemp("vms"))
    yield driver
    for insid in driver.list_vms():
        driver.destroy(insid)


class GuestVM:
    """A VM of the test image on a linked clone, its page forwarded to a free loopback port."""

    def __init__(self, driver: QemuDriver, image: Path) -> None:
        self.driver = driver
        self.insid = new_id("instance")
        console, http = free_port_block(2, low=6000, high=6999)
        self.http_port = http
        disk = driver.vm_dir(self.insid) / "root.qcow2"
        driver.clone_disk(image, disk)
        mac = "52:54:00:" + ":".join(f"{byte:02x}" for byte in secrets.token_bytes(3))
        options = RuntimeOptions(console=ConsoleSpec(protocol="vnc", port=console), disk_type="virtio", memory_mb=256,
                                 nics=(NicSpec(mac=mac, model="virtio",
                                               forwards=(PortForward(host_port=http, guest_port=80),)),))
        driver.create(VMSpec.build(self.insid, [str(disk)], options))

    def get(self, path: str, timeout: float = 10, **params: str | int) -> requests.Response | None:
        try:
            return requests.get(f"http://127.0.0.1:{self.http_port}{path}", params=params, timeout=timeout)
        except requests.RequestException:
            return None

    def wait_until(self, check, timeout: float, what: str):
        deadline = time.monotonic() + timeout
        while True:
            value = check()
            if value:
                return value
            assert time.monotonic() < deadline, f"{self.insid}: no {what} within {timeout:.0f} s"
            time.sleep(0.5)

    def wait_serving(self) -> None:
        def serves() -> bool:
            response = self.get("/")
            return response is not None and response.status_code == 200

        self.wait_until(serves, BOOT_TIMEOUT, "page from the guest")

    def read_volume(self, serial: str, offset: int, length: int) -> requests.Response | None:
        return self.get("/cgi-bin/blockread", serial=serial, offset=offset, length=length)

    def sees(self, serial: str) -> bool:
        response = self.read_volume(serial, 0, 1)
        return response is not None and response.status_code == 200


@pytest.fixture(scope="module")
def vms(driver) -> tuple[GuestVM, GuestVM]:
    """Two VMs of the test image booted at once (the same node: the target lets this node's initiator in)."""
    image = build_test_image()
    first, second = GuestVM(driver, image), GuestVM(driver, image)
    driver.start(first.insid)
    driver.start(second.insid)
    first.wait_serving()
    second.wait_serving()
    return first, second


def volume_file(tmp_path: Path) -> Path:
    path = tmp_path / "volume.raw"
    with path.open("wb") as data:
        data.truncate(VOLUME_BYTES)
    return path


def qemu_objects(driver: QemuDriver, insid: str) -> tuple[set[str], set[str]]:
    """The block node names and QOM objects of a VM, to prove nothing of a volume is left."""
    with QMPClient(driver.vm_dir(insid) / "qmp.sock") as qmp:
        nodes = {node["node-name"] for node in qmp.execute("query-named-block-nodes", {"flat": True})}
        objects = {child["name"] for child in qmp.execute("qom-list", {"path": "/objects"})}
    return nodes, objects


def test_bytes_written_through_one_vm_are_read_through_another_after_detach_and_attach(
        driver, vms, tgt, tmp_path, caplog):
    first, second = vms
    volume_id = new_id("volume")
    target = tgt.export(volume_id, volume_file(tmp_path), initiator_iqn(NODE))
    payload = f"eduCloud volume {secrets.token_hex(8)}"

    attached = driver.attach_volume(first.insid, target)
    assert attached == AttachedVolume(volume_id, volume_id, volume_id)
    assert driver.attached_volumes(first.insid) == [attached]
    assert tgt.sessions(volume_id) == [initiator_iqn(NODE)]
    first.wait_until(lambda: first.sees(volume_id), PLUG_TIMEOUT, f"disk with serial {volume_id} in the guest")
    written = first.get("/cgi-bin/blockwrite", serial=volume_id, offset=4096, text=payload)
    assert written is not None and written.status_code == 200, written and written.text
    assert first.read_volume(volume_id, 4096, len(payload)).text == payload

    # Attaching it again is a no-op: the same device, not a second disk.
    assert driver.attach_volume(first.insid, target) == attached
    assert driver.attached_volumes(first.insid) == [attached]

    driver.detach_volume(first.insid, volume_id)
    assert driver.attached_volumes(first.insid) == []
    assert tgt.sessions(volume_id) == []
    response = first.read_volume(volume_id, 0, 1)
    assert response is not None and response.status_code == 404
    nodes, objects = qemu_objects(driver, first.insid)
    assert not any(volume_id in name for name in nodes | objects)
    driver.detach_volume(first.insid, volume_id)  # detaching a detached volume does nothing

    driver.attach_volume(second.insid, target)
    second.wait_until(lambda: second.sees(volume_id), PLUG_TIMEOUT, f"disk with serial {volume_id} in the guest")
    assert second.read_volume(volume_id, 4096, len(payload)).text == payload
    # The file behind the LUN holds what the guest wrote, where it wrote it.
    with (tmp_path / "volume.raw").open("rb") as data:
        data.seek(4096)
        assert data.read(len(payload)).decode() == payload

    # The secret went over QMP only: not on QEMU's command line, not in what the driver logged.
    pid = int((driver.vm_dir(second.insid) / "qemu.pid").read_text())
    assert target.chap_secret.encode() not in Path(f"/proc/{pid}/cmdline").read_bytes()
    assert target.chap_secret not in caplog.text
    driver.detach_volume(second.insid, volume_id)


def test_the_guests_blockbench_times_a_write_that_lands_in_the_volumes_file_and_a_read_of_it(
        driver, vms, tgt, tmp_path):
    first, _ = vms
    volume_id = new_id("volume")
    path = volume_file(tmp_path)
    driver.attach_volume(first.insid, tgt.export(volume_id, path, initiator_iqn(NODE)))
    first.wait_until(lambda: first.sees(volume_id), PLUG_TIMEOUT, f"disk with serial {volume_id} in the guest")

    beyond = first.get("/cgi-bin/blockbench", serial=volume_id, op="write", mb=VOLUME_BYTES // MiB + 1)
    assert beyond is not None and beyond.status_code == 400 and "disk's size" in beyond.text, beyond and beyond.text
    for op in ("write", "read"):
        started = time.monotonic()
        response = first.get("/cgi-bin/blockbench", timeout=120, serial=volume_id, op=op, mb=4)
        waited = time.monotonic() - started
        assert response is not None and response.status_code == 200, response and response.text
        answer = dict(field.split("=", 1) for field in response.text.split())
        assert answer["op"] == op and int(answer["bytes"]) == 4 * MiB, answer
        # The guest's clock timed dd alone: more than nothing, less than the whole request the host waited for.
        assert 0 < int(answer["microseconds"]) / 1e6 < waited, (answer, waited)
        if op == "write":
            # fsync'ed: the pattern is in the file behind the LUN, exactly 4 MiB of it, nothing written beyond.
            data = path.read_bytes()
            assert data[:4 * MiB] == BENCH_LINE * (4 * MiB // len(BENCH_LINE))
            assert data[4 * MiB:] == bytes(VOLUME_BYTES - 4 * MiB)
    driver.detach_volume(first.insid, volume_id)


@pytest.mark.parametrize("wrong", ["secret", "initiator"])
def test_a_refused_login_fails_at_once_with_the_targets_reason_and_leaves_nothing(driver, vms, tgt, tmp_path, wrong):
    first, _ = vms
    volume_id = new_id("volume")
    target = tgt.export(volume_id, volume_file(tmp_path), initiator_iqn(NODE))
    if wrong == "secret":
        bad = target.model_copy(update={"chap_secret": "Wrong" + target.chap_secret})
        reason = "Authentication failure"
    else:
        bad = target.model_copy(update={"initiator": initiator_iqn("nc-other")})
        reason = "Target not found"
    started = time.monotonic()
    with pytest.raises(DriverError) as refused:
        driver.attach_volume(first.insid, bad)
    assert time.monotonic() - started < 10
    assert f"attaching {volume_id}" in str(refused.value) and reason in str(refused.value)
    assert bad.chap_secret not in str(refused.value)
    assert driver.attached_volumes(first.insid) == []
    nodes, objects = qemu_objects(driver, first.insid)
    assert not any(volume_id in name for name in nodes | objects)
    # Nothing of the refused attempt is in the way of the right one.
    driver.attach_volume(first.insid, target)
    assert [found.volume_id for found in driver.attached_volumes(first.insid)] == [volume_id]
    first.wait_until(lambda: first.sees(volume_id), PLUG_TIMEOUT, f"disk with serial {volume_id} in the guest")
    driver.detach_volume(first.insid, volume_id)


@pytest.mark.parametrize("cgi, params, status", [
    ("blockread", {"serial": "vol-0000ffff", "offset": 0, "length": 1}, 404),
    ("blockread", {"serial": "../vda", "offset": 0, "length": 1}, 400),
    ("blockread", {"serial": "vda", "offset": -1, "length": 1}, 400),
    ("blockread", {"serial": "vda", "offset": 0, "length": 0}, 400),
    ("blockread", {"serial": "vda", "offset": 0, "length": 65537}, 400),
    ("blockwrite", {"serial": "vol-0000ffff", "offset": 0, "text": "x"}, 404),
    ("blockwrite", {"serial": "vol;reboot", "offset": 0, "text": "x"}, 400),
    ("blockwrite", {"serial": "vol-0000ffff", "offset": "1e3", "text": "x"}, 400),
    ("blockwrite", {"serial": "vol-0000ffff", "offset": 0}, 400),
    ("blockbench", {"serial": "vol-0000ffff", "op": "write", "mb": 1}, 404),
    ("blockbench", {"serial": "vol-0000ffff", "op": "write", "mb": 0}, 400),
    ("blockbench", {"serial": "vol-0000ffff", "op": "write", "mb": 1025}, 400),
    ("blockbench", {"serial": "vol-0000ffff", "op": "write", "mb": "01"}, 400),
    ("blockbench", {"serial": "vol-0000ffff", "op": "erase", "mb": 1}, 400),
    ("blockbench", {"serial": "vda;reboot", "op": "read", "mb": 1}, 400),
])
def test_the_guests_block_cgi_refuses_bad_input_and_unknown_disks(vms, cgi, params, status):
    response = vms[0].get(f"/cgi-bin/{cgi}", **params)
    assert response is not None and response.status_code == status, response and response.text


def test_a_stopped_vm_takes_no_volume(driver, tgt, tmp_path):
    vm = GuestVM(driver, build_test_image())
    volume_id = new_id("volume")
    target = tgt.export(volume_id, volume_file(tmp_path), initiator_iqn(NODE))
    with pytest.raises(VMNotRunning, match="not running"):
        driver.attach_volume(vm.insid, target)
    assert driver.attached_volumes(vm.insid) == []
    driver.destroy(vm.insid)
