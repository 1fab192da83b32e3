"""Owner-group authorization (the notes II.1, DESIGN.md section 7): the one place that decides who may do what.

The rule, for a person (an ``Account``: an owner-group path and a role) doing ``action`` (read, write, execute,
create, delete) to a resource of ``type`` owned by the owner-group path ``owner``:

1. Nobody who is not logged in may do anything here (the classroom kiosk reaches local desktops through its own
   node controller, which asks the CLC with a signed call, not as a web user).
2. The role must allow the action on the type (``ROLE_CAPS``): a user only reads and starts desktops, a power user
   changes and uses images and instances, a power administrator manages images, instances and hosts, a super
   administrator everything.
3. The resource must lie in the person's authority: ``owner == path`` or ``owner`` starts with ``path + "."``, so an
   account of ``a.b`` reaches ``a.b`` and ``a.b.*``, never ``a`` or ``a.c``. Records of the whole cloud (servers,
   cluster networks) belong to the root path. VM types are shared reference data: reading them needs no authority,
   changing them needs the root path.
4. Unless the role is super administrator, the person's owner-group must grant the action on the type (its
   ``OwnerGroupPermission`` row; none = nothing).
5. A user reaches only the instances assigned to them. A desktop pool (and a lesson of its timetable) is a record
   of its own type: a user may read and execute (get a desktop from) the pools in their authority, and the desktop
   a pool hands them is then assigned to them. An owner-group's file share (WebDAV, served by the SC) is of type
   ``share``, owned by its group: read lists and fetches its files, write changes them (``clc.services.shares``).
   A volume and its snapshots are of type ``volume``, owned by the volume's owner-group (``clc.services.volumes``).

A classroom PC's kiosk lists desktops for anonymous people at that PC: ``kiosk_desktops`` applies the same rule to
an anonymous actor holding the PC's owner-group path and that group's permissions, whose role reads and starts
local desktops (LVD) only.

Roles of the cloud (signed calls between CLC, CC and NC) are not people: the API lets them through before this rule.
Every API view and console page asks ``allows``/``require`` for one object and ``readable`` for a list.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from django.db.models import Model, Q, QuerySet

from luhyaapi.wording import with_article
from luhyadb.choices import AccountRoleChoices as Role
from luhyadb.choices import InstanceKindChoices
from luhyadb.choices import ResourceTypeChoices as Type
from luhyadb.models import (
    Account,
    ClusterNetwork,
    DesktopPool,
    Host,
    Image,
    Instance,
    Lesson,
    OwnerGroup,
    OwnerGroupPermission,
    Server,
    Snapshot,
    TaskTransaction,
    VMType,
    Volume,
)
from luhyadb.services.initial_data import ROOT_GROUP

ACTIONS = ("read", "write", "execute", "create", "delete")
ALL = frozenset(ACTIONS)
ROOT_PATH = ROOT_GROUP[1]

ANONYMOUS = "anonymous"
ROLE_CAPS: dict[str, dict[str, frozenset[str]]] = {
    ANONYMOUS: {Type.INSTANCE: frozenset({"read", "execute"})},
    Role.USER: {Type.INSTANCE: frozenset({"read", "execute"}), Type.POOL: frozenset({"read", "execute"}),
                Type.SHARE: frozenset({"read", "write"})},
    Role.POWERUSER: {
        Type.IMAGE: frozenset({"read", "write", "execute"}),
        Type.INSTANCE: frozenset({"read", "write", "execute"}),
        Type.POOL: frozenset({"read", "write", "execute"}),
        Type.SHARE: frozenset({"read", "write"}),
        Type.VOLUME: frozenset({"read", "write", "execute"}),
        Type.TASK: frozenset({"read"}),
        Type.VMTYPE: frozenset({"read"}),
    },
    Role.POWERADM: {
        Type.IMAGE: ALL, Type.INSTANCE: ALL, Type.POOL: ALL, Type.HOST: ALL, Type.SHARE: ALL, Type.VOLUME: ALL,
        Type.TASK: frozenset({"read"}),
        Type.VMTYPE: frozenset({"read"}),
        Type.SERVER: frozenset({"read"}),
        Type.NETWORK: frozenset({"read"}),
    },
    Role.SUPERADM: {resource_type: ALL for resource_type in Type.values},
}

# Records that belong to the whole cloud rather than to an owner-group.
CLOUD_TYPES = frozenset({Type.SERVER, Type.NETWORK})
SHARED_TYPES = frozenset({Type.VMTYPE})


class Denied(Exception):
    """The person may not do this; ``status`` is 403 (they may see the resource) or 404 (they may not even see it)."""

    def __init__(self, message: str, status: int = 403) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Actor:
    """Who is asking: their user id, authority path, role and their owner-group's permissions by type.
    ``path`` is None for someone not logged in or without an account (they may do nothing)."""

    user_id: int | None = None
    username: str = ""
    path: str | None = None
    role: str | None = None
    grants: dict[str, frozenset[str]] = field(default_factory=dict)

    @property
    def is_person(self) -> bool:
        return self.path is not None and self.role is not None


NOBODY = Actor()


def actor_for(user) -> Actor:
    """The actor of a Django user: their account's path, role and group permissions; a superuser without an
    account is a super administrator of the root; anyone else without an account is nobody."""
    if user is None or not getattr(user, "is_authenticated", False) or not getattr(user, "is_active", True):
        return NOBODY
    account = Account.objects.select_related("owner_group").filter(user_id=user.pk).first()
    if account is None:
        if user.is_superuser:
            return Actor(user_id=user.pk, username=user.username, path=ROOT_PATH, role=Role.SUPERADM)
        return Actor(user_id=user.pk, username=user.username)
    return Actor(user_id=user.pk, username=user.username, path=account.owner_group.path, role=account.role,
                 grants=_grants(account.owner_group_id))


def actor_for_host(host: Host) -> Actor:
    """The anonymous person at a classroom PC: the PC's owner-group path and permissions (nobody if it has none)."""
    if host.owner_group_id is None:
        return NOBODY
    return Actor(path=host.owner_group.path, role=ANONYMOUS, grants=_grants(host.owner_group_id))


def kiosk_desktops(host: Host) -> QuerySet:
    """The local desktops a PC's kiosk offers: LVD instances the PC's anonymous actor may read and start."""
    actor = actor_for_host(host)
    desktops = Instance.objects.filter(kind=InstanceKindChoices.LVD).select_related("image", "vm_type", "owner_group")
    return readable(actor, readable(actor, desktops, "execute"))


def within(path: str, owner: str) -> bool:
    """True if ``owner`` is ``path`` or lies below it (``a.b`` reaches ``a.b`` and ``a.b.c``, not ``a.bc``)."""
    return owner == path or owner.startswith(path + ".")


def allows(actor: Actor, action: str, resource_type: str, owner: str, *, assignee_id: int | None = None) -> bool:
    """The rule of this module for one action on one resource (``owner``: its owner-group path)."""
    if action not in ALL:
        raise ValueError(f"unknown action {action!r}")
    if not actor.is_person:
        return False
    if action not in ROLE_CAPS[actor.role].get(resource_type, frozenset()):
        return False
    shared_read = resource_type in SHARED_TYPES and action == "read"
    if not shared_read and not within(actor.path, owner):
        return False
    if actor.role != Role.SUPERADM and action not in actor.grants.get(resource_type, frozenset()):
        return False
    if actor.role == Role.USER and resource_type == Type.INSTANCE and assignee_id != actor.user_id:
        return False
    return True


MODEL_TYPES: dict[type[Model], str] = {
    Instance: Type.INSTANCE, Image: Type.IMAGE, Host: Type.HOST, Account: Type.ACCOUNT, OwnerGroup: Type.OWNERGROUP,
    TaskTransaction: Type.TASK, Server: Type.SERVER, ClusterNetwork: Type.NETWORK, VMType: Type.VMTYPE,
    DesktopPool: Type.POOL, Lesson: Type.POOL, Volume: Type.VOLUME, Snapshot: Type.VOLUME,
}
# Where a record's owner-group path is, for the records whose owner is not their own ``owner_group``.
PATH_FIELDS: dict[type[Model], str] = {OwnerGroup: "path", Lesson: "pool__owner_group__path"}


def type_and_owner(obj: Model) -> tuple[str, str, int | None]:
    """The resource type, owner path and assignee (instances only) of a record."""
    resource_type = MODEL_TYPES.get(type(obj))
    if resource_type is None:
        raise TypeError(f"no authorization rule for {type(obj).__name__}")
    if resource_type in CLOUD_TYPES or resource_type in SHARED_TYPES:
        return resource_type, ROOT_PATH, None
    if resource_type == Type.OWNERGROUP:
        return resource_type, obj.path, None
    if resource_type == Type.TASK:
        return resource_type, _task_owner(obj), None
    if resource_type == Type.HOST and obj.owner_group_id is None:
        return resource_type, ROOT_PATH, None
    if isinstance(obj, Lesson):
        return resource_type, obj.pool.owner_group.path, None
    assignee = obj.assigned_to_id if resource_type == Type.INSTANCE else None
    return resource_type, obj.owner_group.path, assignee


def groups_within(actor: Actor):
    """The owner-groups in the actor's authority (for the owner-group choices of a form)."""
    if not actor.is_person:
        return OwnerGroup.objects.none()
    return OwnerGroup.objects.filter(_scope(actor, "path"))


def assignee_problem(user, owner: str) -> str:
    """Why ``user`` cannot be given a desktop owned by ``owner`` ("" if they can): they must have an account whose
    authority covers it, or they could never see it."""
    if user is None:
        return ""
    account = Account.objects.select_related("owner_group").filter(user_id=user.pk).first()
    if account is None:
        return f"{user.username} has no eduCloud account"
    if not within(account.owner_group.path, owner):
        return (f"{user.username} belongs to {account.owner_group.path} and could not reach a desktop of {owner}; "
                "choose an owner-group inside theirs")
    return ""


def may(actor: Actor, action: str, obj: Model) -> bool:
    """``allows`` for a record."""
    resource_type, owner, assignee = type_and_owner(obj)
    return allows(actor, action, resource_type, owner, assignee_id=assignee)


def require(actor: Actor, action: str, obj: Model) -> None:
    """Raise ``Denied`` unless the actor may do the action: 403 if they may not do it to any record of the type,
    else 404 if they may not even read this one (its existence is not revealed), else 403."""
    if may(actor, action, obj):
        return
    resource_type, _, _ = type_and_owner(obj)
    require_type(actor, action, resource_type)
    if action != "read" and may(actor, "read", obj):
        raise Denied(f"you may not {action} this {Type(resource_type).label.lower()}")
    raise Denied(f"no such {Type(resource_type).label.lower()}", status=404)


def may_use(actor: Actor, instance: Instance) -> bool:
    """Using an instance for something of one's own (attaching a volume to it, detaching one): starting it
    (execute) or changing it (write)."""
    return may(actor, "execute", instance) or may(actor, "write", instance)


def usable_instances(actor: Actor, queryset: QuerySet) -> QuerySet:
    """The instances of ``queryset`` the actor may use (``may_use``), filtered in the database."""
    return readable(actor, queryset, "execute") | readable(actor, queryset, "write")


def may_build(actor: Actor, image: Image, *, create: bool) -> bool:
    """The image wizard changes ``image`` (write on it), or makes a new image from it (read it, and create images
    in its owner-group)."""
    if create:
        return may(actor, "read", image) and allows(actor, "create", Type.IMAGE, image.owner_group.path)
    return may(actor, "write", image)


def require_create(actor: Actor, resource_type: str, owner: str) -> None:
    """Raise ``Denied`` (403) unless the actor may create a resource of the type owned by ``owner``."""
    if not allows(actor, "create", resource_type, owner):
        raise Denied(f"you may not create {with_article(Type(resource_type).label.lower())} in owner-group {owner!r}")


def require_type(actor: Actor, action: str, resource_type: str) -> None:
    """Raise ``Denied`` (403) unless the actor's role and group allow the action on the type somewhere (for pages
    and endpoints that act on a whole type, like a list or a new-record form). Records of the whole cloud exist at
    the root only, so for them "somewhere" is the root: a school's administrator may not act on any of them. The
    refusal is ``why_refused``'s: which permission is missing and who can grant it."""
    if _refused_step(actor, action, resource_type):
        raise Denied(why_refused(actor, action, resource_type))


def uses_portal(actor: Actor) -> bool:
    """A student (role user): their pages are the portal's, where the same rule shows them their desktops; the
    console's instance pages are for those who manage instances."""
    return actor.is_person and actor.role == Role.USER


def may_type(actor: Actor, action: str, resource_type: str) -> bool:
    """``require_type`` as a yes or no (without looking up who could grant it)."""
    return not _refused_step(actor, action, resource_type)


def _refused_step(actor: Actor, action: str, resource_type: str) -> str:
    """Which step of the rule refuses the action on every record of the type: "account", "role", "group" or
    "root" ("" when some record of the type may be acted on)."""
    if not actor.is_person:
        return "account"
    if action not in ROLE_CAPS[actor.role].get(resource_type, frozenset()):
        return "role"
    if actor.role != Role.SUPERADM and action not in actor.grants.get(resource_type, frozenset()):
        return "group"
    if actor.path != ROOT_PATH and _root_only(action, resource_type):
        return "root"
    return ""


def why_refused(actor: Actor, action: str, resource_type: str) -> str:
    """Why the actor may not ``action`` any record of the type, in words the person can act on: the permission
    that is missing and who can grant it (a super administrator of the person's group or above, by path); "" if the
    action is allowed. The console's and portal's 403 pages and the API's 403 body say this."""
    step = _refused_step(actor, action, resource_type)
    if not step:
        return ""
    label = Type(resource_type).label.lower()
    refusal = f"you may not {action} {label} records"
    if step == "account":
        return f"{refusal}: your login has no eduCloud account; {_granters(ROOT_PATH)} can give it one"
    if step == "role":
        return (f"{refusal}: your role ({actor.role}) does not allow it; {_granters(actor.path)} can give your "
                "account another role on the Accounts page")
    if step == "group":
        return (f"{refusal}: your owner-group {actor.path} does not grant {action} on {label} records; "
                f"{_granters(actor.path)} can grant it on the Owner-groups page")
    return f"{refusal}: {label} records belong to the whole cloud: only {_granters(ROOT_PATH)} may {action} them"


def _granters(path: str) -> str:
    """Who may change the owner-group at ``path`` and its accounts: a super administrator of it or of a group above
    it (named by path, nearest first). People are not named: the usernames of other branches are not the asker's to
    know (docs/authorization.md)."""
    parts = path.split(".")
    above = [".".join(parts[:length]) for length in range(len(parts) - 1, 0, -1)]
    if not above:
        return f"a super administrator of {path} (the whole cloud)"
    return f"a super administrator of {path} or of a group above it ({', '.join(above)})"


def _root_only(action: str, resource_type: str) -> bool:
    return resource_type in CLOUD_TYPES or (resource_type in SHARED_TYPES and action != "read")


def readable(actor: Actor, queryset: QuerySet, action: str = "read") -> QuerySet:
    """The rows of ``queryset`` the actor may ``action`` (read by default), filtered in the database: the same
    rule as ``allows``, row by row."""
    resource_type = MODEL_TYPES[queryset.model]
    if not may_type(actor, action, resource_type):
        return queryset.none()
    if resource_type in SHARED_TYPES and action == "read":
        return queryset
    if resource_type in CLOUD_TYPES or resource_type in SHARED_TYPES:
        return queryset  # require_type let only the root through
    if resource_type == Type.TASK:
        instances = Instance.objects.filter(_scope(actor, "owner_group__path"))
        images = Image.objects.filter(_scope(actor, "owner_group__path"))
        orphan = ~Q(instance_id__in=Instance.objects.values("instance_id"))
        in_images = Q(src_image_id__in=images.values("image_id"))
        if within(actor.path, ROOT_PATH):
            in_images |= ~Q(src_image_id__in=Image.objects.values("image_id"))
        return queryset.filter(Q(instance_id__in=instances.values("instance_id")) | (orphan & in_images))
    scope = _scope(actor, PATH_FIELDS.get(queryset.model, "owner_group__path"))
    if resource_type == Type.HOST and within(actor.path, ROOT_PATH):
        scope |= Q(owner_group__isnull=True)
    if actor.role == Role.USER and resource_type == Type.INSTANCE:
        scope &= Q(assigned_to_id=actor.user_id)
    return queryset.filter(scope)


def _grants(owner_group_id: int) -> dict[str, frozenset[str]]:
    return {row.resource_type: frozenset(action for action in ACTIONS if getattr(row, action))
            for row in OwnerGroupPermission.objects.filter(owner_group_id=owner_group_id)}


def findable(actor: Actor, queryset: QuerySet, action: str) -> QuerySet:
    """The rows a lookup for ``action`` may find: those the actor may read or may do the action to (a group may
    grant, say, delete without read); any other row is "not found"."""
    if action == "read":
        return readable(actor, queryset)
    return readable(actor, queryset) | readable(actor, queryset, action)


def _scope(actor: Actor, path_field: str) -> Q:
    return Q(**{path_field: actor.path}) | Q(**{f"{path_field}__startswith": actor.path + "."})


def _task_owner(task: TaskTransaction) -> str:
    instance = Instance.objects.select_related("owner_group").filter(instance_id=task.instance_id).first()
    if instance is not None:
        return instance.owner_group.path
    image = Image.objects.select_related("owner_group").filter(image_id=task.src_image_id).first()
    return image.owner_group.path if image is not None else ROOT_PATH
