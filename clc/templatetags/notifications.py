"""Template tags of the console's notifications (issue 17): the link with the unread count in the bar of every page,
and an instance page's "What happened" list. Tags, not the pages' views, so that every page gets the count and the
instance page its list without each view asking (``clc.services.notifications`` decides who sees what)."""

from __future__ import annotations

from django import template

from clc.api.authz import actor
from clc.services import authz
from clc.services.notifications import instance_notifications, unread_count
from luhyadb.choices import ResourceTypeChoices as Type

register = template.Library()


@register.inclusion_tag("clc/notifications_link.html", takes_context=True)
def notifications_link(context) -> dict:
    """The bar's Notifications link, with the count of unread ones, for people who may read instances."""
    request = context.get("request")
    person = actor(request) if request is not None else authz.NOBODY
    if not authz.may_type(person, "read", Type.INSTANCE) or authz.uses_portal(person):
        return {"show": False}
    return {"show": True, "unread": unread_count(person)}


@register.inclusion_tag("clc/notifications_instance.html", takes_context=True)
def instance_happenings(context, instance) -> dict:
    """The instance's newest notifications the person may see: what alarms and the guest watchdog did to it."""
    request = context.get("request")
    person = actor(request) if request is not None else authz.NOBODY
    return {"rows": instance_notifications(person, instance), "instance": instance}
