"""Which accelerator QEMU uses on this machine: KVM when a short test boot shows it runs guests, TCG otherwise."""

from __future__ import annotations

import functools
import os
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

QEMU_SYSTEM = "qemu-system-x86_64"
CPUINFO = Path("/proc/cpuinfo")
KVM_DEVICE = Path("/dev/kvm")
TEST_BOOT_SECONDS = 5.0
# SeaBIOS prints this once its power-on self test is done and it looks for a boot device.
BIOS_DONE = b"Booting from "


@dataclass(frozen=True)
class Accelerator:
    """The accelerator QEMU is started with (``kvm`` or ``tcg``) and why it was chosen."""

    name: str
    reason: str


def cpu_flags(cpuinfo: str) -> set[str]:
    """The CPU feature flags listed in ``/proc/cpuinfo`` text."""
    flags: set[str] = set()
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "flags":
            flags.update(value.split())
    return flags


def choose_accelerator(cpuinfo: str, kvm_device: Path, test_boot: Callable[[], str | None]) -> Accelerator:
    """KVM if the CPU offers hardware virtualization, ``kvm_device`` opens and ``test_boot`` (None when a guest
    ran, else what went wrong) succeeds; TCG otherwise. No test boot is tried without vmx/svm: some machines
    offer a /dev/kvm on which guests start and then hang."""
    if not cpu_flags(cpuinfo) & {"vmx", "svm"}:
        return Accelerator("tcg", "the CPU shows no vmx/svm flag in /proc/cpuinfo")
    try:
        os.close(os.open(kvm_device, os.O_RDWR | os.O_CLOEXEC))
    except OSError as exc:
        return Accelerator("tcg", f"cannot open {kvm_device}: {exc.strerror}")
    failure = test_boot()
    if failure is not None:
        return Accelerator("tcg", f"a KVM test boot failed: {failure}")
    return Accelerator("kvm", "a KVM test boot ran SeaBIOS to its boot menu")


def kvm_test_boot(seconds: float = TEST_BOOT_SECONDS) -> str | None:
    """Boot a diskless KVM guest whose SeaBIOS writes its log to a debug port: None if the BIOS gets through its
    self test within ``seconds``, else what happened."""
    with tempfile.TemporaryDirectory(prefix="educloud-kvm-probe-") as tmp:
        bios_log = Path(tmp) / "bios.log"
        stderr_path = Path(tmp) / "stderr"
        argv = [
            QEMU_SYSTEM, "-accel", "kvm", "-machine", "pc", "-cpu", "host", "-m", "32",
            "-nodefaults", "-no-user-config", "-display", "none",
            "-chardev", f"file,id=bios,path={str(bios_log).replace(',', ',,')}",
            "-device", "isa-debugcon,iobase=0x402,chardev=bios",
        ]  # fmt: skip
        with stderr_path.open("wb") as stderr:
            try:
                process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr)
            except OSError as exc:
                return f"cannot run {QEMU_SYSTEM}: {exc.strerror}"
        try:
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline:
                if bios_log.exists() and BIOS_DONE in bios_log.read_bytes():
                    return None
                if process.poll() is not None:
                    message = stderr_path.read_text(errors="replace").strip()
                    return f"qemu exited with status {process.returncode}: {message}"
                time.sleep(0.05)
            return f"SeaBIOS did not finish its self test within {seconds:.0f} s"
        finally:
            process.kill()
            process.wait()


@functools.cache
def detect_accelerator() -> Accelerator:
    """The accelerator of this machine, found once per process (a test boot takes up to a few seconds)."""
    try:
        cpuinfo = CPUINFO.read_text()
    except OSError as exc:
        return Accelerator("tcg", f"cannot read {CPUINFO}: {exc.strerror}")
    return choose_accelerator(cpuinfo, KVM_DEVICE, kvm_test_boot)
