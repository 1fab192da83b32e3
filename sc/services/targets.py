"""The volumes' iSCSI export: the SC's own tgtd, one target per exported volume, and the reconciling of tgtd with the
SC's ``Export`` records.

The SC runs a tgtd of its own (``tgtd -f -C <sc.tgt_control_port> --iscsi portal=<sc.iscsi_listen>``), managed with
``tgtadm -C <port>`` (its socket is ``/var/run/tgtd/socket.<port>``), so it never touches a tgtd of the system's or
of another SC on the same machine. It is started in a session of its own and outlives a restart of the SC's process,
so guests keep their disks meanwhile; a restarted SC adopts it by its pid file (after checking that process is this
SC's tgtd) and makes its targets match the records (``reconcile``), which also re-creates every target after tgtd
itself died. tgtd keeps nothing on disk: the records are the truth.

An export is target ``luhyaapi.volumes.target_iqn(volume_id)`` with LUN 1 the volume's file, an incoming CHAP account
of its own (random user and secret) bound to it, and an ACL of the node's initiator name only
(``luhyaapi.volumes.initiator_iqn``): a wrong secret fails the login, another initiator does not find the target.

Every command is an argv list; every name that reaches one (volume ids, node names) is validated first.
"""

from __future__ import annotations

import fcntl
import logging
import os
import secrets
import signal
import string
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import psutil
from django.conf import settings
from django.db import transaction

from luhyaapi.validators import InvalidValue, validate_name
from luhyaapi.volumes import VolumeTarget, initiator_iqn, target_iqn
from sc.choices import VolumeStateChoices
from sc.models import Export
from sc.services.store import VolumeError, forget_unfinished, get_volume, store_dir, store_lock, volume_path

logger = logging.getLogger(__name__)

TGTD = "tgtd"
TGTADM = "tgtadm"
SOCKET_DIR = Path("/var/run/tgtd")
LUN = 1
START_TIMEOUT = 10.0
STOP_TIMEOUT = 10.0
TGTADM_TIMEOUT = 30.0
PAUSE_TIMEOUT = 10.0
SECRET_ALPHABET = string.ascii_letters + string.digits


class TargetError(RuntimeError):
    """tgtd could not be started, stopped or told something; the message says why (tgtadm's own words)."""


@dataclass
class TargetState:
    """What tgtd says of one target: its name, the backing file of each LUN, its accounts and its ACL."""

    tid: int
    iqn: str
    luns: dict[int, str] = field(default_factory=dict)
    accounts: list[str] = field(default_factory=list)
    acl: list[str] = field(default_factory=list)


def parse_targets(text: str) -> dict[int, TargetState]:
    """Parse ``tgtadm --op show --mode target``: targets at the margin, sections indented 4, their entries 8."""
    targets: dict[int, TargetState] = {}
    current: TargetState | None = None
    section = ""
    lun: int | None = None
    for line in text.splitlines():
        stripped = line.strip()
        indent = len(line) - len(line.lstrip(" "))
        if indent == 0 and stripped.startswith("Target "):
            number, _, iqn = stripped[len("Target "):].partition(": ")
            current = targets.setdefault(int(number), TargetState(int(number), iqn.strip()))
            section, lun = "", None
        elif current is None or not stripped:
            continue
        elif indent == 4 and stripped.endswith(":"):
            section = stripped[:-1]
        elif section == "LUN information" and stripped.startswith("LUN: "):
            lun = int(stripped[len("LUN: "):])
        elif section == "LUN information" and stripped.startswith("Backing store path: ") and lun is not None:
            current.luns[lun] = stripped[len("Backing store path: "):]
        elif section == "Account information" and indent == 8:
            current.accounts.append(stripped)
        elif section == "ACL information" and indent == 8:
            current.acl.append(stripped)
    return targets


def parse_accounts(text: str) -> list[str]:
    """Parse ``tgtadm --op show --mode account`` (``Account list:`` then one user a line)."""
    return [line.strip() for line in text.splitlines()[1:] if line.strip()]


class TargetServer:
    """The SC's tgtd: iSCSI on ``listen`` (address, port), managed through ``control_port``; its pid file and log
    under ``run_dir``."""

    def __init__(self, run_dir: Path, listen: tuple[str, int], control_port: int) -> None:
        self.run_dir = Path(run_dir)
        self.listen = listen
        self.control_port = int(control_port)
        self.pid_file = self.run_dir / "tgtd.pid"
        self.log_file = self.run_dir / "tgtd.log"
        self._process: subprocess.Popen | None = None
        self._lock = threading.RLock()

    def argv(self) -> list[str]:
        """tgtd's command line: in the foreground (this class keeps its pid), a private management port and portal."""
        host, port = self.listen
        return [TGTD, "-f", "-C", str(self.control_port), "--iscsi", f"portal={host}:{port}"]

    def tgtadm(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run ``tgtadm -C <port> --lld iscsi <args>``; TargetError with tgtadm's message when it fails and
        ``check``."""
        argv = [TGTADM, "-C", str(self.control_port), "--lld", "iscsi", *args]
        result = subprocess.run(argv, capture_output=True, text=True, timeout=TGTADM_TIMEOUT, check=False)
        if check and result.returncode != 0:
            raise TargetError(f"{' '.join(argv)} exited with {result.returncode}: "
                              f"{(result.stderr or result.stdout).strip()}")
        return result

    # The process.

    def pid(self) -> int | None:
        """The pid of this SC's tgtd: the pid file's, if that process lives and runs this command line."""
        if self._process is not None:
            self._process.poll()  # reap it if it died, so it is not mistaken for alive
        try:
            pid = int(self.pid_file.read_text().strip())
            process = psutil.Process(pid)
            if process.status() == psutil.STATUS_ZOMBIE or process.cmdline() != self.argv():
                return None
        except (OSError, ValueError, psutil.Error):
            return None
        return pid

    def running(self) -> bool:
        return self.pid() is not None

    def start(self) -> bool:
        """Have this SC's tgtd running; True if it was started, False if a running one was adopted. Raises
        TargetError when it exits or does not serve its portal and management port within ``START_TIMEOUT``
        (another program holds the port, say), with the end of its log."""
        with self._locked():
            if self.pid() is not None:
                return False
            self.run_dir.mkdir(parents=True, exist_ok=True)
            with open(self.log_file, "ab") as log:
                # A session of its own: it outlives this process and a Ctrl-C of its terminal.
                self._process = subprocess.Popen(self.argv(), stdin=subprocess.DEVNULL, stdout=log,
                                                 stderr=subprocess.STDOUT, start_new_session=True)
            self.pid_file.write_text(f"{self._process.pid}\n")
            deadline = time.monotonic() + START_TIMEOUT
            while not self._serving(self._process.pid):
                if self._process.poll() is not None or time.monotonic() > deadline:
                    self._kill(self._process.pid)
                    raise TargetError(f"tgtd did not start serving {self.listen[0]}:{self.listen[1]} "
                                      f"(management port {self.control_port}): {self._log_tail()}")
                time.sleep(0.05)
            logger.info("tgtd started as pid %s on %s:%s", self._process.pid, *self.listen)
            return True

    def _serving(self, pid: int) -> bool:
        # tgtd does not exit when its portal is taken: only its listening socket shows it serves.
        try:
            listening = {(c.laddr.ip, c.laddr.port) for c in psutil.Process(pid).net_connections(kind="tcp")
                         if c.status == psutil.CONN_LISTEN}
        except psutil.Error:
            return False
        if tuple(self.listen) not in listening:
            return False
        return self.tgtadm("--op", "show", "--mode", "target", check=False).returncode == 0

    def _log_tail(self) -> str:
        try:
            return " / ".join(self.log_file.read_text(errors="replace").strip().splitlines()[-5:])
        except OSError:
            return "no log"

    def stop(self) -> bool:
        """Stop this SC's tgtd: remove its targets (tgtd ignores SIGTERM while it has any), then ``tgtadm --op delete
        --mode system``; SIGKILL if it lingers. True if one was running. Its initiators lose their disks: for tests
        and for taking the SC down on purpose, never on a restart of the SC's process."""
        with self._locked():
            pid = self.pid()
            if pid is None:
                self.pid_file.unlink(missing_ok=True)
                return False
            for tid in self.targets():
                self.tgtadm("--op", "delete", "--mode", "target", "--force", "--tid", str(tid), check=False)
            self.tgtadm("--op", "delete", "--mode", "system", check=False)
            deadline = time.monotonic() + STOP_TIMEOUT
            while _alive(pid, self._process) and time.monotonic() < deadline:
                time.sleep(0.05)
            if _alive(pid, self._process):
                logger.warning("tgtd pid %s did not stop when asked; killing it", pid)
                self._kill(pid)
            self.pid_file.unlink(missing_ok=True)
            self._remove_socket()
            logger.info("tgtd (pid %s) stopped", pid)
            return True

    def _remove_socket(self) -> None:
        # tgtd leaves its management socket and lock behind when it ends.
        for suffix in ("", ".lock"):
            (SOCKET_DIR / f"socket.{self.control_port}{suffix}").unlink(missing_ok=True)

    def _kill(self, pid: int) -> None:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            return
        if self._process is not None and self._process.pid == pid:
            self._process.wait(timeout=STOP_TIMEOUT)

    @contextmanager
    def paused(self) -> Iterator[None]:
        """Hold every write to every LUN while the block runs: tgtd is stopped (SIGSTOP) and this waits until each
        of its threads has stopped, so no write is half done in the backing files; SIGCONT after. Initiators only
        wait (their commands are answered late, none is lost). Raises TargetError if tgtd does not run."""
        pid = self.pid()
        if pid is None:
            raise TargetError("tgtd is not running")
        os.kill(pid, signal.SIGSTOP)
        try:
            deadline = time.monotonic() + PAUSE_TIMEOUT
            while not _all_threads_stopped(pid):
                if time.monotonic() > deadline:
                    raise TargetError(f"tgtd pid {pid} did not stop within {PAUSE_TIMEOUT:.0f} s")
                time.sleep(0.005)
            yield
        finally:
            os.kill(pid, signal.SIGCONT)

    @contextmanager
    def _locked(self) -> Iterator[None]:
        """One start or stop at a time, across threads and processes (two starts must not both launch one)."""
        with self._lock:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            with open(self.run_dir / "tgtd.lock", "a") as handle:
                fcntl.flock(handle, fcntl.LOCK_EX)
                yield

    # Targets.

    def targets(self) -> dict[int, TargetState]:
        return parse_targets(self.tgtadm("--op", "show", "--mode", "target").stdout)

    def accounts(self) -> list[str]:
        return parse_accounts(self.tgtadm("--op", "show", "--mode", "account").stdout)

    def add_target(self, export: Export) -> None:
        """Create the export's target, LUN, CHAP account and ACL (its account is made anew: tgt cannot show a
        secret, so an account of that name left from before is replaced)."""
        tid = str(export.tid)
        volume_id = export.volume.volume_id
        self.tgtadm("--op", "new", "--mode", "target", "--tid", tid, "--targetname", target_iqn(volume_id))
        self.tgtadm("--op", "new", "--mode", "logicalunit", "--tid", tid, "--lun", str(LUN),
                    "--backing-store", str(volume_path(volume_id)))
        self.tgtadm("--op", "delete", "--mode", "account", "--user", export.chap_user, check=False)
        self.tgtadm("--op", "new", "--mode", "account", "--user", export.chap_user, "--password", export.chap_secret)
        self.tgtadm("--op", "bind", "--mode", "account", "--tid", tid, "--user", export.chap_user)
        self.tgtadm("--op", "bind", "--mode", "target", "--tid", tid, "--initiator-name", export.initiator)

    def remove_target(self, tid: int, chap_user: str = "") -> None:
        """Remove a target (with its sessions: ``--force``) and its account; nothing if already gone."""
        self.tgtadm("--op", "delete", "--mode", "target", "--force", "--tid", str(tid), check=False)
        if chap_user:
            self.tgtadm("--op", "delete", "--mode", "account", "--user", chap_user, check=False)


def _alive(pid: int, process: subprocess.Popen | None) -> bool:
    if process is not None and process.pid == pid:
        return process.poll() is None
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _all_threads_stopped(pid: int) -> bool:
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            state = (task / "stat").read_text().rpartition(")")[2].split()[0]
        except (OSError, IndexError):
            continue
        if state not in ("T", "t"):
            return False
    return True


# The SC's server and its exports.

_servers: dict[tuple, TargetServer] = {}
_servers_lock = threading.Lock()


def target_server() -> TargetServer:
    """This host's SC tgtd, as its settings describe it (one object per setting, so it keeps its child)."""
    config = settings.EDUCLOUD
    key = (str(config.data_dir), config.iscsi_listen, config.tgt_control_port)
    with _servers_lock:
        if key not in _servers:
            _servers[key] = TargetServer(store_dir() / "tgtd", config.iscsi_listen, config.tgt_control_port)
        return _servers[key]


def portal_host() -> str:
    """The address nodes reach the portal at: ``sc.iscsi_listen``'s, or ``host.ip`` when it listens on all."""
    host, _port = settings.EDUCLOUD.iscsi_listen
    return settings.EDUCLOUD.ip if host == "0.0.0.0" else host


def volume_target(export: Export) -> VolumeTarget:
    """How the export's node reaches it (``luhyaapi.volumes.VolumeTarget``, CHAP secret included)."""
    return VolumeTarget(volume_id=export.volume.volume_id, host=portal_host(), port=settings.EDUCLOUD.iscsi_listen[1],
                        iqn=target_iqn(export.volume.volume_id), lun=LUN, chap_user=export.chap_user,
                        chap_secret=export.chap_secret, initiator=export.initiator)


def _next_tid() -> int:
    used = set(Export.objects.values_list("tid", flat=True))
    return next(tid for tid in range(1, len(used) + 2) if tid not in used)


def export_volume(volume_id: str, node: str, take_over: bool = False) -> VolumeTarget:
    """Export a volume to ``node`` and return how it reaches it. Idempotent: exported to that node already, the
    same target (and secret) again. Exported to another node, the export moves with ``take_over`` (the CC asks so
    when it starts the volume's instance on another node than last time: the old node's target, account and
    session go, and a new secret is made). VolumeError: 400 naming ``node`` for a bad name, 404 for an unknown
    volume, 409 while it is being created or exported to another node (without ``take_over``), 503 when tgtd
    cannot do it (nothing is recorded then)."""
    try:
        node = validate_name(node, "node")
    except InvalidValue as exc:
        raise VolumeError(400, exc.message, "node") from None
    server = target_server()
    with store_lock():
        volume = get_volume(volume_id)
        if volume.state != VolumeStateChoices.AVAILABLE:
            raise VolumeError(409, f"volume {volume_id} is still being created")
        existing = Export.objects.filter(volume=volume).first()
        if existing is not None and existing.node == node:
            return volume_target(existing)
        if existing is not None and not take_over:
            raise VolumeError(409, f"volume {volume_id} is exported to node {existing.node}; detach it first")
        if existing is not None:
            _end_export(server, existing)
            logger.info("volume %s: export moves from node %s to %s", volume_id, existing.node, node)
        with transaction.atomic():
            export = Export.objects.create(
                volume=volume, node=node, initiator=initiator_iqn(node), tid=_next_tid(),
                chap_user=f"u{secrets.token_hex(8)}",
                chap_secret="".join(secrets.choice(SECRET_ALPHABET) for _ in range(32)))
        try:
            server.start()
            server.add_target(export)
        except (TargetError, OSError, subprocess.SubprocessError) as exc:
            if server.running():
                server.remove_target(export.tid, export.chap_user)
            export.delete()
            logger.error("export of %s to %s failed: %s", volume_id, node, exc)
            raise VolumeError(503, f"the iSCSI target could not be made: {exc}") from None
    logger.info("volume %s exported to %s as target %s", volume_id, node, export.tid)
    return volume_target(export)


def unexport_volume(volume_id: str) -> bool:
    """End a volume's export: its target (and the node's session with it) and its account go. True if it was
    exported; False if not (nothing to do). VolumeError 404 for an unknown volume, 503 if tgtd refuses."""
    server = target_server()
    with store_lock():
        volume = get_volume(volume_id)
        export = Export.objects.filter(volume=volume).first()
        if export is None:
            return False
        _end_export(server, export)
    logger.info("volume %s no longer exported", volume_id)
    return True


def _end_export(server: TargetServer, export: Export) -> None:
    """Remove the export's target and account from tgtd (ending the node's session), then its record; VolumeError
    503 (the record kept) when tgtd will not. The caller holds the store's lock."""
    if server.running():
        try:
            server.remove_target(export.tid, export.chap_user)
            if export.tid in server.targets():
                raise TargetError(f"target {export.tid} is still there")
        except (TargetError, OSError, subprocess.SubprocessError) as exc:
            raise VolumeError(503, f"the iSCSI target could not be removed: {exc}") from None
    export.delete()


@dataclass(frozen=True)
class Reconciled:
    """What ``reconcile`` did: tgtd started, targets kept, made and removed, accounts removed."""

    started: bool
    kept: tuple[int, ...]
    made: tuple[int, ...]
    removed: tuple[int, ...]
    accounts_removed: tuple[str, ...]


def reconcile() -> Reconciled:
    """Make the SC's tgtd serve exactly the exports recorded: start it if it is not running and there is an export
    (every target made anew; with none, tgtd is left to the first export), keep a target that matches its record
    (name, LUN 1's file, account, ACL; its sessions go on), replace one that differs, remove targets and accounts no
    record has. Idempotent: a second run keeps everything. Raises TargetError when tgtd cannot be started or told."""
    server = target_server()
    with store_lock():
        wanted = {export.tid: export for export in Export.objects.select_related("volume")}
        if not wanted and not server.running():
            return Reconciled(False, (), (), (), ())
        started = server.start()
        actual = server.targets()
        kept, made, removed = [], [], []
        for tid, state in actual.items():
            export = wanted.get(tid)
            if export is not None and _matches(state, export):
                kept.append(tid)
                continue
            server.remove_target(tid)
            removed.append(tid)
        users = {export.chap_user for export in wanted.values()}
        stale_accounts = [user for user in server.accounts() if user not in users]
        for user in stale_accounts:
            server.tgtadm("--op", "delete", "--mode", "account", "--user", user, check=False)
        for tid, export in sorted(wanted.items()):
            if tid not in kept:
                server.add_target(export)
                made.append(tid)
    result = Reconciled(started, tuple(kept), tuple(made), tuple(removed), tuple(stale_accounts))
    if started or made or removed or stale_accounts:
        logger.info("iSCSI targets reconciled: %s", result)
    return result


def _matches(state: TargetState, export: Export) -> bool:
    return (state.iqn == target_iqn(export.volume.volume_id)
            and state.luns.get(LUN) == str(volume_path(export.volume.volume_id))
            and state.accounts == [export.chap_user] and state.acl == [export.initiator])



def watch_targets(stop: threading.Event, period: float = 10.0) -> None:
    """The SC's ``sc-targets`` daemon: clear what a crash left half made, reconcile tgtd with the exports, then
    every ``period`` seconds reconcile again if tgtd is gone while volumes are exported (it died or was killed: every
    export comes back) or the last reconcile failed (tgtd died under it, say). tgtd is not started while nothing is
    exported."""
    forget_unfinished()
    reconciled = False
    while True:
        if not reconciled or (not target_server().running() and Export.objects.exists()):
            if reconciled:
                logger.warning("tgtd is not running; starting it and exporting the volumes again")
            try:
                reconcile()
                reconciled = True
            except (TargetError, OSError, subprocess.SubprocessError) as exc:
                logger.error("iSCSI targets could not be reconciled (again in %.0f s): %s", period, exc)
                reconciled = False
        if stop.wait(period):
            return
