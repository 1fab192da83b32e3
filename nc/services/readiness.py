"""Whether a booting guest is up, decided from evidence only: the guest's own word through its driver (a marker or
an agent), a DHCP lease for its MAC, or its first forwarded service answering. A started VM is not yet a running
guest (it may sit in its BIOS for a while), so the node reports ``booting`` until one of these shows.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from luhyaapi.vmspec import RuntimeOptions
from nc.drivers.base import GuestInfo

logger = logging.getLogger(__name__)

# What the probe sends: an HTTP request, which a web server answers and which a service that speaks first (an SSH
# banner, SMTP, VNC) does not wait for.
PROBE_REQUEST = b"HEAD / HTTP/1.0\r\n\r\n"
PROBE_TIMEOUT = 2.0


@dataclass(frozen=True)
class BootTarget:
    """What to look for of one instance: its NICs' MACs and the host ends of its forwarded TCP services (first
    service first)."""

    macs: tuple[str, ...]
    services: tuple[tuple[str, int], ...]

    @classmethod
    def of(cls, options: RuntimeOptions) -> BootTarget:
        """The target of a VM run with ``options``. A forward listening on every address is probed on loopback."""
        services = tuple(("127.0.0.1" if forward.host_ip == "0.0.0.0" else forward.host_ip, forward.host_port)
                         for nic in options.nics for forward in nic.forwards if forward.protocol == "tcp")
        return cls(macs=tuple(nic.mac for nic in options.nics), services=services)


@dataclass(frozen=True)
class Readiness:
    """The decision: ``up`` with how it was shown (for the log) and the guest's address when one is known."""

    up: bool
    evidence: str = ""
    guest_ip: str = ""


def read_leases(path: Path, now: float | None = None) -> dict[str, str]:
    """The current leases of a dnsmasq lease file (``<expiry> <mac> <ip> <name> <client-id>`` a line; expiry 0 is
    an infinite lease), MAC (lower case) -> IPv4 address. A missing file has none; an expired lease or a line that
    does not read as a lease is left out."""
    now = time.time() if now is None else now
    try:
        lines = path.read_text(errors="replace").splitlines()
    except FileNotFoundError:
        return {}
    leases = {}
    for line in lines:
        words = line.split()
        if len(words) < 3 or not words[0].isdigit():
            continue  # dnsmasq's "duid ..." line, or not a lease
        expires, mac = int(words[0]), words[1].lower()
        try:
            ip = str(ipaddress.IPv4Address(words[2]))
        except ValueError:
            continue
        if expires == 0 or expires > now:
            leases[mac] = ip
    return leases


def leased_address(target: BootTarget, lease_files: Iterable[Path]) -> str:
    """The address of the first of the target's MACs with a current lease in the first of ``lease_files`` that
    has one; "" if none has."""
    for path in lease_files:
        leases = read_leases(path)
        leased = next((leases[mac] for mac in target.macs if mac in leases), "")
        if leased:
            return leased
    return ""


def service_answers(host: str, port: int, timeout: float = PROBE_TIMEOUT) -> bool:
    """Whether a TCP service at ``host:port`` answers: a byte comes back after the probe request. A connect alone
    proves nothing, as a hypervisor's NAT forward accepts connections itself whether the guest listens or not (and
    ends them when the guest refuses)."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.settimeout(timeout)
            sock.sendall(PROBE_REQUEST)
            return bool(sock.recv(1))
    except OSError:  # refused, reset, timed out: no answer
        return False


def check_readiness(target: BootTarget, guest: GuestInfo, lease_files: Iterable[Path],
                    probe_timeout: float = PROBE_TIMEOUT) -> Readiness:
    """Whether the guest is up, by the first evidence found: the driver's word (``guest.ready``, or an address the
    guest told it), a current DHCP lease for one of its MACs in ``lease_files``, or its first forwarded service
    answering. The guest's address comes from the driver, else from the lease; "" when neither knows it."""
    leased = leased_address(target, lease_files)
    if guest.ready or guest.ip:
        return Readiness(True, "the guest said so", guest.ip or leased)
    if leased:
        return Readiness(True, "its DHCP lease", leased)
    if target.services:
        host, port = target.services[0]
        if service_answers(host, port, probe_timeout):
            return Readiness(True, f"its service at {host}:{port} answered")
    return Readiness(False)
