"""Who may call each URL of this part of issue 17's API: entries of ``url_expectations.EXPECTATIONS`` kept in a
module of their own (merged into it at the end of that module), using its probes.

The console's Monitoring page (helper D): who may read instances opens it (a student is sent to the portal, which
is not a refusal); its host charts (``?host=<name>``) are for who may read servers, as the metrics API rules host
metrics."""

from __future__ import annotations

from tests.authz_rule import type_rule
from tests.integration.url_expectations import ANON, Call, Expect, both, of_type


def _host_charts(world, person):
    for server in world.servers:
        if not type(server).objects.filter(pk=server.pk).exists():
            continue  # forgotten by an earlier call
        if person is None:
            status = ANON
        elif not type_rule(person, "read", "instance"):
            status = 403
        elif person.role == "user":
            status = 200  # a student is sent to their desktops, asking for a host or not: no refusal, nothing shown
        else:
            status = 200 if type_rule(person, "read", "server") else 403
        yield Call("GET", f"/clc/monitoring/?host={server.name}", status, page=True)


EXPECTATIONS: dict = {
    "clc:monitoring": Expect(both(of_type("instance", "read", "GET", "/clc/monitoring/", page=True), _host_charts)),
}
