"""The test VM image (tools/testimage/build.sh) booted by QEMU under TCG: the build is idempotent and described by its
sidecar; the guest boots from the disk alone, shows its banner on the VGA and serial consoles, serves its page,
writes files to its own disk through the CGI and refuses hostile names, powers off cleanly when QEMU presses the ACPI
power button, and still has what was written on a second boot with other disk and NIC models."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import socket
import subprocess
import time
import uuid
from pathlib import Path

import pytest
import requests

from tests.services import ROOT, free_port

QEMU = shutil.which("qemu-system-x86_64")
BUILD = ROOT / "tools" / "testimage" / "build.sh"
BOOT_TIMEOUT = 60
POWEROFF_TIMEOUT = 60
BANNER = "eduCloud test VM"
IP_MARKER = re.compile(r"^EDUCLOUD-GUEST-IP (\d+\.\d+\.\d+\.\d+)\r?$", re.MULTILINE)
VGA_TEXT = 0xB8000
VGA_TEXT_SIZE = 0x8000

pytestmark = pytest.mark.skipif(QEMU is None, reason="qemu-system-x86_64 is not installed (tests/run.sh installs "
                                                      "qemu-system-x86)")


def report(phase: str, started: float) -> None:
    print(f"testimage: {phase} took {time.monotonic() - started:.1f}s", flush=True)


class Qmp:
    """A QMP connection: commands and their answers, with the events that arrive in between kept in ``events``."""

    def __init__(self, path: Path, timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.sock = socket.socket(socket.AF_UNIX)
                self.sock.settimeout(timeout)
                self.sock.connect(str(path))
                break
            except OSError:
                self.sock.close()
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        self.stream = self.sock.makefile("rwb")
        self.events: list[dict] = []
        self.greeting = self._read()
        self.command("qmp_capabilities")

    def _read(self) -> dict:
        line = self.stream.readline()
        if not line:
            raise ConnectionError("QEMU closed its QMP socket")
        return json.loads(line)

    def command(self, name: str, **arguments) -> object:
        self.stream.write(json.dumps({"execute": name, "arguments": arguments}).encode() + b"\n")
        self.stream.flush()
        while True:
            message = self._read()
            if "event" in message:
                self.events.append(message)
            elif "error" in message:
                raise RuntimeError(f"QMP {name}: {message['error']}")
            elif "return" in message:
                return message["return"]

    def drain(self) -> list[dict]:
        """Every event until QEMU closes the socket (it does when it exits)."""
        try:
            while True:
                message = self._read()
                if "event" in message:
                    self.events.append(message)
        except (ConnectionError, OSError):
            return self.events

    def close(self) -> None:
        self.stream.close()
        self.sock.close()


class GuestVM:
    """One QEMU run (TCG) of a disk: serial console in a file, QMP on a unix socket, the guest's port 80 forwarded
    from a free loopback port."""

    def __init__(self, disk: Path, workdir: Path, disk_interface: str, nic: str) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.serial_log = workdir / "serial.log"
        self.qemu_log = workdir / "qemu.log"
        self.qmp_path = workdir / "qmp.sock"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.argv = [QEMU, "-accel", "tcg", "-m", "256", "-display", "none",
                     "-serial", f"file:{self.serial_log}",
                     "-qmp", f"unix:{self.qmp_path},server=on,wait=off",
                     "-drive", f"file={disk},format=qcow2,if={disk_interface}",
                     "-netdev", f"user,id=net0,hostfwd=tcp:127.0.0.1:{self.port}-:80",
                     "-device", f"{nic},netdev=net0"]
        self.process: subprocess.Popen | None = None
        self.qmp: Qmp | None = None

    def start(self) -> GuestVM:
        with self.qemu_log.open("wb") as log:
            self.process = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT)
        self.qmp = Qmp(self.qmp_path)
        return self

    def serial(self) -> str:
        return self.serial_log.read_text(errors="replace") if self.serial_log.exists() else ""

    def wait_for(self, marker: str, timeout: float = BOOT_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while marker not in self.serial():
            if self.process.poll() is not None:
                raise AssertionError(f"QEMU exited with {self.process.returncode} before {marker}:\n{self.tail()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"no {marker} on the serial console after {timeout}s:\n{self.tail()}")
            time.sleep(0.1)

    def guest_ip(self) -> str:
        found = IP_MARKER.findall(self.serial())
        assert found, f"no EDUCLOUD-GUEST-IP line on the serial console:\n{self.tail()}"
        return found[-1]

    def vga_text(self) -> str:
        """The characters of the VGA text memory (what a VNC client shows), read through QMP."""
        dump = self.serial_log.with_name("vga.bin")
        self.qmp.command("pmemsave", val=VGA_TEXT, size=VGA_TEXT_SIZE, filename=str(dump))
        return dump.read_bytes()[0::2].decode("cp437")

    def power_button(self, timeout: float = POWEROFF_TIMEOUT) -> int:
        """Press the ACPI power button (QMP system_powerdown) and wait for QEMU to exit on its own."""
        self.qmp.command("system_powerdown")
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"QEMU still runs {timeout}s after system_powerdown:\n{self.tail()}") from None

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.serial().splitlines()[-lines:])

    def stop(self) -> None:
        if self.qmp is not None:
            self.qmp.close()
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)


def build() -> tuple[Path, str]:
    """Run build.sh: the image's path (its only output) and its messages."""
    result = subprocess.run(["bash", str(BUILD)], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"build.sh failed:\n{result.stdout}\n{result.stderr}"
    path = Path(result.stdout.strip())
    assert path.is_absolute() and path.is_file(), f"build.sh printed {result.stdout!r}"
    return path, result.stderr


@pytest.fixture(scope="module")
def image() -> Path:
    started = time.monotonic()
    path, _ = build()
    report("build (or finding it up to date)", started)
    return path


@pytest.fixture(scope="module")
def disk(image, tmp_path_factory) -> Path:
    """A copy of the image for this module's VMs, as a node would have it after fetching it."""
    copy = tmp_path_factory.mktemp("testimage") / "disk.qcow2"
    shutil.copyfile(image, copy)
    return copy


@pytest.fixture(scope="module")
def first_boot(disk):
    """The disk booted on IDE with an e1000 NIC, ready (httpd listens and eth0 has an address)."""
    started = time.monotonic()
    vm = GuestVM(disk, disk.parent / "boot1", "ide", "e1000").start()
    try:
        vm.wait_for("EDUCLOUD-GUEST-READY")
        report("first boot to EDUCLOUD-GUEST-READY (IDE, e1000)", started)
        yield vm
    finally:
        vm.stop()


def test_build_is_described_by_its_sidecar_and_done_once(image):
    meta = json.loads(image.with_name("educloud-test.json").read_text())
    data = image.read_bytes()
    assert meta["file"] == image.name
    assert meta["format"] == "qcow2"
    assert meta["size"] == len(data)
    assert meta["sha256"] == hashlib.sha256(data).hexdigest()
    assert re.fullmatch(r"\d+\.\d+\.\d+-\d+-amd64", meta["kernel_version"])
    assert meta["kernel_package"] == f"linux-image-{meta['kernel_version']}"
    info = json.loads(subprocess.run(["qemu-img", "info", "--output=json", str(image)], capture_output=True,
                                     check=True).stdout)
    assert info["format"] == "qcow2"
    assert info["virtual-size"] == meta["virtual_size"]

    before = image.stat().st_mtime_ns
    started = time.monotonic()
    path, messages = build()
    report("second build (up to date)", started)
    assert path == image
    assert image.stat().st_mtime_ns == before, "an up-to-date image was built again"
    assert "making the initramfs" not in messages


def test_guest_shows_its_banner_and_address_on_serial_and_vga(first_boot):
    serial = first_boot.serial()
    assert BANNER in serial
    assert "login:" in serial
    assert first_boot.guest_ip().startswith("10.0.2.")  # QEMU's user-mode network hands out 10.0.2.15

    deadline = time.monotonic() + 10
    screen = first_boot.vga_text()
    while not (BANNER in screen and "login:" in screen) and time.monotonic() < deadline:
        time.sleep(0.5)
        screen = first_boot.vga_text()
    assert BANNER in screen and "login:" in screen, f"the VGA console shows:\n{screen.strip()}"


def test_page_shows_host_address_and_files(first_boot):
    started = time.monotonic()
    page = requests.get(first_boot.url + "/", timeout=30)
    report("page", started)
    assert page.status_code == 200
    assert "text/html" in page.headers["Content-Type"]
    assert f"<h1>{BANNER}</h1>" in page.text
    assert '<b id="hostname">educloud-test</b>' in page.text
    assert f'<b id="ip">{first_boot.guest_ip()}</b>' in page.text
    for boot_file in ("vmlinuz", "initrd.img", "syslinux.cfg"):
        assert f"<li>{boot_file} (" in page.text


@pytest.mark.parametrize("name", ["../etc/passwd", "..", ".", "a/b", "x;reboot", "$(reboot)", "a b", "", "n" * 65,
                                  "caf\u00e9"])
def test_hostile_names_are_refused(first_boot, name):
    written = requests.get(first_boot.url + "/cgi-bin/write", params={"name": name, "text": "x"}, timeout=30)
    assert written.status_code == 400, written.text
    read = requests.get(first_boot.url + "/cgi-bin/read", params={"name": name}, timeout=30)
    assert read.status_code == 400, read.text


def test_files_the_vm_boots_from_cannot_be_overwritten(first_boot):
    for name in ("vmlinuz", "SYSLINUX.CFG"):
        answer = requests.get(first_boot.url + "/cgi-bin/write", params={"name": name, "text": "x"}, timeout=30)
        assert answer.status_code == 403, answer.text
    assert requests.get(first_boot.url + "/cgi-bin/read", params={"name": "syslinux.cfg"}, timeout=30).text == \
        (BUILD.parent / "syslinux.cfg").read_text()


@pytest.mark.parametrize("query", [{"seconds": "601", "mb": "0"}, {"seconds": "-1", "mb": "0"}, {"seconds": "1"},
                                   {"seconds": "0", "mb": "17"}, {"seconds": "1;reboot", "mb": "0"}])
def test_load_refuses_numbers_out_of_range(first_boot, query):
    answer = requests.get(first_boot.url + "/cgi-bin/load", params=query, timeout=30)
    assert answer.status_code == 400, answer.text


def test_load_keeps_a_cpu_busy_and_writes_to_the_boot_disk(first_boot):
    """What the metrics tests rely on: QEMU's CPU time (read from /proc) rises by a good part of the seconds asked
    (all of them on an idle host; a busy one gives QEMU less), and the bytes asked reach the boot disk."""
    cpu_before = _qemu_cpu_seconds(first_boot.process.pid)
    started = time.monotonic()
    answer = requests.get(first_boot.url + "/cgi-bin/load", params={"seconds": "6", "mb": "2"}, timeout=60)
    assert answer.status_code == 200, answer.text
    assert "wrote 2 MiB" in answer.text
    time.sleep(max(0.0, 7 - (time.monotonic() - started)))
    assert _qemu_cpu_seconds(first_boot.process.pid) - cpu_before >= 2, "the guest's CPU was not kept busy"
    assert "<li>load.bin (2097152 bytes)</li>" in requests.get(first_boot.url + "/", timeout=30).text


def _qemu_cpu_seconds(pid: int) -> float:
    """User and system CPU time of a process (all its threads), in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_written_file_survives_power_button_and_second_boot(first_boot, disk):
    """Runs last in this module: it powers the first VM off."""
    name = f"note-{uuid.uuid4().hex[:8]}.txt"
    text = "written from outside & kept\nacross a power-off: caf\u00e9 \u2713\n"
    started = time.monotonic()
    written = requests.get(first_boot.url + "/cgi-bin/write", params={"name": name, "text": text}, timeout=30)
    report("write through the CGI", started)
    assert written.status_code == 200, written.text
    assert requests.get(first_boot.url + "/cgi-bin/read", params={"name": name}, timeout=30).content.decode() == text
    assert f"<li>{name} ({len(text.encode())} bytes)</li>" in requests.get(first_boot.url + "/", timeout=30).text
    assert requests.get(first_boot.url + "/cgi-bin/read", params={"name": "absent.txt"}, timeout=30).status_code == 404

    started = time.monotonic()
    assert first_boot.power_button() == 0
    report("power button to QEMU exit", started)
    events = [event["event"] for event in first_boot.qmp.drain()]
    shutdowns = [event for event in first_boot.qmp.events if event["event"] == "SHUTDOWN"]
    assert "POWERDOWN" in events
    assert shutdowns and shutdowns[-1]["data"]["reason"] == "guest-shutdown", events
    assert "EDUCLOUD-GUEST-STOPPING" in first_boot.serial()
    assert "reboot: Power down" in first_boot.serial()

    started = time.monotonic()
    second = GuestVM(disk, disk.parent / "boot2", "virtio", "virtio-net-pci").start()
    try:
        second.wait_for("EDUCLOUD-GUEST-READY")
        report("second boot to EDUCLOUD-GUEST-READY (virtio disk and NIC)", started)
        assert "/dev/vda mounted at /data" in second.serial()
        read = requests.get(second.url + "/cgi-bin/read", params={"name": name}, timeout=30)
        assert read.status_code == 200, read.text
        assert read.content.decode() == text
        # The second power-off comes from inside, as a person shutting the guest down would.
        started = time.monotonic()
        assert requests.get(second.url + "/cgi-bin/poweroff", timeout=30).status_code == 200
        assert second.process.wait(timeout=POWEROFF_TIMEOUT) == 0
        report("power-off from inside the guest", started)
        assert "EDUCLOUD-GUEST-STOPPING" in second.serial()
    finally:
        second.stop()
