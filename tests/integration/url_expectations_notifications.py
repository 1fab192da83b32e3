"""Who may call each URL of this part of issue 17's API: entries of ``url_expectations.EXPECTATIONS`` kept in a
module of their own (merged into it at the end of that module), using its probes.

The watch's alarm actions are for signed watch hosts only. A notification is seen by whoever may read instances of
its owner-group (a student: only their own desktop's, ``clc.services.notifications``), which is the rule on type
``instance`` for the notification's instance: the world gets one notification per instance and one of the root."""

from __future__ import annotations

from django.utils import timezone

from luhyadb.models import Instance, Notification
from tests.authz_rule import ROOT, expected, rule, type_rule
from tests.integration.url_expectations import ANON, API, Call, Expect, _who, of_type, people_only_signed

WATCH = frozenset({"watch"})


def _notifications(world) -> list[tuple[Notification, str, str | None]]:
    """The world's notifications (made on first use) with each one's owner path and assignee, as the rule sees
    them: an instance's owner-group and person, the root's for the one without an instance."""
    rows = []
    for instance in world.instances:
        if not Instance.objects.filter(pk=instance.pk).exists():
            continue  # removed by an earlier call
        note, _ = Notification.objects.get_or_create(
            event_key=f"authz-{instance.instance_id}",
            defaults={"time": instance.created, "title": f"alarm on {instance.instance_id}",
                      "instance_id": instance.instance_id, "owner_group": instance.owner_group.path})
        rows.append((note, *world.owner(instance)))
    note, _ = Notification.objects.get_or_create(event_key="authz-root", defaults={
        "time": timezone.now(), "title": "disk full", "owner_group": ROOT})
    return rows + [(note, ROOT, None)]


def notification_rows(world, person):
    if person is None or not type_rule(person, "read", "instance"):
        return [Call("GET", f"{API}/notifications/?limit=500", _who(person, False))]
    shown = {str(note.pk) for note, owner, assignee in _notifications(world)
             if rule(person, "read", "instance", owner, assignee)}
    return [Call("GET", f"{API}/notifications/?limit=500", 200, rows=("id", shown))]


def notification_read(path: str, page: bool = False):
    def probe(world, person):
        for note, owner, assignee in _notifications(world):
            status = ANON if person is None else expected(person, "read", "instance", owner, assignee)
            yield Call("POST", path.format(note.pk), status, page=page)

    return probe


EXPECTATIONS: dict = {
    "clc-api:alarm-actions": Expect(people_only_signed("POST", f"{API}/alarm-actions/", {}), WATCH,
                                    lambda world: ("POST", f"{API}/alarm-actions/", {})),
    "clc-api:notification-list": Expect(notification_rows),
    "clc-api:notification-read": Expect(notification_read(API + "/notifications/{0}/read/")),
    "clc:notifications": Expect(of_type("instance", "read", "GET", "/clc/notifications/", page=True)),
    "clc:notifications-read": Expect(of_type("instance", "read", "POST", "/clc/notifications/read/", page=True)),
    "clc:notification-read": Expect(notification_read("/clc/notifications/{0}/read/", page=True)),
}
