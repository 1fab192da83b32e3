"""The ports a new all-in-one's configuration names when this machine's defaults are taken (by another all-in-one,
most often), chosen once, at its first start; and the refusal when its web port is taken.

``python -m deploy.first_ports HOST:PORT`` (``deploy/start-allinone.sh`` runs it from the checkout before it writes
the file) prints the INI lines to add to the new file, nothing when the defaults are free, and exits 0; or prints
why it cannot start to stderr and exits 1. A setting given in the environment (``EDUCLOUD_CLC_CONSOLE_PORT``,
``EDUCLOUD_CC_PORT_RANGE``) is the administrator's choice: it is left out of the choice and not checked.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from cc.network.addresses import PortPool, port_in_use
from luhyaapi.config import SETTINGS, env_name

CONSOLE_KEY = ("clc", "console_port")
POOL_KEY = ("cc", "port_range")
# The start script's own variable for the address it writes into host.listen.
LISTEN_VARIABLE = "EDUCLOUD_LISTEN"
# Slot n moves the console proxy n ports up and the pool n pool-sizes up: 6081 and 7000-7599 for the second
# all-in-one. An all-in-one holds its console port from its start but pool ports only while its VMs run, so the
# console port is what tells that a slot's pool belongs to another one. Eight slots end below 11211 (memcached),
# which the CLC's network settings keep out of a cluster's pool.
SLOTS = 8


class PortsTaken(Exception):
    """This all-in-one cannot start with the ports it would use; the message says what to set."""


@dataclass(frozen=True)
class Choice:
    """The settings the new configuration file names: None where the default (or the environment's value) stays."""

    console_port: int | None = None
    port_range: tuple[int, int] | None = None

    def ini_lines(self) -> list[str]:
        lines = []
        if self.console_port is not None:
            lines += ["[clc]", f"console_port = {self.console_port}"]
        if self.port_range is not None:
            lines += ["[cc]", f"port_range = {self.port_range[0]}-{self.port_range[1]}"]
        return lines


def _web_address(listen: str) -> tuple[str, int]:
    host, _, port = listen.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise PortsTaken(f"{listen!r} is not HOST:PORT (set {LISTEN_VARIABLE}, e.g. 127.0.0.1:8100)")
    return host.strip("[]"), int(port)


def choose_ports(listen: str, environ: Mapping[str, str],
                 in_use: Callable[[int], bool] = port_in_use,
                 web_in_use: Callable[[int, str], bool] = port_in_use) -> Choice:
    """The console port and port pool for a new all-in-one serving its pages on ``listen`` (``HOST:PORT``): the
    defaults when they are free on this machine, else the first slot whose console port and whole pool are free and
    leave out the web port. Raises PortsTaken when the web port is taken (nothing could serve the pages) or no slot
    is free."""
    host, web_port = _web_address(listen)
    try:
        web_taken = web_in_use(web_port, host)
    except OSError as exc:
        raise PortsTaken(f"the web server cannot listen on {host}:{web_port}: {exc.strerror}; set "
                         f"{LISTEN_VARIABLE} to an address of this machine") from None
    if web_taken:
        raise PortsTaken(f"port {web_port} is taken on this machine (another all-in-one?), so the web server cannot "
                         f"listen on {host}:{web_port}; start with another port, e.g. "
                         f"{LISTEN_VARIABLE}={host}:{web_port + 100} (README: \"Two all-in-ones on one "
                         "machine\")")
    choose_console, choose_pool = (env_name(*key) not in environ for key in (CONSOLE_KEY, POOL_KEY))
    if not choose_console and not choose_pool:
        return Choice()
    console_default = int(SETTINGS[CONSOLE_KEY] or 0)
    pool_default = PortPool.parse(SETTINGS[POOL_KEY] or "")
    for slot in range(SLOTS):
        console = console_default + slot
        pool = PortPool(pool_default.low + slot * len(pool_default), pool_default.high + slot * len(pool_default))
        wanted = ([console] if choose_console else []) + (list(range(pool.low, pool.high + 1)) if choose_pool else [])
        if web_port in wanted or any(in_use(port) for port in wanted):
            continue
        return Choice(console_port=console if choose_console and slot else None,
                      port_range=(pool.low, pool.high) if choose_pool and slot else None)
    raise PortsTaken(f"the console port {console_default} and the port pool {pool_default.low}-{pool_default.high}, "
                     f"and the next {SLOTS - 1} pairs above them, are taken on this machine; set "
                     f"{env_name(*CONSOLE_KEY)} and {env_name(*POOL_KEY)} to ports that are free")


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m deploy.first_ports HOST:PORT", file=sys.stderr)
        return 2
    try:
        choice = choose_ports(argv[0], os.environ)
    except PortsTaken as exc:
        print(f"eduCloud cannot start: {exc}", file=sys.stderr)
        return 1
    for line in choice.ini_lines():
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
