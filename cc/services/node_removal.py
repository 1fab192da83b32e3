"""Removing a node controller from the cluster, as the CLC asks: drain it (placed on no more), then forget it once
it holds no instance."""

from __future__ import annotations

import logging

from django.db import transaction

from cc.models import ClusterInstance, ClusterNode
from cc.services.instances import InstanceRefused

logger = logging.getLogger(__name__)


def _node(name: str) -> ClusterNode:
    node = ClusterNode.objects.filter(role="nc", name=name).first()
    if node is None:
        raise InstanceRefused(404, f"node controller {name!r} is not a node of this cluster")
    return node


def drain_node(name: str, draining: bool = True) -> ClusterNode:
    """Mark node ``name`` draining (the scheduler places nothing new on it; what it runs goes on) or, with
    ``draining`` false, take it back into placement. InstanceRefused 404 for a node this cluster does not know."""
    node = _node(name)
    if node.draining != draining:
        ClusterNode.objects.filter(pk=node.pk).update(draining=draining)
        node.draining = draining
        logger.warning("nodes: %s %s", name, "drained: no new instances" if draining else "takes instances again")
    return node


def instances_on(name: str) -> list[str]:
    """The instances this cluster has placed on node ``name`` (any state: a stopped persistent one keeps its disk
    there)."""
    return list(ClusterInstance.objects.filter(node=name).values_list("instance_id", flat=True))


@transaction.atomic
def forget_node(name: str) -> None:
    """Remove node ``name``'s record once it is draining and holds no instance. InstanceRefused 404 for an unknown
    node, 409 when it is not draining or still holds instances (named). A node that registers again comes back
    draining only if the CLC says so again; its revoked key keeps it out meanwhile."""
    node = _node(name)
    if not node.draining:
        raise InstanceRefused(409, f"node {name} is not draining: drain it first, so nothing new lands on it")
    held = instances_on(name)
    if held:
        raise InstanceRefused(409, f"node {name} still holds instances {', '.join(held)}: stop and delete them first")
    node.delete()
    logger.warning("nodes: %s forgotten", name)
