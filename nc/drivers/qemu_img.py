"""Disk images through ``qemu-img``: what format a file is, whether it refers to other files, linked clones."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

from nc.drivers.base import DiskTooSmall, DriverError

QEMU_IMG = "qemu-img"
# Formats a VM may boot from or a clone may sit on. Others (luks, nbd, iscsi, dmg...) need secrets, open the network
# or are read-only curiosities; none of them is an image format eduCloud hands out.
ALLOWED_FORMATS = frozenset({"qcow2", "raw", "vmdk", "vdi", "vhdx", "vpc"})
IMG_TIMEOUT = 60.0
# Writing out a whole disk: tens of GiB at disk speed.
CONVERT_TIMEOUT = 4 * 3600.0


def run_qemu_img(args: list[str], what: str, timeout: float = IMG_TIMEOUT) -> str:
    """Run ``qemu-img <args>`` and return its standard output; DriverError with qemu-img's message otherwise."""
    argv = [QEMU_IMG, *args]
    try:
        result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    except FileNotFoundError:
        raise DriverError(f"{what}: {QEMU_IMG} is not installed") from None
    except subprocess.TimeoutExpired:
        raise DriverError(f"{what}: {QEMU_IMG} did not finish within {timeout:.0f} s") from None
    if result.returncode != 0:
        raise DriverError(f"{what}: {QEMU_IMG} {args[0]} failed: {result.stderr.strip() or result.returncode}")
    return result.stdout


def image_info(path: Path) -> dict[str, Any]:
    """``qemu-img info`` of ``path`` (an absolute path, so no part of it is read as a protocol) as a dict.

    Shares the file with a VM that has it open (``--force-share``): only the image's metadata is read."""
    output = run_qemu_img(["info", "--output=json", "--force-share", str(path)], f"reading image {path}")
    try:
        info = json.loads(output)
    except ValueError:
        raise DriverError(f"reading image {path}: qemu-img info printed no JSON") from None
    if not isinstance(info, dict) or not isinstance(info.get("format"), str):
        raise DriverError(f"reading image {path}: qemu-img info gave no format")
    return info


def image_format(path: Path) -> str:
    """The format of disk image ``path``; DriverError if it cannot be read or is not one a VM may use."""
    info = image_info(path)
    if info["format"] not in ALLOWED_FORMATS:
        allowed = ", ".join(sorted(ALLOWED_FORMATS))
        raise DriverError(f"image {path} is in format {info['format']!r}; allowed: {allowed}")
    return info["format"]


def references_of(path: Path, info: dict[str, Any]) -> list[str]:
    """Files other than ``path`` that the image described by ``info`` would make QEMU open."""
    references = []
    backing = info.get("full-backing-filename") or info.get("backing-filename")
    if backing:
        references.append(f"backing file {backing}")
    specific = info.get("format-specific") or {}
    data = specific.get("data") or {}
    if data.get("data-file"):
        references.append(f"data file {data['data-file']}")
    for extent in data.get("extents") or ():
        name = extent.get("filename", "")
        if Path(os.path.join(path.parent, name)).resolve() != path.resolve():
            references.append(f"extent {name}")
    return references


def clone_image(base: Path, dest: Path) -> None:
    """Make ``dest`` a qcow2 child of ``base`` (see ``HypervisorDriver.clone_disk`` for the contract).

    ``base`` is inspected first and refused if it is not a self-contained image; the child records ``base``'s
    absolute path and format, so QEMU never probes the base's format when the child is opened."""
    base = Path(os.path.abspath(base))
    dest = Path(os.path.abspath(dest))
    info = image_info(base)
    fmt = info["format"]
    if fmt not in ALLOWED_FORMATS:
        raise DriverError(f"cannot clone {base}: format {fmt!r} is not one of {', '.join(sorted(ALLOWED_FORMATS))}")
    references = references_of(base, info)
    if references:
        raise DriverError(f"cannot clone {base}: it refers to other files ({'; '.join(references)})")
    _claim(dest, f"cannot clone {base} to {dest}")
    try:
        run_qemu_img(["create", "-q", "-f", "qcow2", "-b", str(base), "-F", fmt, str(dest)], f"cloning {base}")
    except BaseException:
        dest.unlink(missing_ok=True)
        raise


def grow_image(path: Path, size_bytes: int) -> int:
    """Grow disk image ``path``'s virtual size to ``size_bytes`` with ``qemu-img resize`` if it is smaller (see
    ``HypervisorDriver.grow_disk``); its format is pinned from ``qemu-img info``. Returns the virtual size after."""
    path = Path(os.path.abspath(path))
    info = image_info(path)
    fmt, current = info["format"], int(info.get("virtual-size") or 0)
    if fmt not in ALLOWED_FORMATS:
        raise DriverError(f"cannot resize {path}: format {fmt!r} is not one of {', '.join(sorted(ALLOWED_FORMATS))}")
    if current > size_bytes:
        raise DiskTooSmall(f"the image's disk is {_gib(current)}, bigger than the {_gib(size_bytes)} asked for (the "
                           f"VM type's disk): choose a VM type with at least {_gib(current)} of disk")
    if current < size_bytes:
        run_qemu_img(["resize", "-q", "-f", fmt, str(path), str(size_bytes)], f"resizing {path}")
    return size_bytes


def _gib(size_bytes: int) -> str:
    return f"{size_bytes / 2**30:.3g} GiB"


def _claim(dest: Path, what: str) -> None:
    try:
        # Claims the name first: qemu-img would overwrite a file another caller just made.
        os.close(os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600))
    except FileExistsError:
        raise DriverError(f"{what}: {dest} exists") from None
    except OSError as exc:
        raise DriverError(f"{what}: {exc.strerror}") from None


def flatten_image(source: Path, dest: Path) -> None:
    """Write ``dest`` as a self-contained qcow2 with the content of ``source`` and its backing chain (see
    ``HypervisorDriver.flatten_disk``). ``source``'s format is pinned from ``qemu-img info`` so nothing is probed."""
    source = Path(os.path.abspath(source))
    dest = Path(os.path.abspath(dest))
    fmt = image_format(source)
    what = f"flattening {source}"
    _claim(dest, what)
    try:
        run_qemu_img(["convert", "-q", "-f", fmt, "-O", "qcow2", str(source), str(dest)], what, CONVERT_TIMEOUT)
    except BaseException:
        dest.unlink(missing_ok=True)
        raise
