"""The hypervisor driver contract of ``nc/drivers/base.py``, proved with real VMs against every registered driver.

Each driver in ``nc.drivers.DRIVERS`` runs the same tests; one whose module cannot be imported or whose ``probe()``
says it cannot run here is skipped with the reason. The guest is the project's test image
(``tools/testimage``): the tests talk to it over HTTP through a NAT port forward. Booting takes seconds under
emulation, so the read-only checks share one VM per driver (``shared_vm``); tests that change a VM's state make
their own or come last.
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
import re
import secrets
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from luhyaapi.ids import new_id
from luhyaapi.vmspec import ConsoleSpec, NicSpec, PortForward, RuntimeOptions, VMSpec
from nc import drivers
from nc.drivers.base import (
    DriverError,
    HypervisorDriver,
    InvalidVMName,
    VMExists,
    VMNotFound,
    VMNotRunning,
    VMState,
)

pytestmark = pytest.mark.timeout(600)

BOOT_TIMEOUT = 180.0
STOP_TIMEOUT = 60.0
# The base image is handed to each driver in a format its hypervisor reads (converted with qemu-img).
BASE_IMAGE_FORMATS = {"virtualbox": "vdi"}
CAPABILITIES = ("linked_clone", "console_vnc", "console_rdp", "nat_forwards", "bridged", "guest_ip", "guest_ready",
                "snapshot_run", "adopt", "volumes", "disk_ops", "guest_panic")  # fmt: skip
HOSTILE_IDS = {
    "parent-dir": "../x",
    "shell": "ins-;rm -rf /",
    "nul": "ins-0123abcd\x00",
    "absolute": "/etc/passwd",
    "absolute-like-id": "/tmp/ins-0123abcd",
    "newline": "ins-0123abcd\n",
    "upper-case": "ins-0123ABCD",
    "empty": "",
    "climbing": "ins-0123abcd/../../x",
}
# An RDP client's first packet: a TPKT-framed X.224 connection request asking for standard RDP security.
RDP_CONNECTION_REQUEST = bytes.fromhex("030000130ee000000000000100080000000000")
SYS_NET = Path("/sys/class/net")


@dataclass(frozen=True)
class BaseImage:
    path: Path
    sha256: str


@dataclass(frozen=True)
class VM:
    """A VM the tests defined: its spec, its disk and the host ports of its console and guest web page."""

    spec: VMSpec
    disk: Path
    http_port: int | None

    @property
    def insid(self) -> str:
        return self.spec.insid


@pytest.fixture(scope="module", params=sorted(drivers.DRIVERS))
def driver_class(request: pytest.FixtureRequest) -> type[HypervisorDriver]:
    """Each registered driver class that can run VMs on this machine (the others skip, saying why)."""
    name = request.param
    try:
        cls = drivers.driver_class(name)
    except ImportError as exc:
        pytest.skip(f"{name}: the driver cannot be imported: {exc}")
    availability = cls.probe()
    if not availability.available:
        pytest.skip(f"{name}: {availability.reason}")
    return cls


@pytest.fixture(scope="module")
def driver(
    driver_class: type[HypervisorDriver], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[HypervisorDriver]:
    """A driver keeping its VMs in a fresh root; every VM left there is destroyed afterwards."""
    driver = driver_class(tmp_path_factory.mktemp(f"vms-{driver_class.name}"))
    yield driver
    for entry in driver.root.iterdir():
        try:
            driver.destroy(entry.name)
        except InvalidVMName:
            continue


@pytest.fixture(scope="module")
def base_image(driver_class: type[HypervisorDriver], test_image: Path, tmp_path_factory) -> BaseImage:
    """The test image in the driver's format, a private copy whose digest is taken before any VM used it."""
    fmt = BASE_IMAGE_FORMATS.get(driver_class.name, "qcow2")
    path = tmp_path_factory.mktemp(f"base-{driver_class.name}") / f"educloud-test.{fmt}"
    if fmt == "qcow2":
        shutil.copyfile(test_image, path)
    else:
        subprocess.run(["qemu-img", "convert", "-O", fmt, str(test_image), str(path)], check=True, timeout=300)
    return BaseImage(path, sha256(path))


@pytest.fixture(scope="module")
def define_vm(driver: HypervisorDriver, base_image: BaseImage, free_port: Callable[[], int]) -> Callable[..., VM]:
    """A function defining a VM on a linked clone of the base image, with a NAT forward to its port 80 unless
    ``nics`` are given; ``disk`` replaces the clone."""

    def define(*, nics: tuple[NicSpec, ...] | None = None, disk: Path | None = None, run_with_snapshot=False) -> VM:
        insid = new_id("instance")
        if disk is None:
            disk = driver.vm_dir(insid) / f"root{base_image.path.suffix}"
            disk.parent.mkdir(parents=True, exist_ok=True)
            driver.clone_disk(base_image.path, disk)
        http_port = None
        if nics is None:
            http_port = free_port()
            nics = (NicSpec(mac=random_mac(), forwards=(PortForward(host_port=http_port, guest_port=80),)),)
        options = RuntimeOptions(
            console=console_spec(driver, free_port()), nics=nics, run_with_snapshot=run_with_snapshot
        )
        spec = VMSpec.build(insid, [str(disk)], options)
        driver.create(spec)
        return VM(spec, disk, http_port)

    return define


@pytest.fixture
def vm_factory(driver: HypervisorDriver, define_vm: Callable[..., VM]) -> Iterator[Callable[..., VM]]:
    """``define_vm`` for one test: the test's VMs are destroyed when it ends, passed or failed."""
    made: list[VM] = []

    def make(**kwargs) -> VM:
        vm = define_vm(**kwargs)
        made.append(vm)
        return vm

    yield make
    for vm in made:
        driver.destroy(vm.insid)


@pytest.fixture(scope="module")
def shared_vm(driver: HypervisorDriver, define_vm: Callable[..., VM]) -> Iterator[VM]:
    """One VM per driver for the checks that need a booted guest; destroyed after the module."""
    vm = define_vm()
    yield vm
    driver.destroy(vm.insid)


@pytest.fixture
def running_vm(driver: HypervisorDriver, shared_vm: VM) -> VM:
    """The shared VM, started (if a test before stopped it) and serving its page."""
    boot(driver, shared_vm)
    return shared_vm


def random_mac() -> str:
    return "52:54:00:" + ":".join(f"{byte:02x}" for byte in secrets.token_bytes(3))


def console_spec(driver: HypervisorDriver, port: int) -> ConsoleSpec:
    """A console of the protocol the driver serves (VNC if it can)."""
    return ConsoleSpec(protocol="vnc" if driver.capabilities.get("console_vnc") else "rdp", port=port)


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as data:
        for block in iter(lambda: data.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def wait_for(check: Callable[[], object], timeout: float, what: str) -> object:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"no {what} within {timeout:.0f} s")
        time.sleep(0.5)


def guest_get(vm: VM, path: str, **params: str) -> requests.Response | None:
    """GET ``path`` from the guest's web server through the VM's NAT forward; None if nothing answers."""
    try:
        return requests.get(f"http://127.0.0.1:{vm.http_port}{path}", params=params, timeout=5)
    except requests.RequestException:
        return None


def guest_serves(vm: VM) -> bool:
    response = guest_get(vm, "/")
    return response is not None and response.status_code == 200


def boot(driver: HypervisorDriver, vm: VM) -> None:
    """Start ``vm`` unless it runs, and wait until its guest serves its page."""
    if driver.state(vm.insid) is not VMState.RUNNING:
        driver.start(vm.insid)
    wait_for(lambda: guest_serves(vm), BOOT_TIMEOUT, f"page from {vm.insid}'s guest on port {vm.http_port}")


def write_in_guest(vm: VM, name: str, text: str) -> None:
    response = guest_get(vm, "/cgi-bin/write", name=name, text=text)
    assert response is not None and response.status_code == 200, response and response.text


def read_in_guest(vm: VM, name: str) -> requests.Response:
    response = guest_get(vm, "/cgi-bin/read", name=name)
    assert response is not None, f"{vm.insid}'s guest does not answer"
    return response


def console_answers(endpoint) -> bool:
    """True if a VNC server (RFB banner) or an RDP server (a TPKT reply) answers at ``endpoint``."""
    with socket.create_connection((endpoint.host, endpoint.port), timeout=10) as conn:
        if endpoint.protocol == "vnc":
            return re.fullmatch(rb"RFB 003\.00[378]\n", receive(conn, 12)) is not None
        conn.sendall(RDP_CONNECTION_REQUEST)
        return receive(conn, 4)[:2] == b"\x03\x00"


def receive(conn: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = conn.recv(size - len(data))
        if not chunk:
            break
        data += chunk
    return data


def port_is_free(port: int) -> bool:
    """Whether a server could listen on 127.0.0.1:``port`` now (as QEMU and VirtualBox would, reusing it)."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
            sock.listen()
        except OSError:
            return False
    return True


def files_under(root: Path) -> set[Path]:
    return {path for path in root.rglob("*")}


def needs(driver: HypervisorDriver, capability: str) -> None:
    if not driver.capabilities.get(capability):
        pytest.skip(f"{driver.name} does not declare {capability}")


def test_capabilities_declare_every_optional_feature(driver: HypervisorDriver):
    assert {name: type(driver.capabilities.get(name)) for name in CAPABILITIES} == dict.fromkeys(CAPABILITIES, bool)


def test_create_defines_a_stopped_vm_and_writes_only_inside_its_directory(
    driver: HypervisorDriver, base_image: BaseImage, free_port, processes_of, tmp_path: Path
):
    insid = new_id("instance")
    disk = tmp_path / f"disk{base_image.path.suffix}"
    driver.clone_disk(base_image.path, disk)
    spec = VMSpec.build(insid, [str(disk)], RuntimeOptions(console=console_spec(driver, free_port())))
    before = files_under(driver.root)
    try:
        driver.create(spec)
        assert driver.state(insid) is VMState.STOPPED
        assert insid in driver.list_vms()
        made = files_under(driver.root) - before
        assert made, "create wrote no definition"
        assert all(path.is_relative_to(driver.vm_dir(insid)) for path in made), made
        assert processes_of(insid) == []
    finally:
        driver.destroy(insid)


def test_create_twice_raises_vm_exists(driver: HypervisorDriver, vm_factory):
    vm = vm_factory()
    with pytest.raises(VMExists):
        driver.create(vm.spec)
    assert driver.state(vm.insid) is VMState.STOPPED


@pytest.mark.parametrize("insid", HOSTILE_IDS.values(), ids=HOSTILE_IDS.keys())
def test_hostile_instance_ids_are_refused_before_anything_runs(
    driver: HypervisorDriver, insid: str, monkeypatch, free_port, tmp_path: Path
):
    spawned: list[object] = []
    real_popen = subprocess.Popen

    def recording_popen(*args, **kwargs):
        spawned.append(args)
        return real_popen(*args, **kwargs)

    monkeypatch.setattr(subprocess, "Popen", recording_popen)
    valid = VMSpec.build(
        new_id("instance"), [str(tmp_path / "disk")], RuntimeOptions(console=console_spec(driver, 6001))
    )
    hostile_spec = valid.model_copy(update={"insid": insid})  # past pydantic's own check, as a bug might be
    before = files_under(driver.root)
    calls: dict[str, Callable[[], object]] = {
        "vm_dir": lambda: driver.vm_dir(insid),
        "create": lambda: driver.create(hostile_spec),
        "start": lambda: driver.start(insid),
        "stop": lambda: driver.stop(insid),
        "destroy": lambda: driver.destroy(insid),
        "state": lambda: driver.state(insid),
        "console": lambda: driver.console(insid),
        "metrics": lambda: driver.metrics(insid),
        "guest_info": lambda: driver.guest_info(insid),
    }
    for method, call in calls.items():
        with pytest.raises(InvalidVMName):
            call()
            pytest.fail(f"{method} accepted {insid!r}")
    assert spawned == []
    assert files_under(driver.root) == before


def test_an_undefined_vm_is_absent_and_the_calls_that_need_it_raise_vm_not_found(driver: HypervisorDriver):
    insid = new_id("instance")
    assert driver.state(insid) is VMState.ABSENT
    for call in (driver.start, driver.stop, driver.console, driver.metrics, driver.guest_info):
        with pytest.raises(VMNotFound):
            call(insid)
    assert not driver.vm_dir(insid).exists()


def test_destroy_of_an_absent_vm_succeeds(driver: HypervisorDriver):
    insid = new_id("instance")
    driver.destroy(insid)
    driver.destroy(insid)
    assert driver.state(insid) is VMState.ABSENT


def test_a_failed_start_leaves_the_vm_stopped_and_reports_the_hypervisors_message(
    driver: HypervisorDriver, vm_factory, processes_of, tmp_path: Path
):
    missing = tmp_path / "missing-disk.qcow2"
    # A hypervisor may notice the missing disk when the VM is defined (VirtualBox attaches it then) or when it starts
    # (QEMU opens it then); either way the error names the file and no VM process is left.
    try:
        vm = vm_factory(disk=missing)
    except DriverError as failure:
        assert str(missing) in str(failure)
        return
    with pytest.raises(DriverError) as failure:
        driver.start(vm.insid)
    assert str(missing) in str(failure.value)
    assert driver.state(vm.insid) is VMState.STOPPED
    assert processes_of(vm.insid) == []


def test_destroy_removes_every_file_and_process_and_frees_the_ports(driver: HypervisorDriver, vm_factory, processes_of):
    vm = vm_factory()
    driver.start(vm.insid)
    endpoint = driver.console(vm.insid)
    assert processes_of(vm.insid)
    assert console_answers(endpoint)
    assert not port_is_free(vm.http_port)
    driver.destroy(vm.insid)
    assert driver.state(vm.insid) is VMState.ABSENT
    assert vm.insid not in driver.list_vms()
    assert not driver.vm_dir(vm.insid).exists()
    assert processes_of(vm.insid) == []
    assert port_is_free(endpoint.port) and port_is_free(vm.http_port)


def test_clone_disk_refuses_a_base_whose_backing_file_is_a_host_file(driver: HypervisorDriver, tmp_path: Path):
    needs(driver, "linked_clone")
    hostile = tmp_path / "hostile.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-b", "/etc/passwd", "-F", "raw", str(hostile)],
                   check=True, timeout=60)  # fmt: skip
    dest = tmp_path / "child.qcow2"
    with pytest.raises(DriverError, match="backing"):
        driver.clone_disk(hostile, dest)
    assert not dest.exists()


def test_clone_disk_refuses_an_existing_dest_and_leaves_it_alone(
    driver: HypervisorDriver, base_image: BaseImage, tmp_path: Path
):
    dest = tmp_path / f"child{base_image.path.suffix}"
    dest.write_bytes(b"someone else's file")
    with pytest.raises(DriverError):
        driver.clone_disk(base_image.path, dest)
    assert dest.read_bytes() == b"someone else's file"


def test_a_bridged_nic_puts_only_bridge_ports_on_the_host_and_destroy_removes_them(
    driver: HypervisorDriver, vm_factory, isolated_bridge: str
):
    needs(driver, "bridged")
    interfaces = set(os.listdir(SYS_NET))
    vm = vm_factory(nics=(NicSpec(mode="bridged", bridge=isolated_bridge, mac=random_mac()),))
    driver.start(vm.insid)
    assert driver.state(vm.insid) is VMState.RUNNING
    made = set(os.listdir(SYS_NET)) - interfaces
    assert made <= set(os.listdir(SYS_NET / isolated_bridge / "brif")), made
    driver.destroy(vm.insid)
    assert set(os.listdir(SYS_NET)) - interfaces == set()
    assert os.listdir(SYS_NET / isolated_bridge / "brif") == []


def test_start_runs_the_vm_and_its_console_answers(driver: HypervisorDriver, running_vm: VM):
    assert driver.state(running_vm.insid) is VMState.RUNNING
    endpoint = driver.console(running_vm.insid)
    assert (endpoint.protocol, endpoint.host, endpoint.port) == (
        running_vm.spec.console.protocol, running_vm.spec.console.listen, running_vm.spec.console.port
    )  # fmt: skip
    assert console_answers(endpoint)


def test_the_guest_gets_an_address_and_serves_its_page_through_a_nat_forward(driver: HypervisorDriver, running_vm):
    needs(driver, "guest_ip")
    ip = wait_for(lambda: driver.guest_info(running_vm.insid).ip, BOOT_TIMEOUT, "guest address")
    assert ipaddress.IPv4Address(ip)
    page = guest_get(running_vm, "/")
    assert page.status_code == 200 and "eduCloud test VM" in page.text


def test_a_driver_that_says_the_guest_is_ready_says_so_only_once_it_serves(driver: HypervisorDriver, running_vm):
    needs(driver, "guest_ready")
    wait_for(lambda: driver.guest_info(running_vm.insid).ready, BOOT_TIMEOUT, "the guest's ready marker")
    assert guest_serves(running_vm)


def test_starting_a_running_vm_changes_nothing(driver: HypervisorDriver, running_vm: VM):
    cpu_before = driver.metrics(running_vm.insid).cpu_seconds
    driver.start(running_vm.insid)
    assert driver.state(running_vm.insid) is VMState.RUNNING
    # A restarted guest would need seconds to serve again, and its CPU time would start again from zero.
    assert guest_serves(running_vm)
    assert driver.metrics(running_vm.insid).cpu_seconds >= cpu_before


def test_metrics_of_a_running_vm_count_its_cpu_memory_and_disk(driver: HypervisorDriver, running_vm: VM):
    metrics = driver.metrics(running_vm.insid)
    assert metrics.alive
    assert metrics.cpu_seconds > 0
    assert metrics.memory_bytes > 0
    assert metrics.disk_read_bytes > 0
    if driver.capabilities["disk_ops"]:
        assert metrics.disk_read_ops > 0, "the guest's boot read its disk"
        assert metrics.disk_write_ops is not None
    else:
        assert (metrics.disk_read_ops, metrics.disk_write_ops) == (None, None)


@pytest.fixture(scope="module")
def iscsi(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """A tgtd of the module's own (``tests/iscsi.py``), exporting scratch files as an SC exports volumes."""
    from tests.iscsi import TgtServer, tgt_missing  # the SC's models: only where a test asks for a target

    reason = tgt_missing()
    if reason:
        pytest.skip(reason)
    server = TgtServer(tmp_path_factory.mktemp("tgt")).start()
    yield server
    server.stop()


def test_a_volume_is_hot_plugged_once_listed_and_unplugged_from_a_running_vm_only(
    driver: HypervisorDriver, running_vm: VM, iscsi, vm_factory, tmp_path: Path
):
    needs(driver, "volumes")
    node_initiator = "iqn.2026-12.org.educloud:node.nc-contract"
    volume_id = new_id("volume")
    backing = tmp_path / "volume.raw"
    with backing.open("wb") as data:
        data.truncate(8 * 1024 * 1024)
    target = iscsi.export(volume_id, backing, node_initiator)
    attached = driver.attach_volume(running_vm.insid, target)
    assert attached.volume_id == volume_id
    assert driver.attach_volume(running_vm.insid, target) == attached, "attaching twice attaches nothing more"
    assert driver.attached_volumes(running_vm.insid) == [attached]
    assert iscsi.sessions(volume_id) == [node_initiator]
    driver.detach_volume(running_vm.insid, volume_id)
    assert driver.attached_volumes(running_vm.insid) == []
    assert iscsi.sessions(volume_id) == []
    driver.detach_volume(running_vm.insid, volume_id)  # not attached: nothing to do
    stopped = vm_factory()
    with pytest.raises(VMNotRunning):
        driver.attach_volume(stopped.insid, target)
    assert driver.attached_volumes(stopped.insid) == []


def test_a_linked_clone_keeps_the_guests_writes_and_its_base_never_changes(
    driver: HypervisorDriver, running_vm: VM, base_image: BaseImage
):
    needs(driver, "linked_clone")
    text = secrets.token_hex(8)
    write_in_guest(running_vm, "clone-test.txt", text)
    assert driver.stop(running_vm.insid, timeout=STOP_TIMEOUT) is True
    assert sha256(base_image.path) == base_image.sha256
    boot(driver, running_vm)
    assert read_in_guest(running_vm, "clone-test.txt").text == text
    assert sha256(base_image.path) == base_image.sha256


def test_a_flattened_disk_stands_alone_and_holds_the_guests_writes(
    driver: HypervisorDriver, running_vm: VM, vm_factory, tmp_path: Path
):
    text = secrets.token_hex(8)
    write_in_guest(running_vm, "flatten-test.txt", text)
    assert driver.stop(running_vm.insid, timeout=STOP_TIMEOUT) is True
    flat = tmp_path / f"flat{driver.disk_suffix}"
    driver.flatten_disk(running_vm.disk, flat)
    with pytest.raises(DriverError):
        driver.flatten_disk(running_vm.disk, flat)
    # clone_disk refuses a base that refers to any other file: the flattened copy must be one file on its own.
    standalone = tmp_path / f"from-flat{driver.disk_suffix}"
    driver.clone_disk(flat, standalone)
    vm = vm_factory(disk=standalone)
    boot(driver, vm)
    assert read_in_guest(vm, "flatten-test.txt").text == text


def test_stop_lets_the_guest_shut_down_by_itself(driver: HypervisorDriver, running_vm: VM, processes_of):
    assert driver.stop(running_vm.insid, timeout=STOP_TIMEOUT) is True
    assert driver.state(running_vm.insid) is VMState.STOPPED
    assert processes_of(running_vm.insid) == []
    assert driver.metrics(running_vm.insid).alive is False


def test_a_guest_whose_kernel_panics_ends_its_vm_as_a_power_off_would(driver: HypervisorDriver, running_vm: VM,
                                                                       processes_of):
    """The node's watcher then ends the run as for a guest that powered itself off: the guest watchdog's case."""
    needs(driver, "guest_panic")
    answer = guest_get(running_vm, "/cgi-bin/panic")
    assert answer is not None and answer.status_code == 200, answer
    wait_for(lambda: driver.state(running_vm.insid) is VMState.STOPPED, 60, "end of the panicked guest's VM")
    assert processes_of(running_vm.insid) == []
    assert driver.metrics(running_vm.insid).alive is False


def test_stopping_a_stopped_vm_does_nothing(driver: HypervisorDriver, shared_vm: VM):
    if driver.state(shared_vm.insid) is not VMState.STOPPED:
        driver.stop(shared_vm.insid, timeout=STOP_TIMEOUT)
    assert driver.stop(shared_vm.insid, timeout=STOP_TIMEOUT) is True
    assert driver.state(shared_vm.insid) is VMState.STOPPED


def test_a_new_driver_instance_adopts_the_running_vm_and_can_stop_it(
    driver_class: type[HypervisorDriver], driver: HypervisorDriver, running_vm: VM
):
    needs(driver, "adopt")
    restarted = driver_class(driver.root)  # as after a restart of the node controller
    assert running_vm.insid in restarted.adopt()
    assert restarted.state(running_vm.insid) is VMState.RUNNING
    assert restarted.stop(running_vm.insid, timeout=STOP_TIMEOUT) is True
    assert driver.state(running_vm.insid) is VMState.STOPPED


def test_run_with_snapshot_discards_the_guests_writes(driver: HypervisorDriver, vm_factory):
    needs(driver, "snapshot_run")
    vm = vm_factory(run_with_snapshot=True)
    disk_digest = sha256(vm.disk)
    boot(driver, vm)
    write_in_guest(vm, "snapshot-test.txt", "gone after stop")
    assert read_in_guest(vm, "snapshot-test.txt").text == "gone after stop"
    driver.stop(vm.insid, timeout=STOP_TIMEOUT)
    assert sha256(vm.disk) == disk_digest
    boot(driver, vm)
    assert read_in_guest(vm, "snapshot-test.txt").status_code == 404
