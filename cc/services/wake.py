"""Waking a machine of this cluster's LAN: the CC is on that LAN, so it sends the magic packet the CLC asks for."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from django.conf import settings

from luhyaapi.wol import DEFAULT_PORT, send_magic_packet, validate_broadcast, validate_nic_mac

logger = logging.getLogger(__name__)


class WakeFailed(Exception):
    """The kernel refused to send the magic packet (no route to the broadcast address, no such interface)."""


@dataclass(frozen=True)
class Wake:
    """One magic packet sent: for which card, to which address and port, on which interface ("" = routed)."""

    mac: str
    broadcast: str
    port: int
    interface: str


def wake_mac(mac: str, broadcast: str = "") -> Wake:
    """Send the magic packet for ``mac`` on this cluster's LAN: to ``broadcast`` if given, else to the configured
    ``cc.wake_broadcast``, on ``cc.wake_interface`` if set. ``InvalidValue`` (naming ``mac`` or ``broadcast``) is
    raised before anything is sent; ``WakeFailed`` if the kernel refuses the send. Whether the machine powers on
    is not known here: it registers when it has started."""
    config = settings.EDUCLOUD
    nic = validate_nic_mac(mac, "mac")
    target = validate_broadcast(broadcast, "broadcast") if broadcast else config.wake_broadcast
    interface = config.wake_interface
    try:
        send_magic_packet(nic, target, DEFAULT_PORT, interface or None)
    except OSError as exc:
        where = f"{target} on {interface}" if interface else target
        logger.warning("wake: magic packet for %s to %s failed: %s", nic, where, exc)
        raise WakeFailed(f"cluster controller {config.name} could not send the magic packet to {where}: "
                         f"{exc.strerror or exc}") from exc
    return Wake(mac=nic, broadcast=target, port=DEFAULT_PORT, interface=interface)
