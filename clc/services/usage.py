"""A cluster's port and address usage as its cluster controller reports it (the leases are the CC's records): asked
of the cluster's online CC over a signed call, with each leased instance's name added from the CLC's records."""

from __future__ import annotations

import logging

from clc.services.commands import controller_client, online_controllers
from clc.services.hosts import MachineError
from luhyaapi.client import RemoteError
from luhyadb.models import Instance

logger = logging.getLogger(__name__)

USAGE_PATH = "/cc/api/1.0/usage/"


def cluster_usage(cluster: str) -> dict:
    """What the cluster's CC reports of its pools (``ports``, ``addresses``: each pool's range, size, leased and free
    counts and its leases; ``dhcp``), each lease with its instance's ``instance_name`` ("" if the CLC has no such
    instance), and ``controller``: which CC answered. MachineError 409 if the cluster has no online CC, 502 if it
    fails."""
    controllers = online_controllers(cluster)
    if not controllers:
        raise MachineError(409, f"cluster {cluster!r} has no online cluster controller to ask for its leases")
    controller = controllers[0]
    try:
        usage = controller_client(controller).get(USAGE_PATH)
    except RemoteError as exc:
        logger.warning("usage: cc %s did not report its pools: %s", controller.name, exc)
        raise MachineError(502, f"cluster controller {controller.name} did not report its pools: {exc.detail}") \
            from exc
    pools = [usage.get("ports", {}), *usage.get("addresses", [])]
    ids = {lease.get("instance_id") for pool in pools for lease in pool.get("leases", [])}
    names = dict(Instance.objects.filter(instance_id__in=ids).values_list("instance_id", "name"))
    for pool in pools:
        for lease in pool.get("leases", []):
            lease["instance_name"] = names.get(lease.get("instance_id"), "")
    return usage | {"controller": controller.name}
