"""Metric queries of people (issue 17): who may ask for which series, by the owner-group rule, and the query
forwarded, signed, to an online watch host. Nothing is cached: each answer is the watch's of the moment.

A query names what the person may read through its dimensions (a filter: every series it reaches has them):
- ``InstanceId=<id>``: reading that instance (``authz``: a teacher their school's, a student the desktops assigned
  to them). An unknown instance and one they may not read are the same 404, so the answer says nothing of other
  branches' instances;
- else ``OwnerGroup=<path>``: reading the instances of that owner-group (the series of its instances: a student,
  who reads only the desktops assigned to them, may not);
- else (host and cluster dimensions, or none at all): the administrators of the whole cloud, who may read its
  servers (``authz``' root-only type ``server``); anyone else a 403 saying to name an instance or owner-group.
"""

from __future__ import annotations

from urllib.parse import urlencode

from clc.services import authz
from clc.services.watch import WatchUnavailable, watch_client
from luhyaapi.client import RemoteError
from luhyaapi.metric_params import query_text
from luhyadb.choices import ResourceTypeChoices as Type
from luhyadb.models import Instance

WATCH_API = "/watch/api/1.0"


class MetricQueryError(Exception):
    """The watch did not answer the query: ``status`` and ``body`` are the CLC's answer (the watch's own 400 with
    its body, 503 when no watch host is online, 502 when it could not be reached or failed)."""

    def __init__(self, status: int, body: dict) -> None:
        super().__init__(body.get("detail", str(body)))
        self.status = status
        self.body = body


def require_metric_read(actor: authz.Actor, dimensions: dict[str, str | None]) -> None:
    """Raise ``authz.Denied`` (403 or 404) unless the person may read the series the dimensions reach (the module's
    rule)."""
    instance_id = dimensions.get("InstanceId")
    if instance_id is not None:
        instance = Instance.objects.select_related("owner_group").filter(instance_id=instance_id).first()
        if instance is None or not authz.may(actor, "read", instance):
            authz.require_type(actor, "read", Type.INSTANCE)
            raise authz.Denied(f"no instance {instance_id} that you may read", status=404)
        return
    owner = dimensions.get("OwnerGroup")
    if owner is not None:
        if not authz.allows(actor, "read", Type.INSTANCE, owner):
            authz.require_type(actor, "read", Type.INSTANCE)
            raise authz.Denied(f"no owner-group {owner} whose instances you may read", status=404)
        return
    if not authz.may_type(actor, "read", Type.SERVER):
        raise authz.Denied("metrics of hosts, clusters and the whole cloud are for its administrators: name the "
                           "instance (InstanceId=...) or owner-group (OwnerGroup=...) in dimensions")


def query_watch(endpoint: str, query: dict) -> dict:
    """The watch's answer to ``GET <endpoint>`` (``metrics/`` or ``statistics/``) with the validated query
    (``luhyaapi.metric_params``), asked signed of the online watch host heard from last. Raises MetricQueryError."""
    try:
        client = watch_client()
    except WatchUnavailable as exc:
        raise MetricQueryError(503, {"detail": str(exc)}) from None
    try:
        return client.get(f"{WATCH_API}/{endpoint}?{urlencode(query_text(query))}")
    except RemoteError as exc:
        if exc.status == 400 and exc.body:
            raise MetricQueryError(400, exc.body) from None
        raise MetricQueryError(502, {"detail": f"the watch host did not answer the query: {exc}"}) from None
