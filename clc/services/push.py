"""Pushing a local desktop to classroom PCs (the notes: "admin can push instance to its host"): each chosen PC's node
controller pulls the desktop's image version into its cache (walrus -> CC -> PC, an image task like any
``prepare_on_node``), so that the PC's kiosk starts the desktop at once and can run it offline later."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from django.db import transaction

from clc.services import authz
from clc.services.hosts import node_of, own_node_problem
from clc.services.images import prepare_on_node
from luhyaapi.validators import InvalidValue, validate_mac
from luhyadb.choices import InstanceKindChoices, LivenessChoices
from luhyadb.models import Host, Instance, Server

logger = logging.getLogger(__name__)

# At most this many PCs in one push (a big school's classrooms; a longer list is a mistake or an attack).
MAX_PCS = 1000


class PushRefused(Exception):
    """Nothing was pushed. ``status`` is the HTTP status that says why; ``reasons`` maps each PC that was refused (its
    name, or the MAC asked for when it is not found) to why."""

    def __init__(self, status: int, message: str, reasons: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.reasons = reasons or {}


@dataclass(frozen=True)
class PushTarget:
    """A classroom PC a desktop may be pushed to, the node controller it runs, and ``problem``: why it cannot take
    the push now ("" when it can), such as being offline."""

    host: Host
    node: Server | None
    problem: str


@dataclass(frozen=True)
class Pushed:
    """A PC asked to pull the desktop's image: the PC, its node controller's name and the task to follow."""

    host: Host
    node: str
    tid: str


def validate_push_hosts(value: object) -> list[str]:
    """The MACs of the PCs to push to (``hosts``: a list of MAC addresses, at least one), lower case and each once.
    ``InvalidValue`` (``hosts``) for anything else."""
    if not isinstance(value, list) or not all(isinstance(mac, str) for mac in value):
        raise InvalidValue("hosts", "must be a list of the classroom PCs' MAC addresses")
    if not value:
        raise InvalidValue("hosts", "choose at least one classroom PC")
    if len(value) > MAX_PCS:
        raise InvalidValue("hosts", f"at most {MAX_PCS} classroom PCs at once")
    return list(dict.fromkeys(validate_mac(mac, "hosts") for mac in value))


def _require_pushable(desktop: Instance) -> None:
    if desktop.kind != InstanceKindChoices.LVD:
        raise PushRefused(409, f"{desktop.name} is a {desktop.get_kind_display().lower()}; only local desktops are "
                               "pushed to classroom PCs")
    if not desktop.image.versions.filter(number=desktop.image.current_version).exists():
        raise PushRefused(409, f"image {desktop.image.image_id} of {desktop.name} has no file yet: there is nothing "
                               "to pull")


def _offers(desktop: Instance) -> Callable[[Host], bool]:
    """Whether a PC's kiosk offers ``desktop`` (``authz.kiosk_desktops``, the one rule), asked once per
    owner-group: it depends on nothing else of the PC."""
    answers: dict[int | None, bool] = {}

    def offers(host: Host) -> bool:
        if host.owner_group_id not in answers:
            answers[host.owner_group_id] = authz.kiosk_desktops(host).filter(pk=desktop.pk).exists()
        return answers[host.owner_group_id]

    return offers


def _problem(host: Host, node: Server | None) -> str:
    """Why the PC cannot pull an image now ("" if it can): it must be online and run an online node controller of
    its own (the NC registered under its name, in its cluster, with its MAC)."""
    if host.state != LivenessChoices.ONLINE:
        return f"it is {host.state}"
    problem = own_node_problem(host, node)
    if problem:
        return problem
    if node.state != LivenessChoices.ONLINE:
        return f"its node controller is {node.state}"
    return ""


def push_targets(actor: authz.Actor, desktop: Instance) -> list[PushTarget]:
    """The classroom PCs ``desktop`` may be pushed to by ``actor``: the PCs the actor may execute on whose
    owner-group's kiosk offers the desktop, by cluster and name, each with what keeps it from taking the push now.
    None for a desktop that is not local."""
    if desktop.kind != InstanceKindChoices.LVD:
        return []
    hosts = Host.objects.select_related("owner_group").exclude(owner_group=None).order_by("cluster", "name")
    hosts = authz.readable(actor, hosts, "execute")
    offers = _offers(desktop)
    targets = []
    for host in hosts:
        if offers(host):
            node = node_of(host)
            targets.append(PushTarget(host, node, _problem(host, node)))
    return targets


def _refusal(actor: authz.Actor, desktop: Instance, host: Host | None,
             offers: Callable[[Host], bool]) -> tuple[int, str]:
    """Why ``desktop`` cannot be pushed to the PC ``host`` (None: no PC has the MAC asked for), as (HTTP status,
    reason), or (0, "") if it can."""
    if host is None or not authz.findable(actor, Host.objects.filter(pk=host.pk), "execute").exists():
        return 404, "no such classroom PC"
    if not authz.may(actor, "execute", host):
        return 403, "you may not execute on this PC"
    if not offers(host):
        group = host.owner_group.path if host.owner_group_id else "none"
        return 409, f"not a PC of this desktop's group: its owner-group ({group}) does not offer {desktop.name}"
    problem = _problem(host, node_of(host))
    return (409, problem) if problem else (0, "")


def push_desktop(actor: authz.Actor, desktop: Instance, macs: Sequence[str]) -> list[Pushed]:
    """Ask each PC of ``macs`` (``validate_push_hosts``) to pull the desktop's current image version into its cache,
    as one image task per PC (``prepare_on_node``; the commands go out after the commit). All or nothing:
    ``PushRefused`` 409 for a desktop that is not local or has no image file, else naming each PC that cannot take
    it: 403 if the actor may not execute on one, 404 if one is not found (or not theirs to see), else 409 (not
    online, no node controller of its own, not a PC of the desktop's group)."""
    _require_pushable(desktop)
    found = {host.mac: host for host in Host.objects.select_related("owner_group").filter(mac__in=macs)}
    offers = _offers(desktop)
    refused: dict[str, tuple[int, str]] = {}
    for mac in macs:
        host = found.get(mac)
        status, reason = _refusal(actor, desktop, host, offers)
        if status:
            refused[host.name if status != 404 else mac] = (status, reason)
    if refused:
        statuses = {status for status, _ in refused.values()}
        status = next(code for code in (403, 404, 409) if code in statuses)
        reasons = {name: reason for name, (_, reason) in refused.items()}
        raise PushRefused(status, f"{desktop.name} was pushed to no PC: "
                                  + "; ".join(f"{name}: {reason}" for name, reason in reasons.items()), reasons)
    pushed = []
    with transaction.atomic():
        for mac in macs:
            host = found[mac]
            node = node_of(host)
            task = prepare_on_node(desktop.image, node.name)
            pushed.append(Pushed(host, node.name, task.tid))
    logger.info("push: %s (%s) pushed to %s", desktop.instance_id, desktop.image.image_id,
                ", ".join(item.host.name for item in pushed))
    return pushed
