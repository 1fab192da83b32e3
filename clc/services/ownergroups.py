"""Owner-groups and their permissions: made inside the person's authority, renamed, given a permission per resource
type, and deleted once nothing uses them. Whether the person may touch a group at all is ``clc.services.authz``'s
rule, asked by the caller (page or API) before calling these functions."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping

from django.db import transaction

from clc.services import authz
from luhyaapi.validators import InvalidValue, validate_display_name, validate_owner_path
from luhyadb.choices import ResourceTypeChoices as Type
from luhyadb.models import OwnerGroup, OwnerGroupPermission

logger = logging.getLogger(__name__)

ACTIONS = authz.ACTIONS
SHOWN_USERS = 5  # names listed per kind in a refusal to delete

# What a new group may do, by the kind of group it is (the create form's "kind"; changed later on its page). A
# group with no permission at all leaves its people facing refusals, so "none" must be chosen on purpose.
KINDS: dict[str, tuple[str, dict[str, frozenset[str]]]] = {
    "class": ("Class: its students see and start the desktops given to them, get desktops from its pools and read "
              "its file share (read, execute instances and desktop pools; read the share)",
              {Type.INSTANCE: frozenset({"read", "execute"}), Type.POOL: frozenset({"read", "execute"}),
               Type.SHARE: frozenset({"read"})}),
    "teachers": ("Teachers: prepare images, run the instances of their classes and manage their volumes", {
        Type.IMAGE: frozenset({"read", "write", "execute", "create"}),
        Type.INSTANCE: authz.ALL,
        Type.POOL: authz.ALL,
        Type.SHARE: frozenset({"read", "write"}),
        Type.VOLUME: authz.ALL,
        Type.TASK: frozenset({"read"}),
        Type.VMTYPE: frozenset({"read"})}),
    "school": ("School: its administrators manage everything of the school", {
        Type.IMAGE: authz.ALL, Type.INSTANCE: authz.ALL, Type.POOL: authz.ALL, Type.HOST: authz.ALL,
        Type.SHARE: authz.ALL, Type.VOLUME: authz.ALL, Type.ACCOUNT: authz.ALL,
        Type.OWNERGROUP: authz.ALL,
        Type.TASK: frozenset({"read"}),
        Type.VMTYPE: frozenset({"read"})}),
    "none": ("None: no permission yet (set them on its page)", {}),
}
DEFAULT_KIND = "class"


class OwnerGroupRefused(Exception):
    """An owner-group operation was refused: ``status`` 400 (a bad value), 403 (outside the person's authority) or
    409 (in use); ``field`` names the value it is about ("" for the request as a whole)."""

    def __init__(self, message: str, *, field: str = "", status: int = 400) -> None:
        super().__init__(message)
        self.field = field
        self.status = status


def tree(groups: Iterable[OwnerGroup]) -> list[OwnerGroup]:
    """The groups in tree order (each after its parent, siblings by name of their last part), each with ``depth``
    (0 for the shallowest given). Sorting the dotted path as text would not do: ``a.b-c`` sorts before ``a.b.c``."""
    ordered = sorted(groups, key=lambda group: group.path.split("."))
    top = min((group.path.count(".") for group in ordered), default=0)
    for group in ordered:
        group.depth = group.path.count(".") - top
    return ordered


def permissions_of(group: OwnerGroup) -> dict[str, list[str]]:
    """The group's permissions as ``{resource type: [actions]}``, types without any action left out."""
    granted = {}
    for row in group.permissions.all():
        actions = [action for action in ACTIONS if getattr(row, action)]
        if actions:
            granted[row.resource_type] = actions
    return dict(sorted(granted.items()))


def parse_permissions(value: object) -> dict[str, frozenset[str]]:
    """``{resource type: [actions]}`` (``"full"`` stands for all five) checked and normalised.

    Raises ``OwnerGroupRefused`` (400, field ``permissions``) naming the unknown type or action."""
    if not isinstance(value, Mapping):
        raise OwnerGroupRefused('must be an object like {"instance": ["read", "execute"]}', field="permissions")
    parsed = {}
    for resource_type, actions in value.items():
        if resource_type not in Type.values:
            raise OwnerGroupRefused(f"{resource_type!r} is not a resource type (one of {', '.join(Type.values)})",
                                    field="permissions")
        if isinstance(actions, str) or not isinstance(actions, Iterable):
            raise OwnerGroupRefused(f"{resource_type}: must be a list of actions", field="permissions")
        actions = list(actions)
        unknown = [action for action in actions if action not in ACTIONS and action != "full"]
        if unknown:
            raise OwnerGroupRefused(f"{resource_type}: {unknown[0]!r} is not an action (one of {', '.join(ACTIONS)}"
                                    ", or full)", field="permissions")
        parsed[resource_type] = authz.ALL if "full" in actions else frozenset(actions)
    return parsed


def preset_permissions(kind: str) -> dict[str, frozenset[str]]:
    """The permissions a new group of ``kind`` starts with (``KINDS``).

    Raises ``OwnerGroupRefused`` (400, field ``kind``) for an unknown kind."""
    if kind not in KINDS:
        raise OwnerGroupRefused(f"{kind!r} is not a kind of owner-group (one of {', '.join(KINDS)})", field="kind")
    return dict(KINDS[kind][1])


def create_owner_group(actor: authz.Actor, *, path: str, name: str, description: str = "", kind: str | None = None,
                       permissions: Mapping[str, Iterable[str]] | None = None) -> OwnerGroup:
    """Make an owner-group at ``path``, which must lie within the actor's authority, below an existing group. Its
    permissions are ``permissions`` when given, else the preset of its ``kind`` (``KINDS``; ``DEFAULT_KIND`` when
    neither is given): never both.

    Raises ``OwnerGroupRefused``: 400 naming the field for a malformed or taken path, a missing parent, a bad or
    taken name, an unknown kind, both kind and permissions, or bad permissions; 403 (field ``path``) for a path
    outside the actor's authority."""
    path = _checked(validate_owner_path, path, "path")
    if not authz.allows(actor, "create", Type.OWNERGROUP, path):
        raise OwnerGroupRefused(f"you may not create owner-groups at {path}: it lies outside your authority "
                                f"({actor.path or 'none'})", field="path", status=403)
    if OwnerGroup.objects.filter(path=path).exists():
        raise OwnerGroupRefused(f"an owner-group {path} exists already", field="path")
    parent = path.rpartition(".")[0]
    if not parent or not OwnerGroup.objects.filter(path=parent).exists():
        raise OwnerGroupRefused(f"must lie below an existing owner-group ({parent or 'none'} does not exist)",
                                field="path")
    name = _checked_name(name)
    description = _checked_description(description)
    if permissions is not None and kind is not None:
        raise OwnerGroupRefused("give a kind (its preset permissions) or the permissions, not both", field="kind")
    granted = parse_permissions(permissions) if permissions is not None else preset_permissions(kind or DEFAULT_KIND)
    with transaction.atomic():
        group = OwnerGroup.objects.create(path=path, name=name, description=description)
        _save_permissions(group, granted)
    logger.info("owner-groups: %s created %s (%s, %s)", actor.username, path, name,
                "own permissions" if permissions is not None else f"kind {kind or DEFAULT_KIND}")
    return group


def change_owner_group(group: OwnerGroup, *, name: str | None = None, description: str | None = None,
                       permissions: Mapping[str, Iterable[str]] | None = None) -> OwnerGroup:
    """Change what is given (None = unchanged): name, description, and the permissions (all of them: a type left
    out loses its permission). The path never changes: it is where the group sits in the tree.

    Raises ``OwnerGroupRefused`` (400 naming the field) for a bad or taken name or bad permissions."""
    if name is not None:
        group.name = _checked_name(name, group)
    if description is not None:
        group.description = _checked_description(description)
    granted = None if permissions is None else parse_permissions(permissions)
    with transaction.atomic():
        group.save()
        if granted is not None:
            _save_permissions(group, granted)
    logger.info("owner-groups: %s changed", group.path)
    return group


def users_of(group: OwnerGroup) -> list[str]:
    """What keeps the group from being deleted: its accounts, images, instances, desktop pools, volumes, hosts and
    sub-groups."""
    kinds = (
        ("account", group.accounts.values_list("user__username", flat=True)),
        ("image", group.images.values_list("image_id", flat=True)),
        ("instance", group.instances.values_list("instance_id", flat=True)),
        ("desktop pool", group.pools.values_list("pool_id", flat=True)),
        ("volume", group.volumes.values_list("volume_id", flat=True)),
        ("host", group.hosts.values_list("name", flat=True)),
        ("sub-group", OwnerGroup.objects.filter(path__startswith=group.path + ".").values_list("path", flat=True)),
    )
    users = []
    for kind, names in kinds:
        count = names.count()
        if count:
            shown = ", ".join(names[:SHOWN_USERS]) + (", ..." if count > SHOWN_USERS else "")
            users.append(f"{count} {kind}{'' if count == 1 else 's'} ({shown})")
    return users


def delete_owner_group(group: OwnerGroup) -> None:
    """Delete the group and its permissions.

    Raises ``OwnerGroupRefused``: 409 for the root group, or while accounts, images, instances, hosts or sub-groups
    use it (the message names them)."""
    if group.path == authz.ROOT_PATH:
        raise OwnerGroupRefused("the root owner-group holds the whole cloud and is never deleted", status=409)
    users = users_of(group)
    if users:
        raise OwnerGroupRefused(f"owner-group {group.path} is in use by {'; '.join(users)}: move or delete them "
                                "first", status=409)
    group.delete()
    logger.info("owner-groups: %s deleted", group.path)


def _save_permissions(group: OwnerGroup, granted: Mapping[str, frozenset[str]]) -> None:
    """Replace the group's rows: one per type that has an action, none for the others ("none = nothing")."""
    OwnerGroupPermission.objects.filter(owner_group=group).delete()
    OwnerGroupPermission.objects.bulk_create(
        OwnerGroupPermission(owner_group=group, resource_type=resource_type,
                             **{action: action in actions for action in ACTIONS})
        for resource_type, actions in granted.items() if actions)
    group.refresh_from_db()  # also forgets permissions fetched (prefetched) before the change


def _checked(check, value: str, field: str) -> str:
    try:
        return check(value, field)
    except InvalidValue as exc:
        raise OwnerGroupRefused(exc.message, field=field) from None


def _checked_name(name: str, group: OwnerGroup | None = None) -> str:
    name = _checked(validate_display_name, name, "name")
    taken = OwnerGroup.objects.filter(name=name)
    if group is not None:
        taken = taken.exclude(pk=group.pk)
    if taken.exists():
        raise OwnerGroupRefused(f"the name {name!r} is taken by another owner-group", field="name")
    return name


def _checked_description(description: str) -> str:
    if "\x00" in description:
        raise OwnerGroupRefused("may not contain NUL characters", field="description")
    return description.strip()
