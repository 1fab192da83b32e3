"""The CLC's way to the watch role (issue 17): a signed client of an online watch host, for the metric queries and
the alarms the console and the CLC's API show people after the owner-group rule let them."""

from __future__ import annotations

from clc.services.commands import online_servers
from luhyaapi.client import RoleClient
from luhyaapi.trust import own_key
from luhyadb.choices import RoleChoices


class WatchUnavailable(Exception):
    """No watch host is online to ask (the API answers 503 naming it)."""


def watch_client() -> RoleClient:
    """A signed client of the online watch host heard from most recently; ``WatchUnavailable`` if there is none."""
    server = online_servers(RoleChoices.WATCH).order_by("-last_seen", "name").first()
    if server is None:
        raise WatchUnavailable("no watch host is online: metrics and alarms are not available now")
    return RoleClient(server.api_url, own_key())
