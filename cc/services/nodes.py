"""The cluster's servers: registration (kept here and passed up to the CLC), their status, and commands to them."""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from urllib.parse import urlencode

from django.conf import settings
from django.db import DatabaseError

from cc.models import ClusterInstance, ClusterNode
from cc.services.command_tasks import queue_command
from cc.services.instances import note_instance_status
from cc.services.volumes import end_detached_export
from luhyaapi.bus import Bus, RetryLater
from luhyaapi.client import RoleClient
from luhyaapi.messages import (
    Command,
    CommandRequest,
    EnrolmentRequest,
    HostRegistration,
    InsStatus,
    Message,
    MetricsReport,
    NodeStatus,
    ServerRegistration,
    TaskStatus,
)
from luhyaapi.metrics import INSTANCE_NAMESPACE
from luhyaapi.queues import CLC_STATUS, WATCH_METRICS
from luhyaapi.trust import Peer, own_key, peer

logger = logging.getLogger(__name__)
security = logging.getLogger("educloud.security")

CLUSTER_ROLES = ("nc", "sc")


class UnknownNode(LookupError):
    """No server of that name has registered with this cluster controller."""


class WrongCluster(ValueError):
    """A server asked to join a cluster other than this controller's, or a role that does not report to a CC."""


def _clc_client() -> RoleClient:
    config = settings.EDUCLOUD
    return RoleClient(config.clc_url, own_key())


def register_cluster_server(registration: ServerRegistration) -> ClusterNode:
    """Keep an NC/SC of this cluster and announce it to the CLC (``RemoteError`` if the CLC cannot be reached)."""
    config = settings.EDUCLOUD
    if registration.role not in CLUSTER_ROLES:
        raise WrongCluster(f"role {registration.role} registers with the CLC, not with a cluster controller")
    if registration.cluster != config.cluster:
        raise WrongCluster(f"this cluster controller serves cluster {config.cluster!r}, not {registration.cluster!r}")
    capacity = registration.capacity
    node, _ = ClusterNode.objects.update_or_create(
        role=registration.role, name=registration.name,
        defaults={"ip": registration.ip, "mac": registration.mac, "api_url": registration.api_url,
                  "cpus": capacity.cpus, "memory_mb": capacity.memory_mb, "disk_mb": capacity.disk_mb,
                  # A classroom PC's own node controller: placement never offers it (cc.services.scheduler).
                  "classroom_pc": registration.classroom_pc, "console_protocol": registration.console,
                  "last_seen": datetime.now(tz=UTC)})
    _clc_client().post("/clc/api/1.0/register/server/", registration.model_dump(mode="json"))
    return node


def register_cluster_host(registration: HostRegistration) -> None:
    """Announce a classroom PC of this cluster to the CLC."""
    config = settings.EDUCLOUD
    if registration.cluster != config.cluster:
        raise WrongCluster(f"this cluster controller serves cluster {config.cluster!r}, not {registration.cluster!r}")
    _clc_client().post("/clc/api/1.0/register/host/", registration.model_dump(mode="json"))


def pass_on_enrolment(request: EnrolmentRequest, address: str) -> dict:
    """Ask the CLC to enrol a node or PC of this cluster (it reaches only its CC), signed by this CC, which vouches
    only for where the request came from (``address``). ``WrongCluster`` for another cluster's host; ``RemoteError``
    with the CLC's refusal, or when it cannot be reached."""
    config = settings.EDUCLOUD
    if request.cluster != config.cluster:
        raise WrongCluster(f"this cluster controller serves cluster {config.cluster!r}, not {request.cluster!r}")
    return _clc_client().post(f"/clc/api/1.0/enrolments/?{urlencode({'address': address})}",
                              request.model_dump(mode="json"))


def cluster_controller(name: str) -> Peer | None:
    """The controller ``name`` of this cluster as this CC trusts it (itself, or as the CLC answered), for its nodes
    and PCs, which may reach only their CC, to check the commands on their queues; None for any other host."""
    found = peer(name)
    if found is None or "cc" not in found.roles or found.cluster != settings.EDUCLOUD.cluster:
        return None
    return found


def queue_node_command(broker: str, node_name: str, request: CommandRequest) -> Command:
    """Put a command on the node's own queue; the node runs it and reports through status."""
    if not ClusterNode.objects.filter(role="nc", name=node_name).exists():
        cluster = settings.EDUCLOUD.cluster
        raise UnknownNode(f"node controller {node_name!r} has not registered with cluster {cluster!r}")
    command = Command(op=request.op, tid=request.tid, seq=request.seq, paras=request.paras)
    queue_command(broker, node_name, command)
    return command


def placed_samples(reports: list[MetricsReport]) -> list[MetricsReport]:
    """``reports`` with only the instance samples of instances this cluster placed on the reporting node (a node
    speaks for the instances it was sent, not for another's, which the bus's trust rules cannot know: the
    placements are here). What is left out is logged on ``educloud.security``; a report left with no sample goes
    nowhere. ``DatabaseError`` when the cluster's records cannot be read."""
    # By node, not by instance id: a batch may name tens of thousands of instances, a cluster has a few hundred nodes.
    placed = set(ClusterInstance.objects.filter(node__in={report.host for report in reports})
                 .values_list("instance_id", "node"))
    kept = []
    for report in reports:
        samples, foreign = [], set()
        for sample in report.samples:
            insid = sample.dimensions.get("InstanceId", "")
            if sample.namespace != INSTANCE_NAMESPACE or (insid, report.host) in placed:
                samples.append(sample)
            else:
                foreign.add(insid or "(no InstanceId)")
        if foreign:
            security.warning("metrics: %s sent samples of instances not placed on it, left out: %s", report.host,
                             ", ".join(sorted(foreign)))
        if samples:
            kept.append(report.model_copy(update={"samples": tuple(samples)}))
    return kept


class NodeStatusRelay:
    """Keeps the cluster's view of its nodes and instances current and passes every report up to the CLC (an
    instance's with the run's access added, ``note_instance_status``), and every ``metrics`` message to the watch
    role's queue on the cloud's bus (``WATCH_METRICS``, never to the CLC), with only the instance samples of
    instances placed on the reporting node (``placed_samples``). A node's report that a volume is detached
    ends that volume's export at its SC (``end_detached_export``: a call of a few seconds at most, whose failure is
    logged, not raised).

    The table is written only when a node's address or capacity changes, or at most every ``touch_seconds``.
    """

    def __init__(self, upstream: Bus, touch_seconds: float = 60.0) -> None:
        self.upstream = upstream
        self.touch_seconds = touch_seconds
        self._written: dict[tuple[str, str], tuple[tuple, float]] = {}

    def relay(self, messages: list[Message]) -> None:
        now = time.time()
        upstream: list[Message] = []
        metrics = [message for message in messages if isinstance(message, MetricsReport)]
        try:
            for message in messages:
                if isinstance(message, MetricsReport):
                    continue
                if isinstance(message, NodeStatus) and message.role in CLUSTER_ROLES:
                    self._note(message, now)
                # An instance's report goes up with its run's access (a CLC that lost the answer learns it there).
                upstream.append(note_instance_status(message) if isinstance(message, InsStatus) else message)
            metrics = placed_samples(metrics) if metrics else []
        except DatabaseError as exc:
            raise RetryLater(f"cluster database unavailable: {exc}") from exc
        for message in upstream:
            self.upstream.publish(CLC_STATUS, message)
        for report in metrics:
            self.upstream.publish(WATCH_METRICS, report)
        # After the reports went up: the CLC hears of the detach without waiting for the SC.
        for message in messages:
            if isinstance(message, TaskStatus):
                try:
                    end_detached_export(message)
                except DatabaseError as exc:
                    logger.warning("volumes: the export of task %s was not ended: %s", message.tid, exc)

    def _note(self, report: NodeStatus, now: float) -> None:
        key = (report.role, report.name)
        digest = (report.ip, report.mac, report.api_url, report.capacity)
        written = self._written.get(key)
        if written and written[0] == digest and now - written[1] < self.touch_seconds:
            return
        ClusterNode.objects.update_or_create(
            role=report.role, name=report.name,
            defaults={"ip": report.ip, "mac": report.mac, "api_url": report.api_url, "cpus": report.capacity.cpus,
                      "memory_mb": report.capacity.memory_mb, "disk_mb": report.capacity.disk_mb,
                      "free_cpus": report.free.cpus, "free_memory_mb": report.free.memory_mb,
                      "free_disk_mb": report.free.disk_mb,
                      "last_seen": datetime.fromtimestamp(now, tz=UTC)})
        self._written[key] = (digest, now)
