"""Who may call each URL of this part of issue 17's API: entries of ``url_expectations.EXPECTATIONS`` kept in a
module of their own (merged into it at the end of that module), using its probes.

The metric API (helper B). The watch role's: hosts of every role (signed) and the Django administrator; its
Prometheus text endpoint takes a bearer token, off (404) where ``watch.prometheus_token`` is empty as here, and
refuses signed calls. The CLC's, for people: an instance's metrics by reading that instance (404 where the person may
not read it), an owner-group's by reading its instances, host and cluster metrics by reading servers (the cloud's
administrators). Where the rule lets a person in, the answer here is the 503 of no watch host online: not a refusal.
"""

from __future__ import annotations

from urllib.parse import urlencode

from luhyaapi.config import ROLES
from tests.authz_rule import expected
from tests.integration.url_expectations import (
    Call,
    Expect,
    _instances,
    _p,
    both,
    everyone_404,
    of_type,
    on_records,
    staff_or_signed,
)

WATCH = "/watch/api/1.0"
API = "/clc/api/1.0"
HOSTS = frozenset(ROLES)
STATISTICS = {"namespace": "eduCloud/Instance", "name": "CPUUtilization", "start": 1_767_225_600,
              "end": 1_767_229_200, "period": 300, "statistics": "Average"}


def _query(endpoint: str, dimensions: str = "", **params) -> str:
    asked = (STATISTICS if endpoint == "metrics/statistics/" else {}) | params
    return f"{API}/{endpoint}?{urlencode(asked | ({'dimensions': dimensions} if dimensions else {}))}"


def _people_metrics(endpoint: str):
    """An instance's metrics (the rule on each instance), each owner-group's (reading instances there), and the
    hosts' (reading servers)."""

    def by_group(world, person):
        for path in world.paths:
            yield Call("GET", _query(endpoint, f"OwnerGroup={path}"), expected(person, "read", "instance", path))

    return both(on_records("instance", "read", "GET", _p(_query(endpoint, "InstanceId=") + "{0.instance_id}"),
                           _instances),
                by_group,
                of_type("server", "read", "GET", _query(endpoint, "Cluster=cluster1", namespace="eduCloud/Host")))


def _watch(method: str, path: str, body: dict | None = None) -> Expect:
    return Expect(staff_or_signed(method, path, body), HOSTS, lambda world: (method, path, body))


EXPECTATIONS: dict = {
    "watch-api:metric-list": _watch("GET", f"{WATCH}/metrics/"),
    "watch-api:statistics": _watch("GET", f"{WATCH}/statistics/?{urlencode(STATISTICS)}"),
    "watch-api:metric-data": _watch("POST", f"{WATCH}/metric-data/", {}),
    "watch-api:prometheus": Expect(everyone_404("GET", f"{WATCH}/prometheus")),
    "clc-api:metric-list": Expect(_people_metrics("metrics/")),
    "clc-api:metric-statistics": Expect(_people_metrics("metrics/statistics/")),
}
