"""Strict patterns for every name or address that may reach a command line, a queue name or a path."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable

NAME_RE = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
MAC_RE = re.compile(r"^[0-9a-f]{2}(?::[0-9a-f]{2}){5}$")
# Lower case only: SQLite's LIKE and MariaDB's collation compare case-insensitively, so ``edu.S1`` would fall inside
# ``edu.s1`` in a database filter while Python's comparison keeps them apart. One spelling per path avoids both.
OWNER_PATH_RE = re.compile(r"^[a-z0-9_-]+(?:\.[a-z0-9_-]+)*$")


class InvalidValue(ValueError):
    """A value failed validation; ``field`` names the offending field for error messages."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def validate_name(value: str, field: str = "name") -> str:
    """A host, server or cluster name: lower-case letters, digits and inner dashes, 1-63 characters."""
    if not isinstance(value, str) or not NAME_RE.fullmatch(value):
        raise InvalidValue(field, f"{value!r} is not a valid name (lower-case letters, digits and '-', 1-63 chars)")
    return value


def validate_mac(value: str, field: str = "mac") -> str:
    """A MAC address, returned in lower case with colons."""
    normalized = value.strip().lower().replace("-", ":") if isinstance(value, str) else ""
    if not MAC_RE.fullmatch(normalized):
        raise InvalidValue(field, f"{value!r} is not a MAC address (expected like '52:54:00:12:34:56')")
    return normalized


def validate_ip(value: str, field: str = "ip") -> str:
    """An IPv4 or IPv6 address in its canonical text form."""
    try:
        return str(ipaddress.ip_address(value))
    except (ValueError, TypeError):
        raise InvalidValue(field, f"{value!r} is not an IP address") from None


def validate_owner_path(value: str, field: str = "path") -> str:
    """A dotted owner-group path such as ``edu.cloud.longyou.school``: lower-case words, any depth, no empty parts."""
    if not isinstance(value, str) or len(value) > 255 or not OWNER_PATH_RE.fullmatch(value):
        hint = f"; use {value.lower()!r}" if isinstance(value, str) and OWNER_PATH_RE.fullmatch(value.lower()) else ""
        raise InvalidValue(field, f"{value!r} is not an owner-group path (dotted lower-case words like "
                                  f"'edu.school.class'{hint})")
    return value


_DISPLAY_NAME_FORBIDDEN = set("/\\;&|$`<>'\"*?!{}[]~#%\x7f")


def validate_display_name(value: str, field: str = "name", max_length: int = 100) -> str:
    """A human-readable name (an image's, say): letters of any script, digits, spaces and ``-_.,()+:@``; never a
    path (no ``/``, ``\\`` or ``..``), a control character or a shell metacharacter. Returned stripped."""
    if not isinstance(value, str):
        raise InvalidValue(field, "must be text")
    stripped = value.strip()
    if not stripped or len(stripped) > max_length:
        raise InvalidValue(field, f"must be 1 to {max_length} characters")
    bad = sorted({char for char in stripped if char in _DISPLAY_NAME_FORBIDDEN or ord(char) < 32})
    if bad:
        shown = ", ".join(repr(char) for char in bad)
        raise InvalidValue(field, f"may not contain {shown} (no paths, control characters or shell metacharacters)")
    if ".." in stripped:
        raise InvalidValue(field, "may not contain '..'")
    return stripped


MAX_SERVICE_PORTS = 8


def validate_ports(values: Iterable[object], field: str = "services", max_ports: int = MAX_SERVICE_PORTS) -> list[int]:
    """Guest TCP ports to reach from outside (an instance's ``services``): whole numbers 1-65535, given as ints or
    their digits, each once, at most ``max_ports``. Returned as ints; InvalidValue saying which rule failed."""
    ports = []
    for value in values:
        text = "" if isinstance(value, bool) else str(value)
        # The length check comes first: int() of a very long digit string is slow or refused outright.
        if not (text.isascii() and text.isdigit() and len(text) <= 5 and 1 <= int(text) <= 65535):
            raise InvalidValue(field, f"{str(value)[:12]!r} is not a TCP port (a whole number from 1 to 65535)")
        ports.append(int(text))
    if len(set(ports)) != len(ports):
        raise InvalidValue(field, "a port is listed twice")
    if len(ports) > max_ports:
        raise InvalidValue(field, f"at most {max_ports} ports")
    return ports
