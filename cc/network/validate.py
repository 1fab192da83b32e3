"""Strict checks for every value the network modules put on an iptables, ip or dnsmasq command line or in a file
dnsmasq reads. Each check returns the value in canonical form or raises InvalidValue naming the field."""

from __future__ import annotations

import ipaddress
import re

from luhyaapi.validators import InvalidValue, validate_mac, validate_name

# Linux takes 1-15 bytes without '/', ':', whitespace, and not '.' or '..'; we allow a conservative subset that
# also keeps the name from reading as an option ('-...') or a path.
INTERFACE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,14}$")
# `ip netns` names are file names under /run/netns.
NETNS_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
LEASE_TIME_RE = re.compile(r"^(?P<count>[0-9]{1,7})(?P<unit>[smhd]?)$")
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
PROTOCOLS = ("tcp", "udp")
# dnsmasq refuses leases shorter than two minutes.
MIN_LEASE_SECONDS = 120


def ipv4(value: object, field: str = "ip") -> str:
    """An IPv4 address given as text (dotted quad, no leading zeros), returned canonical."""
    if not isinstance(value, str):
        raise InvalidValue(field, f"{value!r} is not an IPv4 address")
    try:
        return str(ipaddress.IPv4Address(value))
    except ValueError:
        raise InvalidValue(field, f"{value!r} is not an IPv4 address") from None


def subnet(value: object, field: str = "subnet") -> str:
    """An IPv4 network in CIDR form with no host bits set (``10.0.0.0/24``), returned canonical."""
    if not isinstance(value, str) or "/" not in value:
        raise InvalidValue(field, f"{value!r} is not a CIDR subnet like '10.0.0.0/24'")
    try:
        return str(ipaddress.IPv4Network(value, strict=True))
    except ValueError:
        raise InvalidValue(field, f"{value!r} is not a CIDR subnet like '10.0.0.0/24' (no host bits set)") from None


def netmask(value: object, field: str = "netmask") -> str:
    """A dotted IPv4 netmask (``255.255.255.0``), returned canonical."""
    mask = ipv4(value, field)
    try:
        ipaddress.IPv4Network(f"0.0.0.0/{mask}")
    except ValueError:
        raise InvalidValue(field, f"{value!r} is not a netmask like '255.255.255.0'") from None
    return mask


def prefix_length(value: object, field: str = "prefix") -> int:
    """An IPv4 prefix length, 0-32."""
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 32:
        raise InvalidValue(field, f"{value!r} is not a prefix length (0-32)")
    return value


def port(value: object, field: str = "port") -> int:
    """A TCP/UDP port number, 1-65535, given as an int (text and booleans are refused, not converted)."""
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 65535:
        raise InvalidValue(field, f"{value!r} is not a port (an integer 1-65535)")
    return value


def port_range(value: object, field: str = "port_range") -> tuple[int, int]:
    """An inclusive port range given as ``(low, high)`` or ``"low-high"``, with 1 <= low <= high <= 65535."""
    if isinstance(value, str):
        match = re.fullmatch(r"([0-9]{1,5})-([0-9]{1,5})", value)
        if not match:
            raise InvalidValue(field, f"{value!r} is not a port range like '10000-10999'")
        value = (int(match[1]), int(match[2]))
    if not isinstance(value, tuple | list) or len(value) != 2:
        raise InvalidValue(field, f"{value!r} is not a port range (low, high)")
    low, high = port(value[0], field), port(value[1], field)
    if low > high:
        raise InvalidValue(field, f"{value!r} is not a port range: {low} is above {high}")
    return low, high


def protocol(value: object, field: str = "protocol") -> str:
    """'tcp' or 'udp'."""
    if value not in PROTOCOLS:
        raise InvalidValue(field, f"{value!r} is not one of {', '.join(PROTOCOLS)}")
    return str(value)


def interface(value: object, field: str = "interface") -> str:
    """A network interface name: 1-15 characters of letters, digits, '_', '.' and '-', starting alphanumeric."""
    if not isinstance(value, str) or not INTERFACE_RE.fullmatch(value):
        raise InvalidValue(field, f"{value!r} is not an interface name (1-15 of A-Z a-z 0-9 _ . -, no leading . or -)")
    return value


def netns(value: object, field: str = "netns") -> str | None:
    """A network namespace name for `ip netns exec`, or None for the host's own network stack."""
    if value is None:
        return None
    if not isinstance(value, str) or not NETNS_RE.fullmatch(value):
        raise InvalidValue(field, f"{value!r} is not a network namespace name")
    return value


def unicast_mac(value: object, field: str = "mac") -> str:
    """A unicast MAC address, returned lower case with colons (luhyaapi.validators.validate_mac's form)."""
    mac = validate_mac(value, field)  # type: ignore[arg-type]
    if int(mac[:2], 16) & 1:
        raise InvalidValue(field, f"{value!r} is a multicast MAC address; a NIC needs a unicast one")
    return mac


def hostname(value: object, field: str = "hostname") -> str:
    """A DHCP client's host name: one DNS label (luhyaapi.validators.validate_name's rule)."""
    return validate_name(value, field)  # type: ignore[arg-type]


def lease_time(value: object, field: str = "lease_time") -> str:
    """A dnsmasq lease time: seconds, or a count with unit s/m/h/d (``12h``), at least two minutes; or
    ``infinite``."""
    if value == "infinite":
        return "infinite"
    match = LEASE_TIME_RE.fullmatch(value) if isinstance(value, str) else None
    if not match or int(match["count"]) * _UNIT_SECONDS[match["unit"]] < MIN_LEASE_SECONDS:
        raise InvalidValue(field, f"{value!r} is not a lease time of at least 2 minutes (like '12h', '3600')")
    return value
