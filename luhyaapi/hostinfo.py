"""What this machine has: CPUs, memory, disk (capacity and free), CPU usage, and its first MAC address."""

from __future__ import annotations

import shutil
from pathlib import Path

import psutil

from luhyaapi.messages import Resources


def capacity_and_free(data_dir: Path) -> tuple[Resources, Resources, float]:
    """Return (capacity, free, cpu usage %) of this host; disk is measured where ``data_dir`` lives."""
    memory = psutil.virtual_memory()
    disk = shutil.disk_usage(data_dir if data_dir.exists() else Path("/"))
    cpus = psutil.cpu_count() or 1
    usage = psutil.cpu_percent(interval=None)
    capacity = Resources(cpus=cpus, memory_mb=memory.total // 2**20, disk_mb=disk.total // 2**20)
    free = Resources(cpus=round(cpus * (100 - usage) / 100, 2), memory_mb=memory.available // 2**20,
                     disk_mb=disk.free // 2**20)
    return capacity, free, usage


def first_mac() -> str:
    """The MAC of the first non-loopback interface, or '' when there is none."""
    for name, addresses in sorted(psutil.net_if_addrs().items()):
        if name == "lo":
            continue
        for address in addresses:
            if address.family == psutil.AF_LINK and address.address and address.address != "00:00:00:00:00:00":
                return address.address.lower()
    return ""
