"""Who may call each URL of this part of issue 17's API: entries of ``url_expectations.EXPECTATIONS`` kept in a
module of their own (merged into it at the end of that module), using its probes.

The watch's alarms API takes the CLC's signed calls and the Django administrator. The CLC's takes people with an
account, each alarm ruled by its instance or owner-group (clc.services.alarms, proven by clc/tests/test_alarms_api.py
with a watch online); this world has no watch host online, so everyone logged in gets past the rule's first step
(an account) to the 503 saying so, and nobody logged in gets 401; making one asks the rule on its instance first."""

from __future__ import annotations

from tests.integration.url_expectations import ANON, Call, Expect, both, on_records, staff_or_signed

WATCH_API = "/watch/api/1.0/alarms/"
CLC_API = "/clc/api/1.0/alarms/"
CLC = frozenset({"clc"})
ALARM = {"name": "busy", "namespace": "eduCloud/Instance", "metric": "CPUUtilization",
         "dimensions": {"InstanceId": "ins-0000abcd"}, "statistic": "Average", "comparison": "GreaterThanThreshold",
         "threshold": 90, "period": 300, "evaluation_periods": 2, "actions": ["notify"]}


def people(*calls: tuple[str, str, dict | None]):
    """Anyone logged in (every person of the world has an account) is let past the rule's first step; nobody
    logged in is 401."""
    return lambda world, person: [Call(method, path, ANON if person is None else 200, body)
                                  for method, path, body in calls]


EXPECTATIONS: dict = {
    "watch-api:alarm-list": Expect(staff_or_signed("POST", WATCH_API, {}), CLC,
                                   lambda world: ("GET", WATCH_API, None)),
    "watch-api:alarm-detail": Expect(staff_or_signed("GET", WATCH_API + "busy/"), CLC,
                                     lambda world: ("GET", WATCH_API + "busy/", None)),
    "watch-api:alarm-history": Expect(staff_or_signed("GET", WATCH_API + "busy/history/"), CLC,
                                      lambda world: ("GET", WATCH_API + "busy/history/", None)),
    # Making an alarm on an instance is writing the instance (404 for one the person may not read).
    "clc-api:alarm-list": Expect(both(
        people(("GET", CLC_API, None)),
        on_records("instance", "write", "POST", lambda instance: CLC_API, lambda world: world.instances,
                   lambda instance: ALARM | {"dimensions": {"InstanceId": instance.instance_id}}))),
    "clc-api:alarm-detail": Expect(people(("GET", CLC_API + "busy/", None), ("PUT", CLC_API + "busy/", ALARM),
                                          ("DELETE", CLC_API + "busy/", None))),
    "clc-api:alarm-history": Expect(people(("GET", CLC_API + "busy/history/", None))),
}
