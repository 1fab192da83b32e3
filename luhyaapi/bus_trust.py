"""Who may put which messages on which queue: the policy a consumer checks every message against once its signature
is good (``luhyaapi.bus``), declared per queue at the end of this module as REST views declare ``signed_callers``.

A policy is a list of clauses: senders of these roles may put messages of these types on the queue when the clause's
check finds nothing against it (a host reports only about itself, in its own cluster...). A message no clause takes
is refused: the bus parks it on the queue's dead-letter queue with the reason and logs it on ``educloud.security``.

Who a sender is, and who a report is about, comes from the trust records (``luhyaapi.trust``: the roles, cluster and
MAC a host enrolled with), never from the message. Each name is looked up once per batch: on the CLC in its own
records, all of a batch's names at once (a revoked key is refused at once), elsewhere through ``trust.peer``'s cache
(a revoked key is refused within ``trust.PEER_CACHE_SECONDS``).

There is no time limit: a message may wait in its queue for hours while its consumer is down. A replayed message does
no harm since every consumer is idempotent: a report carries ``seq`` (an older one never undoes a newer one), a
command its idempotency key (``Command.key``: a node runs each once).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from django.db import DatabaseError

from luhyaapi import trust
from luhyaapi.bus import RetryLater
from luhyaapi.messages import Command, HostStatus, InsStatus, Message, MetricsReport, NodeStatus, TaskStatus
from luhyaapi.metrics import HOST_NAMESPACE, INSTANCE_NAMESPACE
from luhyaapi.queues import CC_STATUS_PREFIX, CLC_STATUS, NODE_COMMANDS_PREFIX, WATCH_METRICS, kind_of
from luhyaapi.trust import PC, Peer
from luhyaapi.wording import with_article

# The hosts of a cluster (servers of these roles and classroom PCs), its nodes, and its controllers.
CLUSTER_HOSTS = frozenset({"nc", "sc", PC})
NODES = frozenset({"nc", PC})
CONTROLLERS = frozenset({"cc"})
# The roles whose heartbeats a CC relays (its own goes to the CLC's queue straight).
RELAYED_ROLES = frozenset({"nc", "sc"})
ANY_HOST = None

_placement: Callable[[InsStatus | TaskStatus], str] | None = None


def set_placement(locator: Callable[[InsStatus | TaskStatus], str] | None) -> None:
    """The CLC host's records of where runs are: the cluster an ``InsStatus``'s instance or a ``TaskStatus``'s task
    was placed in, "" where it was placed nowhere yet (``None`` to forget them)."""
    global _placement
    _placement = locator


class Batch:
    """What the checks of one batch of one queue know: the queue's subject (the cluster of ``cc.status.<cluster>``,
    the node of ``cmd.<node>``), this host, and every host and placement looked up so far (each once a batch).
    Database failures raise ``RetryLater``: the batch waits, it is not refused."""

    def __init__(self, queue: str) -> None:
        self.queue = queue
        try:
            self.subject = kind_of(queue)[1]
        except ValueError:
            self.subject = ""  # a queue of a test's own policy
        self.here = trust.own_peer()
        self._peers: dict[str, Peer | None] = {}
        self._placed: dict[tuple[str, str], str] = {}

    def preload(self, names: Iterable[str]) -> None:
        """Look up at once every one of ``names`` not looked up yet."""
        missing = set(names) - self._peers.keys()
        if missing:
            try:
                self._peers.update(trust.peers(missing))
            except DatabaseError as exc:
                raise RetryLater(f"the trust records are unavailable: {exc}") from exc

    def peer(self, name: str) -> Peer | None:
        """The trusted host ``name``, or None (unknown, waiting for approval, or revoked)."""
        self.preload((name,))
        return self._peers[name]

    def placement(self, report: InsStatus | TaskStatus) -> str:
        """Where this host's records place the report's instance or task ("" nowhere, or no records here)."""
        key = (report.type, report.insid if isinstance(report, InsStatus) else report.tid)
        if key not in self._placed:
            try:
                self._placed[key] = _placement(report) if _placement is not None else ""
            except DatabaseError as exc:
                raise RetryLater(f"the records of runs are unavailable: {exc}") from exc
        return self._placed[key]


Check = Callable[[Batch, Peer, Message], str]


@dataclass(frozen=True)
class Clause:
    """Senders having one of ``roles`` (any trusted host: ``ANY_HOST``) may put messages of ``kinds`` on the queue
    when ``check`` finds nothing against it (it returns why not, or "")."""

    roles: frozenset[str] | None
    kinds: tuple[type[Message], ...]
    check: Check

    def takes(self, sender: Peer, message: Message) -> bool:
        return isinstance(message, self.kinds) and (self.roles is None or bool(sender.roles & self.roles))


@dataclass(frozen=True)
class QueuePolicy:
    """Who may put what on the queues named ``queue`` (as people read it: ``cc.status.<cluster>``)."""

    queue: str
    clauses: tuple[Clause, ...]

    def batch(self, queue: str) -> Batch:
        return Batch(queue)

    def refusals(self, batch: Batch, items: list[tuple[Peer, Message]]) -> list[str]:
        """For each (sender, message) of a batch, why the sender may not put it on the queue ("" if it may)."""
        batch.preload(name for _sender, message in items if (name := _subject_of(message)))
        return [self.refusal(batch, sender, message) for sender, message in items]

    def refusal(self, batch: Batch, sender: Peer, message: Message) -> str:
        """Why no clause takes the message ("" if one does): the reasons of the clauses for the sender's roles if
        any took it up (a CC relaying is told why not as a CC), else those of the clauses for any host."""
        for_roles, for_anyone = [], []
        for clause in self.clauses:
            if clause.takes(sender, message):
                reason = clause.check(batch, sender, message)
                if not reason:
                    return ""
                (for_anyone if clause.roles is ANY_HOST else for_roles).append(reason)
        if for_roles or for_anyone:
            return "; ".join(for_roles or for_anyone)
        return (f"{sender.name} ({', '.join(sorted(sender.roles))}) may not put {with_article(message.type)} "
                f"message on {self.queue}")


def _subject_of(message: Message) -> str:
    """The host a report is about ("" for a task's progress or a command)."""
    if isinstance(message, NodeStatus | HostStatus):
        return message.name
    if isinstance(message, InsStatus):
        return message.node
    if isinstance(message, MetricsReport):
        return message.host
    return ""


def _reports_as(host: Peer) -> frozenset[str]:
    """The roles a host's heartbeat may name: those it enrolled with; a classroom PC's node controller is nc."""
    return host.roles | ({"nc"} if PC in host.roles else frozenset())


def _about(host: Peer, report: Message) -> str:
    """Why ``report`` is not about ``host`` as the trust records have it ("" if it is)."""
    if isinstance(report, InsStatus):
        return "" if report.node == host.name else f"the report is about node {report.node}, not {host.name}"
    if not isinstance(report, NodeStatus | HostStatus):
        return f"{with_article(report.type)} message is about no host"
    if report.name != host.name:
        return f"the report is about {report.name}, not {host.name}"
    if isinstance(report, NodeStatus) and report.role not in _reports_as(host):
        return f"{host.name} is enrolled as {', '.join(sorted(host.roles))}, not as {report.role}"
    if isinstance(report, HostStatus) and PC not in host.roles:
        return f"{host.name} is not a classroom PC"
    if report.cluster != host.cluster:
        return f"{host.name} is enrolled in cluster {host.cluster}, not {report.cluster}"
    if PC in host.roles and report.mac != host.mac:
        return f"{host.name} is the classroom PC of MAC {host.mac}, not of {report.mac or 'no MAC'}"
    return ""


def _in_the_queues_cluster(batch: Batch, sender: Peer) -> str:
    if sender.cluster != batch.subject:
        return f"{sender.name} is enrolled in cluster {sender.cluster}, not {batch.subject}"
    return ""


def _own_report(batch: Batch, sender: Peer, message: Message) -> str:
    return _about(sender, message)


def _own_report_in_the_cluster(batch: Batch, sender: Peer, message: Message) -> str:
    return _in_the_queues_cluster(batch, sender) or _about(sender, message)


def _sent_in_the_cluster(batch: Batch, sender: Peer, message: Message) -> str:
    return _in_the_queues_cluster(batch, sender)


def _placed_in_the_senders_cluster(batch: Batch, sender: Peer, report: InsStatus | TaskStatus) -> str:
    cluster = batch.placement(report)
    if cluster and cluster != sender.cluster:
        what = f"instance {report.insid}" if isinstance(report, InsStatus) else f"task {report.tid}"
        return f"{what} runs in cluster {cluster}, not in {sender.name}'s cluster {sender.cluster}"
    return ""


def _relayed_from_its_cluster(batch: Batch, sender: Peer, report: Message) -> str:
    name = _subject_of(report)
    host = batch.peer(name)
    if host is None:
        return f"{name} is not a trusted host of this cloud (unknown, or its key was revoked)"
    if host.cluster != sender.cluster:
        return f"{sender.name} relays cluster {sender.cluster}, and {name} is in cluster {host.cluster}"
    if isinstance(report, NodeStatus) and report.role not in RELAYED_ROLES:
        return f"a CC relays the heartbeats of {' and '.join(sorted(RELAYED_ROLES))} only, not of {report.role}"
    reason = _about(host, report)
    if not reason and isinstance(report, InsStatus):
        reason = _placed_in_the_senders_cluster(batch, sender, report)
    return reason


def _task_of_its_cluster(batch: Batch, sender: Peer, report: Message) -> str:
    return _placed_in_the_senders_cluster(batch, sender, report)


def _from_a_cc_of_the_nodes_cluster(batch: Batch, sender: Peer, message: Message) -> str:
    if sender.cluster != batch.here.cluster:
        return f"{sender.name} controls cluster {sender.cluster}, not this node's cluster {batch.here.cluster}"
    return ""


def _from_the_node_itself(batch: Batch, sender: Peer, message: Message) -> str:
    if sender.name != batch.subject:
        return f"{sender.name} may not command {batch.subject}: only its cluster's CC and the node itself may"
    return ""


def _samples_of(host: Peer, report: MetricsReport, cluster: str, *, instances: bool) -> str:
    """Why ``report`` is not ``host``'s own metrics in ``cluster`` ("" if it is): sent as ``host``, every sample
    dimensioned ``Cluster`` = ``cluster`` and either of the host itself (``eduCloud/Host``, ``HostName`` = host) or,
    with ``instances`` and from a node, of an instance it runs (``eduCloud/Instance``, ``NodeName`` = host). Which
    instances a node runs is the CC's to check (``cc.services.nodes``: it relays only samples of instances it placed
    on that node)."""
    if report.host != host.name:
        return f"the metrics are of {report.host}, not {host.name}"
    node = bool(_reports_as(host) & {"nc"})
    for sample in report.samples:
        if sample.namespace == HOST_NAMESPACE:
            about = sample.dimensions.get("HostName")
        elif sample.namespace == INSTANCE_NAMESPACE and instances and node:
            about = sample.dimensions.get("NodeName")
        else:
            kinds = "host or instance" if instances and node else "host"
            return f"{host.name} may send its own {kinds} metrics only, not {sample.namespace}"
        if about != host.name:
            return f"a sample of {sample.namespace} {sample.name} is about {about or 'no host'}, not {host.name}"
        if (of := sample.dimensions.get("Cluster")) != cluster:
            return f"a sample of {sample.namespace} {sample.name} is of cluster {of or 'none'}, not {cluster}"
    return ""


def _own_metrics_in_the_cluster(batch: Batch, sender: Peer, report: MetricsReport) -> str:
    return _in_the_queues_cluster(batch, sender) or _samples_of(sender, report, batch.subject, instances=True)


def _own_host_metrics(batch: Batch, sender: Peer, report: MetricsReport) -> str:
    return _samples_of(sender, report, sender.cluster, instances=False)


def _metrics_relayed_from_its_cluster(batch: Batch, sender: Peer, report: MetricsReport) -> str:
    host = batch.peer(report.host)
    if host is None:
        return f"{report.host} is not a trusted host of this cloud (unknown, or its key was revoked)"
    if host.cluster != sender.cluster:
        return f"{sender.name} relays cluster {sender.cluster}, and {report.host} is in cluster {host.cluster}"
    if not host.roles & CLUSTER_HOSTS:
        return f"a CC relays the metrics of its cluster's nodes and SCs only, not of {report.host}"
    return _samples_of(host, report, sender.cluster, instances=True)


POLICIES: dict[str, QueuePolicy] = {
    # A cluster's status, consumed by its CC: its hosts' reports about themselves, its nodes' task progress.
    CC_STATUS_PREFIX: QueuePolicy(CC_STATUS_PREFIX + "<cluster>", (
        Clause(CLUSTER_HOSTS, (NodeStatus, HostStatus, InsStatus), _own_report_in_the_cluster),
        Clause(NODES, (TaskStatus,), _sent_in_the_cluster),
        Clause(CLUSTER_HOSTS, (MetricsReport,), _own_metrics_in_the_cluster),
    )),
    # The cloud's status, consumed by the CLC: a host's own heartbeat, and a CC relaying its own cluster's reports.
    CLC_STATUS: QueuePolicy(CLC_STATUS, (
        Clause(ANY_HOST, (NodeStatus,), _own_report),
        Clause(CONTROLLERS, (NodeStatus, HostStatus, InsStatus), _relayed_from_its_cluster),
        Clause(CONTROLLERS, (TaskStatus,), _task_of_its_cluster),
    )),
    # A node's commands, consumed by that node: from a CC of its cluster, or from the node itself.
    NODE_COMMANDS_PREFIX: QueuePolicy(NODE_COMMANDS_PREFIX + "<node>", (
        Clause(CONTROLLERS, (Command,), _from_a_cc_of_the_nodes_cluster),
        Clause(ANY_HOST, (Command,), _from_the_node_itself),
    )),
    # The watch role's samples: a host's own host samples, and a CC relaying the metrics of its cluster's hosts.
    WATCH_METRICS: QueuePolicy(WATCH_METRICS, (
        Clause(ANY_HOST, (MetricsReport,), _own_host_metrics),
        Clause(CONTROLLERS, (MetricsReport,), _metrics_relayed_from_its_cluster),
    )),
}


def policy_for(queue: str) -> QueuePolicy:
    """The policy of a queue named by ``luhyaapi.queues``; ValueError for any other name."""
    return POLICIES[kind_of(queue)[0]]
