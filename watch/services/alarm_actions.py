"""Telling the CLC what an alarm that entered ALARM asks of it (notify, stop, reboot, the guest watchdog):
``POST /clc/api/1.0/alarm-actions/`` signed with this host's key, to the CLC at ``cloud.clc_url``."""

from __future__ import annotations

from django.conf import settings

from luhyaapi.client import RemoteError, RoleClient
from luhyaapi.trust import own_key

ACTIONS_PATH = "/clc/api/1.0/alarm-actions/"
TIMEOUT_SECONDS = 10.0


# Answers that say the post itself is wrong (a malformed field, an instance the CLC does not have): posting it again
# would get the same answer.
REFUSALS = frozenset({400, 404, 409, 422})


class ActionNotDelivered(RuntimeError):
    """The CLC did not take the action (unreachable, or it answered with an error); the message says which.
    ``refused``: the CLC answered that the post itself is wrong (``REFUSALS``), so it is not worth posting again."""

    def __init__(self, message: str, refused: bool = False) -> None:
        super().__init__(message)
        self.refused = refused


def post_action(payload: dict) -> None:
    """Deliver one action post (``{"alarm", "action", "instance_id", "reason", "state", "datapoints", "time",
    "owner_group"}``);
    ``ActionNotDelivered`` unless the CLC answers 2xx. A post whose answer was lost counts as not delivered and is
    sent again, so the CLC may see one action twice (the same alarm, action and time)."""
    clc_url = settings.EDUCLOUD.clc_url
    if not clc_url:
        raise ActionNotDelivered("no CLC to tell: cloud.clc_url is not set on this watch host")
    try:
        RoleClient(clc_url, own_key(), timeout=TIMEOUT_SECONDS).post(ACTIONS_PATH, payload)
    except RemoteError as exc:
        if exc.status in REFUSALS:
            raise ActionNotDelivered(f"the CLC refused it: {exc.status}: {exc.detail}", refused=True) from exc
        raise ActionNotDelivered(f"the CLC did not take it: {exc}") from exc
