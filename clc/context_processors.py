"""Template context of every page: ``nav``, which links of the navigation bar the person may follow, computed from
the one rule (``clc.services.authz``) when a template first reads it."""

from __future__ import annotations

from django.utils.functional import SimpleLazyObject

from clc.api.authz import actor
from clc.services import authz
from clc.services.enrolment import key_kinds
from clc.services.registry import may_see_status
from clc.services.shares import home_share_url
from luhyadb.choices import ResourceTypeChoices as Type

# Each console link and the resource type a person must be allowed to read to follow it.
LINK_TYPES: dict[str, str] = {
    "images": Type.IMAGE,
    "instances": Type.INSTANCE,
    "pools": Type.POOL,
    "volumes": Type.VOLUME,
    "hosts": Type.HOST,
    "networks": Type.NETWORK,
    "accounts": Type.ACCOUNT,
    "groups": Type.OWNERGROUP,
    "tasks": Type.TASK,
    "vmtypes": Type.VMTYPE,
}


def console_links(person: authz.Actor, user=None) -> dict[str, bool]:
    """``{link: may follow}`` for every console link; ``status`` for who may read servers or PCs, ``keys`` (hosts'
    keys and join tokens) for who manages some hosts' keys, ``instances`` and ``pools`` not for students (their
    desktops are the portal's), ``portal`` (my desktops) and ``account`` (my account) for everyone logged in,
    ``records`` (the Django admin) for superusers."""
    links = {link: authz.may_type(person, "read", resource_type) for link, resource_type in LINK_TYPES.items()}
    links["instances"] = links["instances"] and not authz.uses_portal(person)  # a student's are under My desktops
    links["pools"] = links["pools"] and not authz.uses_portal(person)  # a student gets a desktop there
    links["status"] = may_see_status(person)
    links["keys"] = bool(key_kinds(person))
    logged_in = bool(user is not None and user.is_authenticated)
    links["portal"] = links["account"] = logged_in
    links["records"] = logged_in and user.is_active and user.is_staff and user.is_superuser
    return links


def nav(request) -> dict:
    """``nav`` (the links above) and ``my_files`` (the person's home folder on a storage controller, the portal's
    "My files"; empty when no SC is known), each computed when a template first reads it."""
    user = getattr(request, "user", None)
    return {"nav": SimpleLazyObject(lambda: console_links(actor(request) if user is not None else authz.NOBODY,
                                                          user)),
            "my_files": SimpleLazyObject(lambda: home_share_url(user) or "")}
