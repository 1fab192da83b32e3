"""A classroom PC and the node controller it runs, as the host tests of the CLC use them, and what waits on a
node's command queue."""

import threading

from django.conf import settings as django_settings

from luhyaapi.bus import get_bus
from luhyaapi.queues import node_commands

MAC = "52:54:00:3c:0f:7e"
NODE = {"role": "nc", "name": "pc-12", "ip": "10.0.9.12", "mac": MAC, "cluster": "cluster1",
        "api_url": "http://10.0.9.12:8000", "heartbeat_seconds": 5,
        "capacity": {"cpus": 4, "memory_mb": 8192, "disk_mb": 100000}}


def queued(node_name: str) -> list:
    """The commands waiting on a node's queue (taken off it)."""
    bus = get_bus(django_settings.EDUCLOUD.bus_url)
    got: list = []
    stop = threading.Event()
    timer = threading.Timer(0.5, stop.set)
    timer.start()
    bus.consume(node_commands(node_name), got.extend, stop, max_wait=0.05)
    timer.cancel()
    return got
