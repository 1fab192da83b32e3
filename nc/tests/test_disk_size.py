"""The VM type's disk size on the node: an instance's fresh clone grows to it with ``qemu-img resize`` (the image
and its base file unchanged), a VM type smaller than the image is refused with both sizes, and a run command
without a size keeps the image's. Real qemu-img on real image files."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from nc.drivers.base import DiskTooSmall
from nc.drivers.qemu import QemuDriver
from nc.services.images import size_disk
from nc.services.instances import _disk_mb

MIB = 2**20


def virtual_size(path: Path) -> int:
    info = subprocess.run(["qemu-img", "info", "--output=json", "--force-share", str(path)], capture_output=True,
                          text=True, check=True)
    return json.loads(info.stdout)["virtual-size"]


@pytest.fixture
def clone(tmp_path: Path) -> tuple[QemuDriver, Path, Path]:
    """A 64 MiB base image and an instance's linked clone of it, as the node makes them."""
    base, disk = tmp_path / "base.qcow2", tmp_path / "ins" / "disk.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(base), "64M"], check=True)
    driver = QemuDriver(tmp_path / "vms")
    driver.clone_disk(base, disk)
    return driver, base, disk


def test_a_fresh_clone_grows_to_the_vm_types_disk_and_its_base_stays_as_it_was(clone):
    driver, base, disk = clone
    size_disk(driver, disk, 1024)
    assert virtual_size(disk) == 1024 * MIB
    assert virtual_size(base) == 64 * MIB


def test_a_vm_type_smaller_than_the_image_is_refused_with_both_sizes_and_nothing_shrinks(clone):
    driver, _base, disk = clone
    with pytest.raises(DiskTooSmall) as refused:
        size_disk(driver, disk, 32)
    message = str(refused.value)
    assert "0.0625 GiB" in message and "0.0312 GiB" in message and "choose a VM type with at least" in message
    assert virtual_size(disk) == 64 * MIB


def test_a_vm_type_of_exactly_the_images_size_changes_nothing(clone):
    driver, _base, disk = clone
    size_disk(driver, disk, 64)
    assert virtual_size(disk) == 64 * MIB


def test_a_command_without_a_usable_size_keeps_the_images_size(clone):
    driver, _base, disk = clone
    for paras in ({}, {"disk_mb": "2048"}, {"disk_mb": True}, {"disk_mb": -5}):
        size_disk(driver, disk, _disk_mb(paras))
    assert virtual_size(disk) == 64 * MIB
    assert _disk_mb({"disk_mb": 2048}) == 2048
