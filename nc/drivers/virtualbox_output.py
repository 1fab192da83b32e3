"""Parsers of VBoxManage's output formats: pure functions from the text VBoxManage prints to Python values.

The formats are those VBoxManage 7 prints (its source, ``src/VBox/Frontends/VBoxManage``, run with ``LC_ALL=C`` so no
label is translated): ``showvminfo --machinereadable`` (VBoxManageInfo.cpp), ``list vms``/``runningvms``/``hdds``/
``extpacks`` (VBoxManageList.cpp, VBoxManageDisk.cpp), ``guestproperty enumerate`` (VBoxManageGuestProp.cpp),
``metrics query`` (VBoxManageMetrics.cpp), ``debugvm statistics`` (the STAM XML that VirtualBox's own session
window reads: ``Counter`` elements with ``c``, ``U64`` elements with ``val``) and ``--version``. Every value is
found by its key or column, never by its line number.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass

# name="value", "name"="value" (names holding '=' or '-' are quoted), or name=value for bare numbers.
_MACHINE_LINE_RE = re.compile(r'^(?:"(?P<qname>(?:[^"\\]|\\.)*)"|(?P<name>[^="]+))=(?P<value>.*)$')
_ESCAPE_RE = re.compile(r"\\(.)")
_VM_LINE_RE = re.compile(r'^"(?P<name>.*)" \{(?P<uuid>[0-9A-Fa-f-]+)\}$')
_PROPERTY_RE = re.compile(r"^(?P<name>\S+)\s*= '(?P<value>.*)'\s*$")
_VERSION_RE = re.compile(r"^(?P<major>\d+)\.(?P<minor>\d+)\.(?P<patch>\d+)")
_SAMPLE_RE = re.compile(r"^(?P<number>-?\d+(?:\.\d+)?)\s*(?P<unit>\S*)$")

# VMState values (machineStateToName with fShort) grouped by what the driver can say of the VM.
RUNNING_STATES = frozenset({
    "running", "starting", "restoring", "stopping", "saving", "teleporting", "teleportingin", "livesnapshotting",
    "onlinesnapshotting", "deletingsnapshotlive",
})
PAUSED_STATES = frozenset({"paused", "gurumeditation", "teleportingpausedvm", "deletingsnapshotlivepaused"})
STOPPED_STATES = frozenset({
    "poweroff", "saved", "aborted", "aborted-saved", "teleported", "restoringsnapshot", "deletingsnapshot",
    "settingup", "snapshotting",
})


def _unescape(text: str) -> str:
    return _ESCAPE_RE.sub(r"\1", text)


def parse_machinereadable(text: str) -> dict[str, str]:
    """``showvminfo --machinereadable`` as a dict; quoted values lose their quotes and backslash escapes."""
    values: dict[str, str] = {}
    for line in text.splitlines():
        match = _MACHINE_LINE_RE.match(line.strip())
        if not match:
            continue
        name = _unescape(match["qname"]) if match["qname"] is not None else match["name"]
        value = match["value"]
        if len(value) >= 2 and value.startswith('"') and value.endswith('"'):
            value = _unescape(value[1:-1])
        values[name] = value
    return values


def parse_vm_list(text: str) -> list[tuple[str, str]]:
    """``list vms`` / ``list runningvms``: (name, uuid) pairs in the order printed."""
    return [(match["name"], match["uuid"]) for line in text.splitlines()
            if (match := _VM_LINE_RE.match(line.strip()))]


def parse_blocks(text: str) -> list[dict[str, str]]:
    """``Key: value`` blocks separated by blank lines (``list hdds``, ``showmediuminfo``, ``list extpacks``)."""
    blocks: list[dict[str, str]] = []
    current: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            if current:
                blocks.append(current)
                current = {}
            continue
        key, colon, value = line.partition(":")
        if colon:
            current[key.strip()] = value.strip()
    if current:
        blocks.append(current)
    return blocks


def parse_guest_properties(text: str) -> dict[str, str]:
    """``guestproperty enumerate --no-timestamp --no-flags``: lines of ``name = 'value'`` (the name padded to a
    column); ``No properties found.`` gives an empty dict."""
    return {match["name"]: match["value"] for line in text.splitlines() if (match := _PROPERTY_RE.match(line))}


@dataclass(frozen=True)
class Sample:
    """One metric value as ``metrics query`` prints it: the number and its unit (``%``, ``kB``, ``mB``, ``B/s``)."""

    value: float
    unit: str


def parse_metrics_query(text: str, object_name: str) -> dict[str, Sample]:
    """``metrics query``: the latest sample of each metric of ``object_name``. The table has the columns Object,
    Metric and Values; Values lists the kept samples oldest first, separated by ", " (empty before the first)."""
    samples: dict[str, Sample] = {}
    for line in text.splitlines():
        columns = line.split(None, 2)
        if len(columns) < 3 or columns[0] != object_name:
            continue
        match = _SAMPLE_RE.match(columns[2].split(",")[-1].strip())
        if match:
            samples[columns[1]] = Sample(float(match["number"]), match["unit"])
    return samples


def parse_statistics(text: str) -> dict[str, int]:
    """``debugvm statistics``: each counter's name and value."""
    try:
        root = ElementTree.fromstring(text.strip())
    except ElementTree.ParseError:
        return {}
    values: dict[str, int] = {}
    for element in root.iter():
        raw = element.get("c") if element.tag == "Counter" else element.get("val") if element.tag == "U64" else None
        name = element.get("name")
        if raw is not None and name and raw.isdigit():
            values[name] = int(raw)
    return values


def parse_version(text: str) -> tuple[int, int, int] | None:
    """``VBoxManage --version`` (e.g. ``7.0.14r161095``), skipping any warning lines printed before it."""
    for line in reversed(text.splitlines()):
        match = _VERSION_RE.match(line.strip())
        if match:
            return int(match["major"]), int(match["minor"]), int(match["patch"])
    return None


# An iSCSI medium's location as VBoxManage storageattach names it: "<server>|<target>[|<lun>]"; eduCloud's targets
# end in the volume id (luhyaapi.volumes.target_iqn).
_ISCSI_VOLUME_RE = re.compile(r"^[0-9.]+\|iqn\.[^|]*:(?P<volume>vol-[0-9a-f]{8})(?:\|\d+)?$")


def used_ports(info: dict[str, str], controller: str) -> set[int]:
    """The ports of ``controller`` with something attached (``"<controller>-<port>-0"`` not ``none``)."""
    ports = set()
    for key, value in info.items():
        name, _, rest = key.partition("-")
        port, _, device = rest.partition("-")
        if name == controller and port.isdigit() and device == "0" and value not in ("", "none"):
            ports.add(int(port))
    return ports


def parse_attached_volumes(info: dict[str, str], controller: str) -> dict[str, tuple[int, str]]:
    """The volumes attached to ``controller`` in ``showvminfo --machinereadable``: volume id -> (port, the medium's
    UUID, '' if not shown). Other disks (the VM's own, an ISO) are not volumes."""
    found: dict[str, tuple[int, str]] = {}
    prefix = f"{controller}-"
    for key, value in info.items():
        if not key.startswith(prefix) or not key.endswith("-0"):
            continue
        port_text = key[len(prefix):-2]
        match = _ISCSI_VOLUME_RE.match(value)
        if port_text.isdigit() and match:
            found[match["volume"]] = (int(port_text), info.get(f"{controller}-ImageUUID-{port_text}-0", ""))
    return found
