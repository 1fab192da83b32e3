"""An iSCSI target of a test's own: the SC's tgtd (``sc.services.targets.TargetServer``: tgtd in a session of its
own, checked to serve its portal, stopped by deleting its targets then the system) on a free loopback port with a
control port no other tgtd on the machine uses, exporting plain files as volumes the way an SC exports its volumes
(one target per volume, LUN 1, a CHAP account of its own, only the node's initiator let in).

``TargetServer.add_target`` takes the SC's ``Export`` records and the SC's volume files; the tests of the node's side
export a scratch file instead, with the same tgtadm steps.
"""

from __future__ import annotations

import secrets
import shutil
from pathlib import Path

from luhyaapi.volumes import VolumeTarget, target_iqn
from sc.services.targets import TargetError, TargetServer, parse_targets
from tests.services import free_port, free_tgt_control_port


def tgt_missing() -> str:
    """Why tgt cannot run here ('' when it can): tests skip with it."""
    if shutil.which("tgtd") is None or shutil.which("tgtadm") is None:
        return "tgt is not installed (tests/run.sh installs it: apt-get install tgt)"
    return ""


class TgtServer:
    """A private tgtd: ``export`` a file as a volume's target, ``sessions`` of a target, ``stop`` it all."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = Path(workdir)
        self.port = 0
        self.server: TargetServer | None = None
        self._tids: dict[str, int] = {}

    def start(self) -> TgtServer:
        """Start on a free port; another attempt on other ports when one is taken meanwhile."""
        errors = []
        for attempt in range(5):
            port = free_port()
            server = TargetServer(self.workdir / f"tgtd-{attempt}", ("127.0.0.1", port), free_tgt_control_port())
            try:
                server.start()
            except TargetError as exc:
                errors.append(str(exc))
                continue
            self.server, self.port = server, port
            return self
        raise RuntimeError(f"tgtd did not start after 5 attempts: {errors}")

    def export(self, volume_id: str, path: Path, initiator: str) -> VolumeTarget:
        """Export ``path`` as ``volume_id``'s target (LUN 1) to ``initiator`` only, with a new CHAP account."""
        tid = max(self._tids.values(), default=0) + 1
        user, secret = f"u{secrets.token_hex(6)}", secrets.token_hex(12)
        iqn = target_iqn(volume_id)
        self.server.tgtadm("--op", "new", "--mode", "target", "--tid", str(tid), "--targetname", iqn)
        self._tids[volume_id] = tid
        self.server.tgtadm("--op", "new", "--mode", "logicalunit", "--tid", str(tid), "--lun", "1",
                           "--backing-store", str(path))
        self.server.tgtadm("--op", "new", "--mode", "account", "--user", user, "--password", secret)
        self.server.tgtadm("--op", "bind", "--mode", "account", "--tid", str(tid), "--user", user)
        # By name (--initiator-address would match the initiator's IP address instead).
        self.server.tgtadm("--op", "bind", "--mode", "target", "--tid", str(tid), "--initiator-name", initiator)
        return VolumeTarget(volume_id=volume_id, host="127.0.0.1", port=self.port, iqn=iqn, chap_user=user,
                            chap_secret=secret, initiator=initiator)

    def sessions(self, volume_id: str) -> list[str]:
        """The initiator names logged in to ``volume_id``'s target now (its ``I_T nexus`` entries)."""
        shown = self.server.tgtadm("--op", "show", "--mode", "target").stdout
        tid = self._tids[volume_id]
        assert parse_targets(shown)[tid].iqn == target_iqn(volume_id)
        found, inside = [], False
        for line in shown.splitlines():
            if line.startswith("Target "):
                inside = line.startswith(f"Target {tid}: ")
            elif inside and line.strip().startswith("Initiator:"):
                found.append(line.split(":", 1)[1].split()[0])
        return found

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None
        self._tids.clear()
