"""Hypervisor drivers of the node controller, chosen by name (``nc.hypervisor`` in the config)."""

from __future__ import annotations

import importlib
from pathlib import Path

from nc.drivers.base import HypervisorDriver

# Name -> "module:class"; imported on use so a node only loads the driver it runs.
DRIVERS: dict[str, str] = {
    "qemu": "nc.drivers.qemu:QemuDriver",
    "virtualbox": "nc.drivers.virtualbox:VirtualBoxDriver",
}


def driver_class(name: str) -> type[HypervisorDriver]:
    """The driver class called ``name``; ValueError naming the known ones otherwise."""
    try:
        module_name, class_name = DRIVERS[name].split(":")
    except KeyError:
        raise ValueError(f"unknown hypervisor {name!r}; known: {', '.join(sorted(DRIVERS))}") from None
    cls = getattr(importlib.import_module(module_name), class_name)
    if not (isinstance(cls, type) and issubclass(cls, HypervisorDriver)):
        raise TypeError(f"{DRIVERS[name]} is not a HypervisorDriver")
    return cls


def get_driver(name: str, root: Path) -> HypervisorDriver:
    """A driver instance of hypervisor ``name`` keeping its VMs' files under ``root``."""
    return driver_class(name)(root)
