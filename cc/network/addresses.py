"""Addresses on the cluster controller: elastic IPs aliased on its public interface (``ip addr``), the pool
arithmetic that picks the next free port or address (the leasing itself is recorded in the database by the caller),
and whether another program on this host holds a port."""

from __future__ import annotations

import errno
import ipaddress
import itertools
import json
import logging
import socket
import threading
from collections.abc import Collection
from dataclasses import dataclass

from cc.network import command, validate
from luhyaapi.validators import InvalidValue

logger = logging.getLogger(__name__)

# Ports found held by another program, each warned about once while it stays held (a lease looks at every port up to
# a free one, so a port held for a day would otherwise be logged on every launch of that day).
_held_ports: set[int] = set()
_held_lock = threading.Lock()


class AddressConflict(RuntimeError):
    """The address is already on the interface with another prefix length; it is not ours to change."""


def aliases(interface: str, *, netns: str | None = None) -> list[tuple[str, int]]:
    """Every IPv4 address on ``interface`` as (address, prefix length), its primary address included, read from
    ``ip -j addr show``. Raises InvalidValue for a bad name and command.CommandFailed if the interface is missing."""
    interface = validate.interface(interface)
    listing = command.run(["ip", "-j", "-4", "addr", "show", "dev", interface], netns=netns).stdout
    return [(entry["local"], int(entry["prefixlen"]))
            for link in json.loads(listing or "[]")
            for entry in link.get("addr_info", [])
            if entry.get("family") == "inet"]


def ensure_alias(interface: str, ip: str, prefix: int = 32, *, netns: str | None = None) -> bool:
    """Make ``ip/prefix`` an address of ``interface``; True if it was added, False if it was already there.
    Raises InvalidValue before any command for a bad value, AddressConflict if ``ip`` is there with another
    prefix, and command.CommandFailed if ``ip`` refuses."""
    interface, ip = validate.interface(interface), validate.ipv4(ip)
    prefix = validate.prefix_length(prefix)
    present = dict(aliases(interface, netns=netns))
    if ip in present:
        if present[ip] != prefix:
            raise AddressConflict(f"{ip} is on {interface} as /{present[ip]}, not /{prefix}")
        return False
    command.run(["ip", "addr", "add", f"{ip}/{prefix}", "dev", interface], netns=netns)
    logger.info("added %s/%s to %s", ip, prefix, interface)
    return True


def remove_alias(interface: str, ip: str, prefix: int = 32, *, netns: str | None = None) -> bool:
    """Take ``ip/prefix`` off ``interface``; True if it was removed, False if it was not there (the same address
    with another prefix length is left alone: it is not the alias ``ensure_alias`` made). Raises InvalidValue
    before any command for a bad value and command.CommandFailed if ``ip`` refuses."""
    interface, ip = validate.interface(interface), validate.ipv4(ip)
    prefix = validate.prefix_length(prefix)
    if (ip, prefix) not in aliases(interface, netns=netns):
        return False
    command.run(["ip", "addr", "del", f"{ip}/{prefix}", "dev", interface], netns=netns)
    logger.info("removed %s/%s from %s", ip, prefix, interface)
    return True


@dataclass(frozen=True)
class PortPool:
    """The ports ``low..high`` (inclusive)."""

    low: int
    high: int

    def __post_init__(self) -> None:
        low, high = validate.port_range((self.low, self.high))
        object.__setattr__(self, "low", low)
        object.__setattr__(self, "high", high)

    @classmethod
    def parse(cls, text: str) -> PortPool:
        """A pool from ``"low-high"``."""
        return cls(*validate.port_range(text))

    def __len__(self) -> int:
        return self.high - self.low + 1

    def __contains__(self, port: object) -> bool:
        return isinstance(port, int) and self.low <= port <= self.high

    def next_free(self, taken: Collection[int], after: int | None = None) -> int | None:
        """The first port of the pool not in ``taken``, searching from just past ``after`` (round robin, so a port
        just given back is not handed out again at once) or from ``low``; None when every port is taken."""
        return _next_free(self.low, self.high, set(taken), after)

    def next_unused(self, taken: Collection[int]) -> int | None:
        """The first port of the pool neither in ``taken`` nor held by another program on this host
        (``port_in_use``); None when there is none. Each held port passed over is logged as a warning once, and
        again only after it was found free in between."""
        passed = set(taken)
        while (port := self.next_free(passed)) is not None:
            if not port_in_use(port):
                with _held_lock:
                    _held_ports.discard(port)
                return port
            with _held_lock:
                first_time = port not in _held_ports
                _held_ports.add(port)
            if first_time:
                logger.warning("port %d of the pool %d-%d is in use by another program on this host (another "
                               "all-in-one, a service?); it is skipped while it stays in use", port, self.low,
                               self.high)
            passed.add(port)
        return None


def port_in_use(port: int, address: str | None = None) -> bool:
    """Whether a program on this host holds TCP ``port`` (listening, or bound to it to listen) on any of its IPv4
    addresses or on IPv6; with ``address``, whether a server could not listen on ``address:port`` because of that.
    Raises OSError if the port cannot be tried for another reason (``address`` is not one of this host's)."""
    # Binding the wildcard address conflicts with a socket bound to the port on any address, which a connect to
    # 127.0.0.1 would miss: a VNC console listening on the node's own address, a socket bound but not listening yet.
    # SO_REUSEADDR is on, as QEMU and waitress (the port's future users) set it: a listener or a socket bound without
    # it still conflicts, while a connection of a stopped VM lingering in TIME_WAIT does not (off, the port would
    # read as in use for a minute after every console session). IPv6 is tried alone (V6ONLY), for a service
    # listening there only: a client that resolves the console's host name may reach it first.
    if address is not None:
        probes = [(socket.AF_INET6 if ":" in address else socket.AF_INET, address, True)]
    else:
        probes = [(socket.AF_INET, "0.0.0.0", True)] + ([(socket.AF_INET6, "::", False)] if socket.has_ipv6 else [])
    for family, where, required in probes:
        try:
            probe = socket.socket(family, socket.SOCK_STREAM)
        except OSError:
            if required:
                raise
            continue  # no IPv6 on this host: nothing can hold the port there
        with probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                probe.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                probe.bind((where, port))
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    return True
                if required:
                    raise
    return False


@dataclass(frozen=True)
class AddressPool:
    """The IPv4 addresses ``first..last`` (inclusive)."""

    first: str
    last: str

    def __post_init__(self) -> None:
        first, last = validate.ipv4(self.first, "first"), validate.ipv4(self.last, "last")
        if ipaddress.IPv4Address(first) > ipaddress.IPv4Address(last):
            raise InvalidValue("last", f"{last} comes before {first}")
        object.__setattr__(self, "first", first)
        object.__setattr__(self, "last", last)

    @classmethod
    def of_subnet(cls, cidr: str) -> AddressPool:
        """The usable host addresses of a subnet (without its network and broadcast addresses when it has them)."""
        network = ipaddress.IPv4Network(validate.subnet(cidr))
        if network.num_addresses <= 2:
            return cls(str(network[0]), str(network[-1]))
        return cls(str(network[1]), str(network[-2]))

    def __len__(self) -> int:
        return int(ipaddress.IPv4Address(self.last)) - int(ipaddress.IPv4Address(self.first)) + 1

    def __contains__(self, ip: object) -> bool:
        try:
            address = ipaddress.IPv4Address(ip)  # type: ignore[arg-type]
        except ValueError:
            return False
        return ipaddress.IPv4Address(self.first) <= address <= ipaddress.IPv4Address(self.last)

    def next_free(self, taken: Collection[str], after: str | None = None) -> str | None:
        """The first address of the pool not in ``taken``, searching from just past ``after`` (round robin) or from
        ``first``; None when every address is taken. Addresses in ``taken`` may be in any valid text form."""
        taken_numbers = {int(ipaddress.IPv4Address(validate.ipv4(ip, "taken"))) for ip in taken}
        start = None if after is None else int(ipaddress.IPv4Address(validate.ipv4(after, "after")))
        found = _next_free(int(ipaddress.IPv4Address(self.first)), int(ipaddress.IPv4Address(self.last)),
                           taken_numbers, start)
        return None if found is None else str(ipaddress.IPv4Address(found))


def _next_free(low: int, high: int, taken: set[int], after: int | None) -> int | None:
    start = low if after is None or not low <= after < high else after + 1
    for number in itertools.chain(range(start, high + 1), range(low, start)):
        if number not in taken:
            return number
    return None
