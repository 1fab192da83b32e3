"""The teacher's class console (``/clc/class/<owner-group>/``): every desktop of a class (its owner-group's remote
desktops, from its pools or assigned one by one) with its state, who holds it and a thumbnail of its screen, and
batch actions on all of them or a selection: start, stop, reset, and a message shown to their students in the
portal.

Who may: a person who may change the class's instances (``write`` on instances of its owner-group: a power user, a
teacher, and above, whose group grants it); anyone else finds no class there (404). Each desktop acted on is checked
again with the one rule (``execute`` to start, stop or reset it), and every action is logged with who did it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from django.db.models import QuerySet

from clc.services import authz
from clc.services.instances import EDITABLE_STATES, STOPPABLE_STATES, InstanceError, run_instance, stop_instance
from clc.services.pools import give_back
from clc.services.portal import post_notice
from luhyadb.choices import InstanceKindChoices
from luhyadb.choices import ResourceTypeChoices as Type
from luhyadb.models import Instance, OwnerGroup

logger = logging.getLogger(__name__)

ACTIONS = ("start", "stop", "reset", "message")
MAX_MESSAGE = 500


class ClassError(Exception):
    """A class action was refused as a whole; ``status`` is the HTTP status, ``field`` what it is about."""

    def __init__(self, status: int, message: str, field: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.field = field


def may_teach(actor: authz.Actor, group: OwnerGroup) -> bool:
    """Whether the person may open the class console of ``group``."""
    return authz.allows(actor, "write", Type.INSTANCE, group.path)


def class_group(actor: authz.Actor, path: str) -> OwnerGroup:
    """The owner-group at ``path`` whose class console the person may open; ``authz.Denied`` 404 otherwise (another
    school's class does not exist for them)."""
    group = OwnerGroup.objects.filter(path=path).first()
    if group is None or not may_teach(actor, group):
        raise authz.Denied(f"no class {path}", status=404)
    return group


def classes(actor: authz.Actor) -> list[tuple[OwnerGroup, int]]:
    """The owner-groups whose class console the person may open and that have remote desktops or pools, with how
    many desktops each has, by path."""
    found = []
    for group in authz.groups_within(actor).order_by("path"):
        if not may_teach(actor, group):
            continue
        count = class_desktops(actor, group).count()
        if count or group.pools.exists():
            found.append((group, count))
    return found


def class_desktops(actor: authz.Actor, group: OwnerGroup) -> QuerySet:
    """The class's remote desktops the person may read, by name."""
    desktops = Instance.objects.filter(owner_group=group, kind=InstanceKindChoices.RVD, build_tid="")
    return authz.readable(actor, desktops.select_related("image", "vm_type", "owner_group", "assigned_to", "pool"))


@dataclass
class Outcome:
    """What a batch action did: the desktops it acted on, and those it left with why."""

    action: str
    done: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def summary(self) -> str:
        said = f"{self.action}: {len(self.done)} desktop{'' if len(self.done) == 1 else 's'}"
        if self.skipped:
            said += f"; {len(self.skipped)} left as they were (" + "; ".join(
                f"{insid}: {why}" for insid, why in self.skipped[:5]) + (", ..." if len(self.skipped) > 5 else "") + ")"
        return said


def act(actor: authz.Actor, group: OwnerGroup, action: str, selected: list[str] | None = None,
        text: str = "") -> Outcome:
    """Do ``action`` to the class's desktops (``selected`` ids among them, or all). ``start`` runs the stopped ones,
    ``stop`` stops the running and starting ones, ``reset`` stops a non-persistent desktop (its next run makes its
    disk again from the image) and gives a pool's back to its pool, ``message`` shows ``text`` to the students who
    hold them. ClassError 400 for an unknown action, a selection outside the class or a bad message."""
    if action not in ACTIONS:
        raise ClassError(400, f"unknown action {action!r}; one of {', '.join(ACTIONS)}", "action")
    desktops = class_desktops(actor, group)
    if selected is not None:
        strangers = sorted(set(selected) - set(desktops.filter(instance_id__in=selected)
                                               .values_list("instance_id", flat=True)))
        if strangers:
            raise ClassError(400, f"not desktops of class {group.path}: {', '.join(strangers[:5])}", "selected")
        desktops = desktops.filter(instance_id__in=selected)
    outcome = Outcome(action)
    if action == "message":
        _message(actor, desktops, text, outcome)
    else:
        for desktop in desktops:
            why = _one(actor, action, desktop)
            if why:
                outcome.skipped.append((desktop.instance_id, why))
            else:
                outcome.done.append(desktop.instance_id)
    logger.info("class: %s: %s of %s by %s", outcome.summary(), action, group.path, actor.username)
    return outcome


def _one(actor: authz.Actor, action: str, desktop: Instance) -> str:
    """Do ``action`` to one desktop; "" when done, else why not."""
    if not authz.may(actor, "execute", desktop):
        return "you may not use it"
    try:
        if action == "start":
            if desktop.state not in EDITABLE_STATES:
                return f"it is {desktop.state}"
            run_instance(desktop)
        elif action == "stop":
            if desktop.state not in STOPPABLE_STATES:
                return f"it is {desktop.state}"
            stop_instance(desktop)
        else:
            if desktop.persistent:
                return "a persistent desktop keeps its disk"
            if desktop.state in STOPPABLE_STATES:
                stop_instance(desktop)
            elif desktop.state not in EDITABLE_STATES:
                return f"it is {desktop.state}"
            give_back(desktop.instance_id)
    except InstanceError as exc:
        return str(exc)
    return ""


def _message(actor: authz.Actor, desktops: QuerySet, text: str, outcome: Outcome) -> None:
    text = text.strip() if isinstance(text, str) else ""
    if not text or len(text) > MAX_MESSAGE:
        raise ClassError(400, f"a message of 1 to {MAX_MESSAGE} characters", "text")
    for desktop in desktops:
        if desktop.assigned_to_id is None:
            outcome.skipped.append((desktop.instance_id, "nobody holds it"))
            continue
        post_notice(desktop.assigned_to_id, actor.username, text)
        outcome.done.append(desktop.instance_id)
