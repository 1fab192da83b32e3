"""Queue names: made in one module, and read back there for the policy of each (``luhyaapi.bus_trust``)."""

import pytest

from luhyaapi.bus_trust import POLICIES, policy_for
from luhyaapi.queues import (
    CC_STATUS_PREFIX,
    CLC_STATUS,
    NODE_COMMANDS_PREFIX,
    WATCH_METRICS,
    cc_status,
    kind_of,
    node_commands,
)


def test_every_queue_educloud_makes_is_known_with_its_subject_and_has_a_policy():
    assert kind_of(CLC_STATUS) == (CLC_STATUS, "")
    assert kind_of(cc_status("lab-2")) == (CC_STATUS_PREFIX, "lab-2")
    assert kind_of(node_commands("nc-7")) == (NODE_COMMANDS_PREFIX, "nc-7")
    assert kind_of(WATCH_METRICS) == (WATCH_METRICS, "")
    assert POLICIES.keys() == {CLC_STATUS, CC_STATUS_PREFIX, NODE_COMMANDS_PREFIX, WATCH_METRICS}
    assert policy_for(node_commands("nc-7")) is POLICIES[NODE_COMMANDS_PREFIX]


@pytest.mark.parametrize("queue", ["cmd.nc-7.dead", "cc.status.", "cmd.NC-7", "clc.status.dead", "test.abc", ""])
def test_any_other_name_has_no_policy(queue):
    with pytest.raises(ValueError, match="is not a queue of eduCloud"):
        policy_for(queue)
