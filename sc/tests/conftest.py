"""Fixtures of the storage controller's tests: a store in a scratch data dir per test, and a tgtd of the test's own
(free iSCSI port on 127.0.0.1 and a management port no other tgtd on the machine uses), stopped after the test."""

from __future__ import annotations

import shutil
import socket
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

from luhyaapi.volumes import VolumeTarget
from tests.services import TGT_SOCKETS, free_tgt_control_port

API = "/sc/api/1.0"


def files_under(folder: Path) -> list[str]:
    """Every file under ``folder`` but the lock files (to prove a refused call made nothing)."""
    if not folder.exists():
        return []
    return sorted(str(path.relative_to(folder)) for path in folder.rglob("*")
                  if path.is_file() and not path.name.endswith("lock"))


def _free_tcp_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def store(settings, tmp_path) -> Path:
    """A fresh data dir per test, and this test's own iSCSI and tgtd management ports; returns the sc folder (not
    autouse: the WebDAV tests beside these have their own)."""
    settings.EDUCLOUD = replace(settings.EDUCLOUD, data_dir=tmp_path / "data", sc_capacity_bytes=0,
                                iscsi_listen=("127.0.0.1", _free_tcp_port()), tgt_control_port=free_tgt_control_port())
    return tmp_path / "data" / "sc"


@pytest.fixture
def tgtd(store):
    """The SC's tgtd for this test (started by the first export or reconcile), stopped after it (its management
    socket with it)."""
    from sc.services.targets import target_server

    missing = [tool for tool in ("tgtd", "tgtadm", "qemu-io") if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"{', '.join(missing)} not installed (apt tgt qemu-utils qemu-block-extra)")
    server = target_server()
    yield server
    server.stop()
    assert not (TGT_SOCKETS / f"socket.{server.control_port}").exists()


def qemu_io(target: VolumeTarget, tmp_path: Path, *commands: str, secret: str | None = None,
            initiator: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``qemu-io`` on the target through QEMU's iSCSI initiator (libiscsi, qemu-block-extra), logging in with
    the target's CHAP user and ``secret`` (default the target's), as ``initiator`` (default the target's)."""
    secret_file = tmp_path / "chap.secret"
    secret_file.write_text(target.chap_secret if secret is None else secret)
    options = ",".join([
        "driver=iscsi", "transport=tcp", f"portal={target.host}:{target.port}", f"target={target.iqn}",
        f"lun={target.lun}", f"user={target.chap_user}", "password-secret=chap",
        f"initiator-name={initiator or target.initiator}"])
    argv = ["qemu-io", "--object", f"secret,id=chap,file={secret_file}", "--image-opts", options]
    for command in commands:
        argv += ["-c", command]
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)


def through_iscsi(target: VolumeTarget, tmp_path: Path, *commands: str) -> str:
    """``qemu_io`` that must succeed with every pattern it reads as expected; returns its output."""
    result = qemu_io(target, tmp_path, *commands)
    output = result.stdout + result.stderr
    assert result.returncode == 0 and "Pattern verification failed" not in output and "failed" not in output, output
    return output
