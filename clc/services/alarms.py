"""Alarms of people (issue 17): who may see and change which alarm, by the owner-group rule, and the calls forwarded,
signed, to the watch role's alarms API (``/watch/api/1.0/alarms/``), which keeps them and checks each field.

An alarm is ruled by what its dimensions name, as a metric query is (``clc.services.metrics``):
- ``InstanceId=<id>``: reading the instance to see the alarm, writing it to make, change or delete one. An unknown
  instance and one the person may not read are the same 404, so nothing is said of other branches' instances;
- else ``OwnerGroup=<path>``: reading, or writing, instances of that owner-group;
- else (host and cluster dimensions, none at all, or an instance the cloud no longer has): the administrators of the
  whole cloud (``authz``' root-only type ``server``: read to see, write to change).
The guest watchdog's built-in alarms are seen as their instance's alarms and changed by the cloud's administrators
only. The CLC files each alarm under an owner-group path (``owner_group``: the instance's, the dimension's, or the
root's), so that the watch can later filter by it; the list is filtered here, a row at a time, from all the watch's.
"""

from __future__ import annotations

import re
from urllib.parse import quote, urlencode

from clc.services import authz
from clc.services.watch import WatchUnavailable, watch_client
from luhyaapi.client import RemoteError, RoleClient
from luhyadb.choices import ResourceTypeChoices as Type
from luhyadb.models import Instance

ALARMS_PATH = "/watch/api/1.0/alarms/"
# The form of a name that may go into the watch's URL (the watch checks the rest of what it takes).
ALARM_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,127}$")
# The watch's pages are read whole for a person's list: this many alarms per call.
WATCH_PAGE = 1000


class AlarmCallError(Exception):
    """The watch did not do what was asked: ``status`` and ``body`` are the CLC's answer (the watch's own 400 or
    404 with its body, 503 when no watch host is online, 502 when it could not be reached or failed)."""

    def __init__(self, status: int, body: dict) -> None:
        super().__init__(body.get("detail", str(body)))
        self.status = status
        self.body = body


def _cloud_admin(actor: authz.Actor, action: str) -> bool:
    return authz.may_type(actor, action, Type.SERVER)


def _instance(instance_id: str) -> Instance | None:
    return Instance.objects.select_related("owner_group").filter(instance_id=instance_id).first()


def may_alarm(actor: authz.Actor, action: str, alarm: dict) -> bool:
    """Whether the person may ``action`` ("read" or "write") the alarm (a row of the watch's API)."""
    dimensions = alarm.get("dimensions") or {}
    if alarm.get("builtin") and action != "read":
        return _cloud_admin(actor, "write")
    instance_id = dimensions.get("InstanceId")
    if instance_id is not None:
        instance = _instance(instance_id)
        if instance is not None:
            return authz.may(actor, action, instance)
    elif dimensions.get("OwnerGroup") is not None:
        return authz.allows(actor, action, Type.INSTANCE, dimensions["OwnerGroup"])
    return _cloud_admin(actor, action)


def require_alarm(actor: authz.Actor, action: str, alarm: dict) -> None:
    """Raise ``authz.Denied`` unless the person may ``action`` the alarm: 404 when they may not even see it (its
    existence is not revealed), else 403."""
    if may_alarm(actor, action, alarm):
        return
    if action != "read" and may_alarm(actor, "read", alarm):
        raise authz.Denied(f"you may see alarm {alarm['name']} but not change it")
    raise authz.Denied(f"no alarm {alarm.get('name', '')} that you may see", status=404)


def owner_for_new(actor: authz.Actor, dimensions: dict) -> str:
    """The owner-group path of an alarm the person makes with these dimensions, if they may make it; else
    ``authz.Denied``: 404 for an instance they may not read (or that does not exist), 403 for one they may read
    only, and for alarms that only the cloud's administrators make."""
    if not isinstance(dimensions, dict):
        dimensions = {}
    instance_id = dimensions.get("InstanceId")
    if instance_id is not None:
        instance = _instance(str(instance_id))
        try:
            if instance is None:
                authz.require_type(actor, "write", Type.INSTANCE)
                raise authz.Denied("no such instance", status=404)
            authz.require(actor, "write", instance)
        except authz.Denied as denied:
            if denied.status == 404:
                raise authz.Denied(f"no instance {instance_id} that you may read", status=404) from None
            raise authz.Denied(f"you may not change instance {instance_id}, so you may not set alarms on it: "
                               f"{denied}") from None
        return instance.owner_group.path
    owner = dimensions.get("OwnerGroup")
    if owner is not None:
        if not authz.allows(actor, "write", Type.INSTANCE, str(owner)):
            raise authz.Denied(f"you may not change the instances of owner-group {owner}, so you may not set alarms "
                               "on them")
        return str(owner)
    if not _cloud_admin(actor, "write"):
        raise authz.Denied("alarms on hosts, clusters and the whole cloud are for its administrators: name the "
                           "instance (InstanceId) or owner-group (OwnerGroup) in dimensions")
    return authz.ROOT_PATH


def readable_alarms(actor: authz.Actor, alarms: list[dict]) -> list[dict]:
    """The alarms the person may see, in their order (the instances looked up at once, not one by one)."""
    instance_ids = {str(alarm["dimensions"]["InstanceId"]) for alarm in alarms
                    if "InstanceId" in (alarm.get("dimensions") or {})}
    instances = Instance.objects.filter(instance_id__in=instance_ids)
    known = set(instances.values_list("instance_id", flat=True))
    readable = set(authz.readable(actor, instances).values_list("instance_id", flat=True))
    admin = _cloud_admin(actor, "read")
    shown = []
    for alarm in alarms:
        dimensions = alarm.get("dimensions") or {}
        if "InstanceId" in dimensions and dimensions["InstanceId"] in known:
            allowed = dimensions["InstanceId"] in readable
        elif "InstanceId" not in dimensions and "OwnerGroup" in dimensions:
            allowed = authz.allows(actor, "read", Type.INSTANCE, dimensions["OwnerGroup"])
        else:
            allowed = admin
        if allowed:
            shown.append(alarm)
    return shown


def _client() -> RoleClient:
    try:
        return watch_client()
    except WatchUnavailable as exc:
        raise AlarmCallError(503, {"detail": str(exc)}) from None


def _call(method: str, path: str, payload: dict | None = None) -> dict:
    client = _client()
    try:
        return client.request(method, path, payload)
    except RemoteError as exc:
        if exc.status in (400, 404) and exc.body:
            raise AlarmCallError(exc.status, exc.body) from None
        raise AlarmCallError(502, {"detail": f"the watch host did not do it: {exc}"}) from None


def alarm_path(name: str) -> str:
    """The watch's URL of the alarm; ``AlarmCallError`` 400 naming ``name`` for a name no alarm can have."""
    if not ALARM_NAME.match(name):
        raise AlarmCallError(400, {"name": [f"{name[:130]!r} is not an alarm name (lowercase letters, digits, _ "
                                            "and -)"]})
    return f"{ALARMS_PATH}{quote(name)}/"


def all_alarms() -> list[dict]:
    """Every alarm the watch has, sorted by name (its pages read to the end)."""
    found: list[dict] = []
    while True:
        page = _call("GET", f"{ALARMS_PATH}?{urlencode({'limit': WATCH_PAGE, 'offset': len(found)})}")
        found.extend(page.get("results", []))
        if not page.get("next") or not page.get("results"):
            return found


def get_alarm(name: str) -> dict:
    return _call("GET", alarm_path(name))


def create_alarm(body: dict) -> dict:
    return _call("POST", ALARMS_PATH, body)


def update_alarm(name: str, body: dict, *, partial: bool) -> dict:
    return _call("PATCH" if partial else "PUT", alarm_path(name), body)


def delete_alarm(name: str) -> None:
    _call("DELETE", alarm_path(name))


def alarm_history(name: str, limit: int, offset: int) -> dict:
    return _call("GET", f"{alarm_path(name)}history/?{urlencode({'limit': limit, 'offset': offset})}")
