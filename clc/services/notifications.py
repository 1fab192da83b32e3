"""Notifications for people (issue 17): what an alarm said or made the cloud do, kept as ``Notification`` records
and shown on the console (its Notifications page, the unread count in its bar, an instance's "What happened").

Who sees one is the owner-group rule for reading instances (``clc.services.authz``) applied to the notification's
owner-group: whoever may read instances of that group sees it; a person of role user (a student), who reads only the
desktops assigned to them, sees only the notifications of those desktops. A notification with no instance belongs to
the root's owner-group: the cloud's administrators."""

from __future__ import annotations

from django.db.models import QuerySet
from django.utils import timezone

from clc.services import authz
from luhyadb.choices import ResourceTypeChoices as Type
from luhyadb.models import Instance, Notification, NotificationLevelChoices

# How many of an instance's notifications its page lists (the newest).
INSTANCE_PAGE_ROWS = 20


class NotificationNotFound(Exception):
    """No notification of that id that the person may see."""


def notify(*, title: str, message: str = "", level: str = NotificationLevelChoices.INFO,
           instance: Instance | None = None, instance_id: str = "", owner_group: str = "", alarm: str = "",
           action: str = "", event_key: str | None = None) -> Notification:
    """Record a notification. Its owner-group (who sees it) is the instance's, else ``owner_group``, else the
    root's (the cloud's administrators). IntegrityError when ``event_key`` is taken (an event recorded already)."""
    if instance is not None:
        instance_id, owner_group = instance.instance_id, instance.owner_group.path
    return Notification.objects.create(time=timezone.now(), level=level, title=title[:200], message=message,
                                       instance_id=instance_id, owner_group=owner_group or authz.ROOT_PATH,
                                       alarm=alarm, action=action, event_key=event_key)


def visible_notifications(actor: authz.Actor) -> QuerySet:
    """The notifications the actor may see (the rule in this module's docstring), unread first, newest first."""
    if not authz.may_type(actor, "read", Type.INSTANCE):
        return Notification.objects.none()
    if authz.uses_portal(actor):
        desktops = authz.readable(actor, Instance.objects.all()).values("instance_id")
        return Notification.objects.filter(instance_id__in=desktops)
    if actor.path == authz.ROOT_PATH:
        return Notification.objects.all()
    return Notification.objects.filter(owner_group__in=authz.groups_within(actor).values("path"))


def unread_count(actor: authz.Actor) -> int:
    return visible_notifications(actor).filter(read=False).count()


def instance_notifications(actor: authz.Actor, instance: Instance) -> list[Notification]:
    """The newest ``INSTANCE_PAGE_ROWS`` notifications of the instance that the actor may see, newest first."""
    rows = visible_notifications(actor).filter(instance_id=instance.instance_id).order_by("-time", "-pk")
    return list(rows[:INSTANCE_PAGE_ROWS])


def mark_read(actor: authz.Actor, pk: int | str) -> Notification:
    """Mark one notification read (for everyone who sees it: it is one record of the cloud, not a per-person inbox).
    NotificationNotFound unless the actor may see it (a ``pk`` that is no record's number included)."""
    if not str(pk).isdigit() or len(str(pk)) > 18:
        raise NotificationNotFound(f"no notification {str(pk)[:40]}")
    notification = visible_notifications(actor).filter(pk=int(pk)).first()
    if notification is None:
        raise NotificationNotFound(f"no notification {pk}")
    if not notification.read:
        Notification.objects.filter(pk=pk).update(read=True)
        notification.read = True
    return notification


def mark_all_read(actor: authz.Actor) -> int:
    """Mark every notification the actor sees read; returns how many were unread."""
    return visible_notifications(actor).filter(read=False).update(read=True)
