"""The all-in-one host as the class benchmarks run it (``class_burst.py``, ``class_start.py``): clc, walrus, cc and nc
in one process on the embedded defaults (SQLite, the in-process bus, the local-memory cache) with real QEMU, the
cluster's ``cc.cpu_overcommit`` raised so that a class of one-CPU desktops fits a two-core node, and the administrator
logged in to its API."""

from __future__ import annotations

import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from luhyaapi.client import RemoteError  # noqa: E402
from tests.services import ConsoleClient, RoleProcess, free_port_block  # noqa: E402


def wait_for(what: str, probe, timeout: float, every: float = 0.2):
    """``probe()`` once it is true; SystemExit saying what it waited for after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(every)
    raise SystemExit(f"timed out after {timeout:.0f} s waiting for {what}")


def cloud_online(client: ConsoleClient) -> bool:
    """Whether the CLC behind ``client`` sees its walrus, CC and NC online (False while it does not answer)."""
    try:
        states = {(s["role"], s["state"]) for s in client.get("/clc/api/1.0/status/")["services"]}
    except RemoteError:
        return False
    return {("nc", "online"), ("cc", "online"), ("walrus", "online")} <= states


class AllInOne:
    """The all-in-one host as a process, with the administrator logged in to its API. ``ports``: how many ports
    its cluster hands out (a console and a forwarded service per desktop); ``nc``: more node settings."""

    def __init__(self, workdir: Path, ports: int, overcommit: float, nc: dict[str, str] | None = None) -> None:
        low, high = free_port_block(ports)
        self.host = RoleProcess(workdir, "aio", "clc,walrus,cc,nc", {
            "cloud": {"heartbeat_seconds": "1", "missed_heartbeats": "5"},
            "cc": {"port_range": f"{low}-{high}", "cpu_overcommit": f"{overcommit:g}"},
            "nc": {"stop_timeout_seconds": "5"} | (nc or {})})
        self.host.start().wait_listening()
        self.client = ConsoleClient(self.host.url, timeout=120)

    def online(self) -> bool:
        return cloud_online(self.client)

    def record(self, insid: str) -> dict:
        return self.client.get(f"/clc/api/1.0/instances/{insid}/")

    def close(self) -> None:
        self.host.stop()
