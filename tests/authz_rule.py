"""The authorization rule of docs/authorization.md restated for the tests, independently of clc.services.authz (so a
mistake there is not repeated here): role caps, authority by dotted path, group permissions, records of the whole
cloud at the root, shared VM types, assigned desktops, and the roles' order for managing accounts."""

from __future__ import annotations

from dataclasses import dataclass, field

ACTIONS = ("read", "write", "execute", "create", "delete")
TYPES = ("host", "server", "image", "instance", "task", "account", "ownergroup", "vmtype", "network", "pool", "share",
         "volume")
ROLES = ("user", "poweruser", "poweradm", "superadm")
ROOT = "edu"
ALL = set(ACTIONS)
CAPS: dict[str, dict[str, set[str]]] = {
    "user": {"instance": {"read", "execute"}, "pool": {"read", "execute"}, "share": {"read", "write"}},
    "poweruser": {"image": {"read", "write", "execute"}, "instance": {"read", "write", "execute"}, "task": {"read"},
                  "vmtype": {"read"}, "pool": {"read", "write", "execute"},
                  "share": {"read", "write"}, "volume": {"read", "write", "execute"}},
    "poweradm": {"image": ALL, "instance": ALL, "host": ALL, "task": {"read"}, "vmtype": {"read"},
                 "server": {"read"}, "network": {"read"}, "pool": ALL, "share": ALL,
                 "volume": ALL},
    "superadm": {kind: ALL for kind in TYPES},
}
CLOUD = {"server", "network"}


@dataclass(frozen=True)
class Person:
    """Someone logged in with an account (or, with ``superuser``, the first administrator, who has none)."""

    username: str
    path: str
    role: str
    grants: dict = field(default_factory=dict, hash=False, compare=False)
    superuser: bool = False


def within(path: str, owner: str) -> bool:
    return owner == path or owner.startswith(path + ".")


def capped(person: Person, action: str, kind: str) -> bool:
    return action in CAPS[person.role].get(kind, set()) and (
        person.role == "superadm" or action in person.grants.get(kind, set()))


def type_rule(person: Person, action: str, kind: str) -> bool:
    """May the person do the action to some record of the type at all? (If not, every such call is a 403.)"""
    root_only = kind in CLOUD or (kind == "vmtype" and action != "read")
    return capped(person, action, kind) and (person.path == ROOT or not root_only)


def rule(person: Person, action: str, kind: str, owner: str = ROOT, assignee: str | None = None) -> bool:
    """The rule for one action on one record owned by ``owner``."""
    if not capped(person, action, kind):
        return False
    if kind in CLOUD or (kind == "vmtype" and action != "read"):
        if person.path != ROOT:
            return False
    elif kind != "vmtype" and not within(person.path, owner):
        return False
    return not (person.role == "user" and kind == "instance" and assignee != person.username)


def expected(person: Person | None, action: str, kind: str, owner: str = ROOT, assignee: str | None = None) -> int:
    """200 where the rule allows; else the refusal: 403 when the person may not do that to any record of the type
    or may read this one, 404 when they may not even read it (its existence is not revealed)."""
    if person is None:
        return 401
    if rule(person, action, kind, owner, assignee):
        return 200
    if not type_rule(person, action, kind) or (action != "read" and rule(person, "read", kind, owner, assignee)):
        return 403
    return 404


RANK = {role: index for index, role in enumerate(ROLES)}


def manages(person: Person, target: Person) -> bool:
    """Managing an account (change, password, delete, unlock): one's own; anyone for the root's super
    administrators; else a lower role, or one's own role in a deeper owner-group."""
    if person.username == target.username:
        return True
    if person.role == "superadm" and person.path == ROOT:
        return True
    if RANK[target.role] < RANK[person.role]:
        return True
    return RANK[target.role] == RANK[person.role] and target.path.startswith(person.path + ".")
