"""What the QEMU driver does beyond the common contract: its command line, the accelerator choice, image checks
before a clone, taps on bridges, pid files it must not trust blindly, and guest reports it must not trust at all.

The VMs started here boot no system (their disk is blank, SeaBIOS finds nothing to boot): starting QEMU is enough.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import struct
import subprocess
from pathlib import Path

import pytest
from vncdotool.rfb import _vnc_des, des_encrypt

from luhyaapi.ids import new_id
from luhyaapi.vmspec import ConsoleSpec, DiskSpec, NicSpec, PortForward, VMSpec
from nc.drivers.base import DriverError, VMState
from nc.drivers.qemu import (
    FORMATS_FILE,
    PID_FILE,
    QMP_SOCKET,
    SERIAL_LOG,
    VNC_PASSWORD_FILE,
    QemuDriver,
    qemu_argv,
    tap_name,
)
from nc.drivers.qemu_accel import choose_accelerator, cpu_flags
from nc.drivers.qemu_qmp import QMPClient, QMPError

pytestmark = pytest.mark.timeout(120)

SYS_NET = Path("/sys/class/net")
CPUINFO_KVM = "processor\t: 0\nflags\t\t: fpu vme de pse vmx sse2\n"
CPUINFO_NO_KVM = "processor\t: 0\nflags\t\t: fpu vme de pse sse2 hypervisor\n"


def spec_of(insid: str = "ins-0123abcd", **options) -> VMSpec:
    options.setdefault("console", ConsoleSpec(port=5905))
    disks = options.pop("disks", ("/var/lib/educloud/ins/root.qcow2",))
    return VMSpec(insid=insid, disks=tuple(DiskSpec(path=path) for path in disks), **options)


def option_after(argv: list[str], option: str) -> list[str]:
    """Every value given to ``option`` on the command line."""
    return [argv[i + 1] for i, arg in enumerate(argv[:-1]) if arg == option]


def run_qemu_img(*args: str) -> None:
    subprocess.run(["qemu-img", *args], check=True, capture_output=True, timeout=60)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def qemu_available() -> None:
    availability = QemuDriver.probe()
    if not availability.available:
        pytest.skip(f"qemu: {availability.reason}")


@pytest.fixture
def driver(qemu_available, tmp_path: Path):
    """A QEMU driver in a fresh root; its VMs are destroyed afterwards."""
    driver = QemuDriver(tmp_path / "vms")
    yield driver
    for insid in driver.list_vms():
        driver.destroy(insid)


@pytest.fixture
def blank_disk(qemu_available, tmp_path: Path) -> Path:
    disk = tmp_path / "blank.qcow2"
    run_qemu_img("create", "-q", "-f", "qcow2", str(disk), "16M")
    return disk


def test_the_command_line_runs_a_named_daemon_with_its_pid_file_qmp_socket_serial_log_and_vnc_display():
    vm_dir = Path("/srv/vms/ins-0123abcd")
    argv = qemu_argv(spec_of(memory_mb=768, cpus=2, console=ConsoleSpec(port=5907)), vm_dir, ["qcow2"], "tcg")
    assert argv[0] == "qemu-system-x86_64"
    assert option_after(argv, "-name") == ["ins-0123abcd"]
    assert "-daemonize" in argv
    assert option_after(argv, "-pidfile") == [str(vm_dir / PID_FILE)]
    assert option_after(argv, "-accel") == ["tcg"] and "-cpu" not in argv
    assert option_after(argv, "-m") == ["768"] and option_after(argv, "-smp") == ["2"]
    assert option_after(argv, "-vnc") == ["127.0.0.1:7"]
    assert option_after(argv, "-display") == ["none"]
    assert f"socket,id=qmp,path={vm_dir / QMP_SOCKET},server=on,wait=off" in option_after(argv, "-chardev")
    assert f"file,id=serial0,path={vm_dir / SERIAL_LOG}" in option_after(argv, "-chardev")
    assert "-snapshot" not in argv
    assert "pvpanic" in option_after(argv, "-device") and option_after(argv, "-action") == ["panic=shutdown"]


def test_a_console_password_is_read_from_a_file_in_the_vm_directory_never_from_the_command_line():
    vm_dir = Path("/srv/vms/ins-0123abcd")
    argv = qemu_argv(spec_of(console=ConsoleSpec(port=5907, password="Pw4run99")), vm_dir, ["qcow2"], "tcg")
    assert option_after(argv, "-vnc") == ["127.0.0.1:7,password-secret=vncpassword"]
    assert f"secret,id=vncpassword,format=raw,file={vm_dir / VNC_PASSWORD_FILE}" in option_after(argv, "-object")
    assert not any("Pw4run99" in arg for arg in argv)


def test_the_command_line_under_kvm_passes_the_host_cpu():
    argv = qemu_argv(spec_of(), Path("/srv/vms/ins-0123abcd"), ["qcow2"], "kvm")
    assert option_after(argv, "-accel") == ["kvm"] and option_after(argv, "-cpu") == ["host"]


def test_nat_nics_forward_each_host_port_and_bridged_nics_use_their_tap():
    nat = NicSpec(
        mac="52:54:00:00:00:01",
        forwards=(
            PortForward(host_port=8080, guest_port=80),
            PortForward(protocol="udp", host_ip="10.1.2.3", host_port=5353, guest_port=53),
        ),
    )
    bridged = NicSpec(mode="bridged", bridge="br0", model="virtio", mac="52:54:00:00:00:02")
    argv = qemu_argv(spec_of(nics=(nat, bridged)), Path("/srv/vms/ins-0123abcd"), ["qcow2"], "tcg")
    assert option_after(argv, "-netdev") == [
        "user,id=net0,hostfwd=tcp:127.0.0.1:8080-:80,hostfwd=udp:10.1.2.3:5353-:53",
        f"tap,id=net1,ifname={tap_name('ins-0123abcd', 1)},script=no,downscript=no",
    ]
    assert "e1000,netdev=net0,mac=52:54:00:00:00:01" in option_after(argv, "-device")
    assert "virtio-net-pci,netdev=net1,mac=52:54:00:00:00:02" in option_after(argv, "-device")


def test_a_vm_without_nics_gets_no_default_nic():
    argv = qemu_argv(spec_of(), Path("/srv/vms/ins-0123abcd"), ["qcow2"], "tcg")
    assert "-nodefaults" in argv and "-netdev" not in argv


@pytest.mark.parametrize(
    ("disk_type", "expected"),
    [
        ("ide", ["-drive", "file=/d/a.qcow2,format=qcow2,media=disk,if=ide,index=0"]),
        ("virtio", ["-drive", "file=/d/a.qcow2,format=qcow2,media=disk,if=virtio,index=0"]),
        ("sata", ["-device", "ahci,id=ahci", "-drive", "file=/d/a.qcow2,format=qcow2,media=disk,if=none,id=disk0",
                  "-device", "ide-hd,drive=disk0,bus=ahci.0"]),
    ],
)  # fmt: skip
def test_disks_attach_to_the_bus_of_their_disk_type_in_their_format(disk_type, expected):
    argv = qemu_argv(spec_of(disk_type=disk_type, disks=("/d/a.qcow2",)), Path("/v/ins-0123abcd"), ["qcow2"], "tcg")
    start = argv.index(expected[0], argv.index("-daemonize"))
    assert argv[start : start + len(expected)] == expected


def test_run_with_snapshot_adds_snapshot():
    argv = qemu_argv(spec_of(run_with_snapshot=True), Path("/v/ins-0123abcd"), ["raw"], "tcg")
    assert "-snapshot" in argv
    assert "file=/var/lib/educloud/ins/root.qcow2,format=raw,media=disk,if=ide,index=0" in option_after(argv, "-drive")


def test_commas_in_the_vm_directory_are_doubled_inside_qemu_options():
    argv = qemu_argv(spec_of(), Path("/srv/a,b/ins-0123abcd"), ["qcow2"], "tcg")
    assert "file,id=serial0,path=/srv/a,,b/ins-0123abcd/serial.log" in option_after(argv, "-chardev")


def test_tap_names_are_the_same_every_time_distinct_per_nic_and_fit_linux():
    names = [tap_name("ins-0123abcd", index) for index in range(4)]
    assert names == [tap_name("ins-0123abcd", index) for index in range(4)]
    assert len(set(names)) == 4
    assert all(len(name) <= 15 for name in names)
    assert tap_name("ins-0123abcd", 0) != tap_name("ins-0123abce", 0)


def test_without_vmx_or_svm_the_accelerator_is_tcg_without_a_test_boot(tmp_path: Path):
    def no_test_boot() -> str | None:
        pytest.fail("a test boot was tried on a CPU without vmx/svm")

    kvm_device = tmp_path / "kvm"
    kvm_device.touch()
    assert choose_accelerator(CPUINFO_NO_KVM, kvm_device, no_test_boot).name == "tcg"


def test_a_kvm_device_that_does_not_open_means_tcg(tmp_path: Path):
    chosen = choose_accelerator(CPUINFO_KVM, tmp_path / "no-kvm", lambda: None)
    assert chosen.name == "tcg" and "no-kvm" in chosen.reason


def test_kvm_is_chosen_only_when_its_test_boot_runs_a_guest(tmp_path: Path):
    kvm_device = tmp_path / "kvm"
    kvm_device.touch()
    assert choose_accelerator(CPUINFO_KVM, kvm_device, lambda: None).name == "kvm"
    failed = choose_accelerator(CPUINFO_KVM, kvm_device, lambda: "SeaBIOS did not finish its self test")
    assert failed.name == "tcg" and "SeaBIOS" in failed.reason


def test_probe_reports_the_accelerator_of_this_machine(qemu_available):
    details = QemuDriver.probe().details
    assert details["accelerator"] in {"kvm", "tcg"}
    if not cpu_flags(Path("/proc/cpuinfo").read_text()) & {"vmx", "svm"}:
        assert details["accelerator"] == "tcg"


def test_create_refuses_an_rdp_console(driver: QemuDriver):
    with pytest.raises(DriverError, match="VNC"):
        driver.create(spec_of(console=ConsoleSpec(protocol="rdp", port=5905)))
    assert driver.state("ins-0123abcd") is VMState.ABSENT


def test_create_refuses_a_vnc_port_below_5900(driver: QemuDriver):
    with pytest.raises(DriverError, match="5900"):
        driver.create(spec_of(console=ConsoleSpec(port=5800)))
    assert driver.state("ins-0123abcd") is VMState.ABSENT


def test_create_refuses_a_root_too_deep_for_the_qmp_socket(qemu_available, tmp_path: Path):
    driver = QemuDriver(tmp_path / ("d" * 100))
    with pytest.raises(DriverError, match="too long"):
        driver.create(spec_of())
    assert not driver.root.exists()


def test_the_vm_directory_is_private(driver: QemuDriver):
    driver.create(spec_of())
    assert driver.vm_dir("ins-0123abcd").stat().st_mode & 0o077 == 0


def test_guest_info_takes_the_last_well_formed_address_the_guest_printed(driver: QemuDriver):
    driver.create(spec_of())
    assert driver.guest_info("ins-0123abcd").ip is None
    (driver.vm_dir("ins-0123abcd") / SERIAL_LOG).write_bytes(
        b"boot noise \xff\xfe\n"
        b"EDUCLOUD-GUEST-IP 10.0.2.15\r\n"
        b"EDUCLOUD-GUEST-IP 10.0.2.99; rm -rf /\n"
        b"EDUCLOUD-GUEST-IP 300.1.1.1\n"
        b"EDUCLOUD-GUEST-IP ../../etc\n"
        b"EDUCLOUD-GUEST-IP 192.168.7.20\n"
        b"EDUCLOUD-GUEST-IP not-an-ip\n"
        b"EDUCLOUD-GUEST-READY\n"
    )
    assert driver.guest_info("ins-0123abcd").ip == "192.168.7.20"


def test_start_keeps_the_process_beyond_the_caller_and_stop_powers_off_a_guest_that_ignores_the_button(
    driver: QemuDriver, blank_disk: Path, free_port, processes_of
):
    driver.create(spec_of(disks=(str(blank_disk),), console=ConsoleSpec(port=free_port())))
    driver.start("ins-0123abcd")
    pid = int((driver.vm_dir("ins-0123abcd") / PID_FILE).read_text())
    assert os.getsid(pid) != os.getsid(0), "QEMU should run in its own session, apart from the node controller"
    # SeaBIOS without a system to boot has no ACPI handler: the button does nothing, so stop has to power off.
    assert driver.stop("ins-0123abcd", timeout=1) is False
    assert driver.state("ins-0123abcd") is VMState.STOPPED
    assert processes_of("ins-0123abcd") == []
    assert not (driver.vm_dir("ins-0123abcd") / PID_FILE).exists()
    assert not (driver.vm_dir("ins-0123abcd") / QMP_SOCKET).exists()


def vnc_login(port: int, password: str) -> int:
    """Log in to a VNC console with VNC authentication (the answer computed by vncdotool); its SecurityResult."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as console:
        assert console.recv(12) == b"RFB 003.008\n"
        console.sendall(b"RFB 003.008\n")
        count = console.recv(1)[0]
        assert console.recv(count) == bytes([2]), "a console with a password offers VNC authentication only"
        console.sendall(bytes([2]))
        challenge = console.recv(16, socket.MSG_WAITALL)
        console.sendall(des_encrypt(_vnc_des(password), challenge))
        return struct.unpack(">I", console.recv(4, socket.MSG_WAITALL))[0]


def test_a_console_with_a_password_lets_in_only_who_knows_it_and_leaves_no_password_file(
    driver: QemuDriver, blank_disk: Path, free_port, processes_of
):
    port = free_port()
    driver.create(spec_of(disks=(str(blank_disk),), console=ConsoleSpec(port=port, password="Pw4run99")))
    driver.start("ins-0123abcd")
    assert not (driver.vm_dir("ins-0123abcd") / VNC_PASSWORD_FILE).exists()
    assert processes_of("Pw4run99") == [], "the password shows in no process's command line"
    assert vnc_login(port, "wrong000") != 0
    assert vnc_login(port, "Pw4run99") == 0


def test_a_pid_file_naming_another_process_is_not_taken_for_the_vm(driver: QemuDriver):
    driver.create(spec_of())
    bystander = subprocess.Popen(["sleep", "60"])
    try:
        (driver.vm_dir("ins-0123abcd") / PID_FILE).write_text(f"{bystander.pid}\n")
        assert driver.state("ins-0123abcd") is VMState.STOPPED
        assert driver.metrics("ins-0123abcd").alive is False
        assert driver.stop("ins-0123abcd") is True
        driver.destroy("ins-0123abcd")
        assert bystander.poll() is None, "the driver signalled a process that is not its VM"
    finally:
        bystander.send_signal(signal.SIGKILL)
        bystander.wait()


def test_a_start_that_qemu_refuses_reports_its_message_and_leaves_no_pid_file_or_process(
    driver: QemuDriver, blank_disk: Path, free_port, processes_of
):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", free_port()))
        taken.listen()
        port = taken.getsockname()[1]
        driver.create(spec_of(disks=(str(blank_disk),), console=ConsoleSpec(port=port)))
        with pytest.raises(DriverError, match="-vnc .*Address already in use"):
            driver.start("ins-0123abcd")
    assert driver.state("ins-0123abcd") is VMState.STOPPED
    assert processes_of("ins-0123abcd") == []
    assert not (driver.vm_dir("ins-0123abcd") / PID_FILE).exists()


def test_a_raw_disk_stays_raw_even_if_the_guest_writes_an_image_header_onto_it(
    driver: QemuDriver, tmp_path: Path, free_port
):
    disk = tmp_path / "data.raw"
    run_qemu_img("create", "-q", "-f", "raw", str(disk), "16M")
    driver.create(spec_of(disks=(str(disk),), console=ConsoleSpec(port=free_port())))
    driver.start("ins-0123abcd")
    driver.stop("ins-0123abcd", timeout=0)
    # What a guest could write onto its raw disk: a qcow2 header whose backing file is a host file.
    header = tmp_path / "header.qcow2"
    run_qemu_img("create", "-q", "-f", "qcow2", "-b", "/etc/shadow", "-F", "raw", str(header))
    with disk.open("r+b") as raw:
        raw.write(header.read_bytes())
    driver.start("ins-0123abcd")
    pid = int((driver.vm_dir("ins-0123abcd") / PID_FILE).read_text())
    assert f"file={disk},format=raw,media=disk,if=ide,index=0" in Path(f"/proc/{pid}/cmdline").read_text()
    assert json.loads((driver.vm_dir("ins-0123abcd") / FORMATS_FILE).read_text()) == {str(disk): "raw"}


def test_destroy_removes_a_symlinked_vm_directory_without_following_it(driver: QemuDriver, tmp_path: Path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "precious").write_text("keep")
    (elsewhere / "spec.json").write_text(spec_of().model_dump_json())
    driver.root.mkdir()
    (driver.root / "ins-0123abcd").symlink_to(elsewhere)
    driver.destroy("ins-0123abcd")
    assert not (driver.root / "ins-0123abcd").is_symlink()
    assert (elsewhere / "precious").read_text() == "keep"


def test_a_bridged_nic_gets_its_tap_on_the_bridge_and_destroy_removes_it(
    driver: QemuDriver, blank_disk: Path, free_port, isolated_bridge: str
):
    insid = new_id("instance")
    nic = NicSpec(mode="bridged", bridge=isolated_bridge, mac="52:54:00:00:00:07")
    driver.create(spec_of(insid, disks=(str(blank_disk),), nics=(nic,), console=ConsoleSpec(port=free_port())))
    driver.start(insid)
    tap = tap_name(insid, 0)
    assert os.listdir(SYS_NET / isolated_bridge / "brif") == [tap]
    assert driver.state(insid) is VMState.RUNNING
    driver.destroy(insid)
    assert not (SYS_NET / tap).exists()
    assert os.listdir(SYS_NET / isolated_bridge / "brif") == []


def test_a_start_onto_a_missing_bridge_fails_and_leaves_no_tap(
    driver: QemuDriver, blank_disk: Path, free_port, isolated_bridge: str
):
    insid = new_id("instance")
    nic = NicSpec(mode="bridged", bridge=f"{isolated_bridge}x", mac="52:54:00:00:00:08")
    driver.create(spec_of(insid, disks=(str(blank_disk),), nics=(nic,), console=ConsoleSpec(port=free_port())))
    with pytest.raises(DriverError, match=f"{isolated_bridge}x"):
        driver.start(insid)
    assert not (SYS_NET / tap_name(insid, 0)).exists()
    assert driver.state(insid) is VMState.STOPPED


def test_qmp_on_a_missing_socket_is_a_qmp_error(tmp_path: Path):
    with pytest.raises(QMPError, match="cannot connect"), QMPClient(tmp_path / "none.sock", timeout=1):
        pass


def test_qmp_refusals_carry_qemus_message(driver: QemuDriver, blank_disk: Path, free_port):
    driver.create(spec_of(disks=(str(blank_disk),), console=ConsoleSpec(port=free_port())))
    driver.start("ins-0123abcd")
    with QMPClient(driver.vm_dir("ins-0123abcd") / QMP_SOCKET) as qmp:
        assert qmp.execute("query-status")["status"] == "running"
        with pytest.raises(QMPError, match="no-such-command"):
            qmp.execute("no-such-command")
        qmp.execute("stop")
    assert driver.state("ins-0123abcd") is VMState.PAUSED
    driver.start("ins-0123abcd")
    assert driver.state("ins-0123abcd") is VMState.RUNNING
