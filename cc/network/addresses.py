"""Addresses on the cluster controller: elastic IPs aliased on its public interface (``ip addr``), and the pure
pool arithmetic that picks the next free port or address (the leasing itself is recorded in the database by the
caller)."""

from __future__ import annotations

import ipaddress
import itertools
import json
import logging
from collections.abc import Collection
from dataclasses import dataclass

from cc.network import command, validate
from luhyaapi.validators import InvalidValue

logger = logging.getLogger(__name__)


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
