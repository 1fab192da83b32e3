"""Choosing the node controller an instance runs on: by free memory, CPUs and disk, or the node it is pinned to.
The node controllers of classroom PCs are never chosen: a PC runs the desktops of the person sitting at it.

A pure function over what the cluster knows of its nodes, so every rule is testable without a cluster. When no node
fits, the error says for each node why not.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# VMs rarely keep all their virtual CPUs busy; by default a node takes this many virtual CPUs per real one
# (the cluster's cc.cpu_overcommit setting changes it: a class of idle desktops fits many more).
CPU_OVERCOMMIT = 4.0
# Memory kept for the node itself (its daemons, the page cache the image transfers need).
HOST_RESERVE_MB = 512
CLASSROOM_PC = "a classroom PC, not a node for the cloud's instances"
UNTRUSTED = "its key is not trusted (revoked, or never approved)"
DRAINING = "draining: being removed, it takes no new instances"


@dataclass(frozen=True)
class Need:
    """What one instance takes from a node."""

    cpus: int
    memory_mb: int
    disk_mb: int = 0


@dataclass(frozen=True)
class Candidate:
    """A node as the scheduler sees it: its capacity, its reported free disk, what instances already hold, whether
    it is a classroom PC's node controller, whether its key is trusted (a revoked node runs nothing more), whether
    it is draining (being removed: it keeps what it runs, takes nothing new), and how many virtual CPUs it takes per
    real one."""

    name: str
    online: bool
    cpus: float
    memory_mb: int
    free_disk_mb: int
    committed: Need = field(default_factory=lambda: Need(0, 0))
    classroom_pc: bool = False
    trusted: bool = True
    cpu_overcommit: float = CPU_OVERCOMMIT
    draining: bool = False

    @property
    def spare_memory_mb(self) -> int:
        return self.memory_mb - HOST_RESERVE_MB - self.committed.memory_mb

    @property
    def spare_cpus(self) -> float:
        return self.cpus * self.cpu_overcommit - self.committed.cpus


class NoNodeFits(LookupError):
    """No node can take the instance; ``reasons`` maps each node to why not."""

    def __init__(self, need: Need, reasons: dict[str, str]) -> None:
        self.reasons = reasons
        why = "; ".join(f"{name}: {reason}" for name, reason in sorted(reasons.items())) or "the cluster has no nodes"
        super().__init__(f"no node fits {need.cpus} CPU, {need.memory_mb} MB memory, {need.disk_mb} MB disk: {why}")


def why_not(need: Need, node: Candidate) -> str | None:
    """Why ``node`` cannot take ``need`` now, or None if it can."""
    if node.classroom_pc:
        return CLASSROOM_PC
    if not node.trusted:
        return UNTRUSTED
    if node.draining:
        return DRAINING
    if not node.online:
        return "offline"
    if node.spare_memory_mb < need.memory_mb:
        return f"{max(0, node.spare_memory_mb)} MB memory free, {need.memory_mb} MB needed"
    if node.spare_cpus < need.cpus:
        return f"{max(0.0, node.spare_cpus):g} virtual CPUs free, {need.cpus} needed"
    if node.free_disk_mb < need.disk_mb:
        return f"{node.free_disk_mb} MB disk free, {need.disk_mb} MB needed"
    return None


def pick_node(need: Need, nodes: list[Candidate], pinned: str = "") -> Candidate:
    """The node to run on: ``pinned`` if given and it fits; else of those that fit the one with the most spare
    memory, then CPUs, then disk (the notes' order). A classroom PC never fits, pinned or not. Raises NoNodeFits
    with every node's reason."""
    if pinned:
        nodes = [node for node in nodes if node.name == pinned]
        if not nodes:
            raise NoNodeFits(need, {pinned: "not a node of this cluster"})
    reasons: dict[str, str] = {}
    fitting = []
    for node in nodes:
        reason = why_not(need, node)
        if reason is None:
            fitting.append(node)
        else:
            reasons[node.name] = reason
    if not fitting:
        raise NoNodeFits(need, reasons)
    return min(fitting, key=lambda node: (-node.spare_memory_mb, -node.spare_cpus, -node.free_disk_mb, node.name))
