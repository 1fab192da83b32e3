"""The cluster LAN's DHCP server: one dnsmasq per cluster controller, DHCP only, handing VMs the addresses reserved
for their MACs.

dnsmasq runs as a daemon of its own (it forks into the background and writes its pid file), not as a child of the
cluster controller: its exit status then says whether it really started (bad option, address in use, unreadable
file), it outlives a restart of the cluster controller without dropping a lease, and a restarted controller adopts
it through the pid file after checking the process is this server's dnsmasq. Every file lives in ``data_dir``.

dnsmasq drops root for an unprivileged account after start-up and reads the reservations file as that account,
then and on every SIGHUP, so ``data_dir`` and the directories above it must be traversable by it; ``start`` checks
this and says so rather than let a reload fail silently.
"""

from __future__ import annotations

import fcntl
import ipaddress
import logging
import os
import pwd
import re
import signal
import tempfile
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from cc.network import command, validate
from luhyaapi.validators import InvalidValue

logger = logging.getLogger(__name__)

DNSMASQ = "dnsmasq"
# The first of these accounts that exists runs dnsmasq after start-up (Debian's dnsmasq-base adds "dnsmasq").
DEFAULT_USERS = ("dnsmasq", "nobody")
START_TIMEOUT = 10.0
STOP_TIMEOUT = 10.0
# dnsmasq(8), EXIT CODES.
EXIT_REASONS = {
    1: "a problem with the configuration",
    2: "a problem with network access (address in use, privileged port)",
    3: "a problem with a file or directory (missing, permissions)",
    4: "a memory allocation failure",
}
# Paths go onto dnsmasq's command line and into its comma-separated options: no commas, spaces or oddities.
PATH_RE = re.compile(r"^/[A-Za-z0-9_./-]*$")
USER_RE = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")


class DhcpError(RuntimeError):
    """dnsmasq could not be started or stopped; the message says why."""


@dataclass(frozen=True)
class Reservation:
    """The address (and optionally host name) the DHCP server always gives the NIC with ``mac``."""

    mac: str
    ip: str
    hostname: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "mac", validate.unicast_mac(self.mac))
        object.__setattr__(self, "ip", validate.ipv4(self.ip))
        if self.hostname is not None:
            object.__setattr__(self, "hostname", validate.hostname(self.hostname))

    def line(self) -> str:
        """The reservation as a --dhcp-hostsfile line: ``mac,ip[,hostname]``."""
        return ",".join(part for part in (self.mac, self.ip, self.hostname) if part)


@dataclass(frozen=True)
class Lease:
    """One line of dnsmasq's lease file. ``expires`` is a Unix time, 0 for an infinite lease."""

    expires: int
    mac: str
    ip: str
    hostname: str | None
    client_id: str | None


class DhcpServer:
    """dnsmasq serving DHCP (no DNS) on ``interface`` to the reservations given to ``set_reservations`` only: the
    range ``range_start..range_end`` is the pool the CC reserves from, and dnsmasq hands none of it to a client
    without a reservation (its ``static`` mode), so an address reserved for a VM is never held by a stranger's lease
    and the LAN's own DHCP server keeps serving everyone else. ``interface`` must carry an address of the range's
    subnet.
    ``netns`` runs it inside that network namespace instead of the host's network stack."""

    def __init__(self, data_dir: str | os.PathLike, interface: str, range_start: str, range_end: str, netmask: str,
                 *, lease_time: str = "12h", user: str | None = None, netns: str | None = None) -> None:
        self.data_dir = Path(os.path.abspath(data_dir))
        if not PATH_RE.fullmatch(str(self.data_dir)):
            raise InvalidValue("data_dir", f"{str(data_dir)!r} is not a plain path (letters, digits, _ . - and /)")
        self.interface = validate.interface(interface)
        self.range_start = validate.ipv4(range_start, "range_start")
        self.range_end = validate.ipv4(range_end, "range_end")
        self.netmask = validate.netmask(netmask)
        self.network = ipaddress.IPv4Network(f"{self.range_start}/{self.netmask}", strict=False)
        end = ipaddress.IPv4Address(self.range_end)
        if end not in self.network or end < ipaddress.IPv4Address(self.range_start):
            raise InvalidValue("range_end", f"{self.range_end} is not after {self.range_start} in {self.network}")
        self.lease_time = validate.lease_time(lease_time)
        self.user = _account(user)
        self.netns = validate.netns(netns)
        self.pid_file = self.data_dir / "dnsmasq.pid"
        self.lease_file = self.data_dir / "dnsmasq.leases"
        self.hosts_file = self.data_dir / "dnsmasq.hosts"
        self.log_file = self.data_dir / "dnsmasq.log"

    def argv(self) -> list[str]:
        """dnsmasq's command line for this server."""
        return [
            DNSMASQ,
            "--conf-file=/dev/null",
            "--port=0",
            f"--interface={self.interface}",
            "--bind-interfaces",
            f"--dhcp-range={self.range_start},static,{self.netmask},{self.lease_time}",
            f"--dhcp-hostsfile={self.hosts_file}",
            f"--dhcp-leasefile={self.lease_file}",
            f"--pid-file={self.pid_file}",
            f"--user={self.user}",
            "--log-dhcp",
            f"--log-facility={self.log_file}",
        ]

    def start(self) -> bool:
        """Have this server's dnsmasq running; True if it was started, False if one already running with the
        same command line was adopted (one with another command line is stopped and replaced). Raises DhcpError
        when dnsmasq refuses to start, saying why, and when its account could not read the reservations."""
        with self._locked():
            pid = self.pid()
            if pid is not None:
                if _cmdline(pid) == self.argv():
                    logger.info("dnsmasq for %s already running as pid %s", self.interface, pid)
                    return False
                logger.info("dnsmasq for %s runs with other options; restarting it", self.interface)
                self._stop(pid, STOP_TIMEOUT)
            self._launch()
            return True

    def _launch(self) -> None:
        if not self.hosts_file.exists():
            _write_atomically(self.hosts_file, "")
        self._check_readable()
        self.pid_file.unlink(missing_ok=True)
        result = command.run(self.argv(), netns=self.netns, check=False, timeout=START_TIMEOUT)
        if result.returncode != 0:
            reason = EXIT_REASONS.get(result.returncode, "an error")
            raise DhcpError(f"dnsmasq on {self.interface} did not start, {reason}: {result.stderr.strip()}")
        deadline = time.monotonic() + START_TIMEOUT
        while (pid := self.pid()) is None:
            if time.monotonic() > deadline:
                raise DhcpError(f"dnsmasq on {self.interface} reported a start but is not running; see {self.log_file}")
            time.sleep(0.05)
        logger.info("dnsmasq for %s started as pid %s", self.interface, pid)

    def stop(self, timeout: float = STOP_TIMEOUT) -> bool:
        """Stop this server's dnsmasq (SIGTERM, then SIGKILL after ``timeout`` seconds) and remove its pid file;
        True if one was running. Leases stay in the lease file for the next start. Raises DhcpError if it
        survives SIGKILL."""
        if not self.data_dir.is_dir():
            return False
        with self._locked():
            pid = self.pid()
            if pid is None:
                self.pid_file.unlink(missing_ok=True)
                return False
            self._stop(pid, timeout)
            return True

    def _stop(self, pid: int, timeout: float) -> None:
        for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
            _signal(pid, sig)
            deadline = time.monotonic() + wait
            while _alive(pid) and time.monotonic() < deadline:
                time.sleep(0.02)
            if not _alive(pid):
                break
        else:
            raise DhcpError(f"dnsmasq pid {pid} did not exit after SIGKILL")
        self.pid_file.unlink(missing_ok=True)
        logger.info("dnsmasq for %s (pid %s) stopped", self.interface, pid)

    def running(self) -> bool:
        """Whether this server's dnsmasq is running."""
        return self.pid() is not None

    def pid(self) -> int | None:
        """The pid of this server's dnsmasq: the pid file's, if that process is alive and is a dnsmasq started
        with this pid file (not a stale file or a reused pid)."""
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        cmdline = _cmdline(pid)
        ours = bool(cmdline) and os.path.basename(cmdline[0]) == DNSMASQ and f"--pid-file={self.pid_file}" in cmdline
        return pid if ours and _alive(pid) else None

    def set_reservations(self, reservations: Iterable[Reservation | tuple]) -> bool:
        """Make the reservations exactly ``reservations`` (Reservation or (mac, ip[, hostname]) tuples): rewrite
        the file atomically and have a running dnsmasq re-read it (SIGHUP), only if it changes; True if it
        changed. dnsmasq re-reads the file on the next turn of its loop (a request it answers before that still
        sees the old set); a client holding another address is refused it (DHCPNAK) at its next renewal and then
        gets the reserved one. Raises InvalidValue, before anything is written, for a bad value, a MAC or
        address given twice, or an address outside this server's subnet."""
        wanted = [item if isinstance(item, Reservation) else Reservation(*item) for item in reservations]
        for field in ("mac", "ip"):
            values = [getattr(reservation, field) for reservation in wanted]
            doubled = sorted({value for value in values if values.count(value) > 1})
            if doubled:
                raise InvalidValue(field, f"{', '.join(doubled)} reserved twice")
        for reservation in wanted:
            address = ipaddress.IPv4Address(reservation.ip)
            if address not in self.network or address in (self.network.network_address,
                                                          self.network.broadcast_address):
                raise InvalidValue("ip", f"{reservation.ip} is not a host address of {self.network}")
        text = "".join(f"{reservation.line()}\n" for reservation in sorted(wanted, key=lambda r: r.mac))
        try:
            if self.hosts_file.read_text() == text:
                return False
        except FileNotFoundError:
            pass
        self.data_dir.mkdir(mode=0o755, parents=True, exist_ok=True)
        _write_atomically(self.hosts_file, text)
        pid = self.pid()
        if pid is not None:
            _signal(pid, signal.SIGHUP)
        logger.info("DHCP reservations on %s: %d (%s)", self.interface, len(wanted),
                    f"dnsmasq pid {pid} reloading" if pid else "dnsmasq not running")
        return True

    def leases(self) -> list[Lease]:
        """The leases in dnsmasq's lease file (none before the first start); lines it cannot read are logged and
        skipped."""
        try:
            lines = self.lease_file.read_text().splitlines()
        except FileNotFoundError:
            return []
        leases = []
        for line in lines:
            fields = line.split()
            if not fields or fields[0] == "duid":
                continue
            try:
                expires, mac, ip, name, client_id = fields
                leases.append(Lease(int(expires), validate.unicast_mac(mac), validate.ipv4(ip),
                                    None if name == "*" else name, None if client_id == "*" else client_id))
            except ValueError:
                logger.warning("skipping lease line %r in %s", line, self.lease_file)
        return leases

    def drop_blocking_leases(self, reservations: Iterable[Reservation]) -> int:
        """Drop the leases that hold a reserved address for another MAC, so that dnsmasq gives the address to the
        NIC it is reserved for: a stopped VM never releases its lease, and while it lasts dnsmasq refuses the
        address to anyone else ("not using configured address ... because it is leased to ...") and hands out
        another. dnsmasq reads its lease file only when it starts, so it is stopped first: call ``start`` after.
        Returns how many leases were dropped."""
        reserved = {reservation.ip: reservation.mac for reservation in reservations}
        blocking = {(lease.mac, lease.ip) for lease in self.leases() if reserved.get(lease.ip, lease.mac) != lease.mac}
        if not blocking:
            return 0
        with self._locked():
            pid = self.pid()
            if pid is not None:
                self._stop(pid, STOP_TIMEOUT)
            # In place, keeping the file's owner and mode: dnsmasq is stopped, nothing else reads it meanwhile.
            lines = self.lease_file.read_text().splitlines(keepends=True)
            self.lease_file.write_text("".join(line for line in lines if tuple(line.split()[1:3]) not in blocking))
        logger.info("DHCP on %s: dropped %d leases of addresses now reserved for other MACs: %s", self.interface,
                    len(blocking), ", ".join(f"{ip} ({mac})" for mac, ip in sorted(blocking)))
        return len(blocking)

    @contextmanager
    def _locked(self) -> Iterator[None]:
        """One start or stop of this server at a time, across processes (two starts must not both launch one)."""
        self.data_dir.mkdir(mode=0o755, parents=True, exist_ok=True)
        with open(self.data_dir / "dnsmasq.lock", "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            yield

    def _check_readable(self) -> None:
        account = pwd.getpwnam(self.user)
        for directory in (*reversed(self.data_dir.parents), self.data_dir):
            if not _permits(directory, account, os.X_OK):
                raise DhcpError(f"dnsmasq runs as {self.user} after start-up and cannot enter {directory}; "
                                f"choose a data directory it can reach (each directory above it world-executable)")
        if not _permits(self.hosts_file, account, os.R_OK):
            raise DhcpError(f"dnsmasq runs as {self.user} after start-up and cannot read {self.hosts_file}")


def _account(user: str | None) -> str:
    candidates = DEFAULT_USERS if user is None else (user,)
    for name in candidates:
        if not USER_RE.fullmatch(name):
            raise InvalidValue("user", f"{name!r} is not a user name")
        try:
            pwd.getpwnam(name)
        except KeyError:
            continue
        return name
    raise InvalidValue("user", f"no account {' or '.join(candidates)} to run dnsmasq as")


def _permits(path: Path, account: pwd.struct_passwd, wanted: int) -> bool:
    """Whether ``account`` may read (R_OK) or enter (X_OK) ``path`` by its permission bits."""
    if account.pw_uid == 0:
        return True
    status = path.stat()
    if status.st_uid == account.pw_uid:
        bits = status.st_mode >> 6
    elif status.st_gid in os.getgrouplist(account.pw_name, account.pw_gid):
        bits = status.st_mode >> 3
    else:
        bits = status.st_mode
    return bits & wanted == wanted


def _write_atomically(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` (world-readable) so a reader sees the old or the new file, never a part."""
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(descriptor, "w") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return raw.decode(errors="replace").split("\0")[:-1]


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs; a zombie (exited, not yet reaped by its parent) does not."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] not in ("Z", "X")


def _signal(pid: int, sig: signal.Signals) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass
