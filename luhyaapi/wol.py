"""Wake-on-LAN: the magic packet that powers a sleeping or switched-off PC on, and sending it to its LAN."""

from __future__ import annotations

import ipaddress
import logging
import re
import socket

from luhyaapi.validators import InvalidValue, validate_mac

logger = logging.getLogger(__name__)

DEFAULT_BROADCAST = "255.255.255.255"
DEFAULT_PORT = 9  # the discard port, where network cards listen for magic packets (7 is the other usual one)
PACKET_SIZE = 6 + 16 * 6
# A Linux interface name (at most 15 bytes, no '/', ':' or white space), checked before it reaches setsockopt.
INTERFACE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,14}$")


def validate_nic_mac(value: str, field: str = "mac") -> str:
    """A network card's MAC (``validate_mac``, lower case with colons) that is not a group address: a broadcast or
    multicast address (lowest bit of the first byte set) is no card's, and a magic packet for it wakes nobody."""
    mac = validate_mac(value, field)
    if int(mac[:2], 16) & 1:
        raise InvalidValue(field, f"{value!r} is a broadcast or multicast address, not a network card's")
    if mac == "00:00:00:00:00:00":
        raise InvalidValue(field, f"{value!r} is not a network card's address")
    return mac


def validate_broadcast(value: str, field: str = "broadcast") -> str:
    """An IPv4 address to send magic packets to: the LAN's broadcast (``192.168.1.255``), the limited broadcast
    ``255.255.255.255`` or one PC's own address. IPv6 has no broadcast; multicast and ``0.0.0.0`` reach no PC."""
    try:
        address = ipaddress.ip_address(value)
    except (ValueError, TypeError):
        raise InvalidValue(field, f"{value!r} is not an IPv4 address") from None
    if address.version != 4:
        raise InvalidValue(field, f"{value!r} is not an IPv4 address (IPv6 has no broadcast)")
    if address.is_multicast or address.is_unspecified:
        raise InvalidValue(field, f"{value!r} is a multicast or unspecified address; give the LAN's broadcast")
    return str(address)


def validate_wake_target(value: str, lan_broadcasts: set[str], field: str = "broadcast") -> str:
    """A magic packet's target asked for by a caller: the limited broadcast or one of ``lan_broadcasts`` (the
    cluster's LAN). Never a unicast address: the CC would send UDP wherever a caller aims it."""
    target = validate_broadcast(value, field)
    allowed = {DEFAULT_BROADCAST} | lan_broadcasts
    if target not in allowed:
        raise InvalidValue(field, f"{value!r} is not a broadcast address of the cluster's LAN; use one of "
                                  f"{', '.join(sorted(allowed))}")
    return target


def lan_broadcast(address: str, netmask: str) -> str:
    """The broadcast address of the IPv4 LAN of ``address`` with ``netmask``."""
    return str(ipaddress.IPv4Network(f"{address}/{netmask}", strict=False).broadcast_address)


def validate_port(value: int, field: str = "port") -> int:
    """A UDP port, 1-65535."""
    if not isinstance(value, int) or isinstance(value, bool) or not 0 < value < 65536:
        raise InvalidValue(field, f"{value!r} is not a UDP port (a whole number from 1 to 65535)")
    return value


def validate_interface(value: str, field: str = "interface") -> str:
    """A network interface name such as ``eth1`` or ``enp3s0.20``."""
    if not isinstance(value, str) or not INTERFACE_RE.fullmatch(value):
        raise InvalidValue(field, f"{value!r} is not a network interface name (letters, digits, '_.-', 1-15 chars)")
    return value


def magic_packet(mac: str) -> bytes:
    """The 102 bytes that wake the card ``mac``: six 0xFF bytes, then its six address bytes sixteen times.
    Raises ``InvalidValue`` (field ``mac``) for anything that is not a network card's MAC."""
    address = bytes.fromhex(validate_nic_mac(mac).replace(":", ""))
    return b"\xff" * 6 + address * 16


def send_magic_packet(mac: str, broadcast: str = DEFAULT_BROADCAST, port: int = DEFAULT_PORT,
                      interface: str | None = None) -> bytes:
    """Send the magic packet for ``mac`` as one UDP datagram to ``broadcast``:``port`` and return it.

    ``interface`` binds the socket to one network card (``SO_BINDTODEVICE``), so a host on several LANs sends it
    on the right one; without it the routing table chooses (the default route for ``255.255.255.255``).
    Every argument is checked before a socket is opened (``InvalidValue`` naming the argument); a send the kernel
    refuses (no route, no such interface, no permission) raises ``OSError``. Delivery is never confirmed: the PC
    answers, if at all, by registering once it has started."""
    nic = validate_nic_mac(mac)
    packet = magic_packet(nic)
    target = (validate_broadcast(broadcast), validate_port(port))
    device = validate_interface(interface) if interface else None
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        if device:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, device.encode())
        sock.sendto(packet, target)
    logger.info("wol: magic packet for %s sent to %s:%d%s", nic, target[0], target[1],
                f" on {device}" if device else "")
    return packet
