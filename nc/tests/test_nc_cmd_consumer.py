"""Who may put commands on a node's queue (``cmd.<node>``, ``luhyaapi.bus_trust``): a CC of the node's cluster, and
the node itself. A command from anyone else (another node, a PC, another cluster's CC, a revoked CC), or one sealed
for another node's queue, is parked with the reason and never runs."""

from __future__ import annotations

from dataclasses import replace

import pytest

from luhyaapi.bus import InProcessBus
from luhyaapi.messages import Command, encode
from luhyaapi.queues import node_commands
from luhyaapi.signing import seal
from luhyaapi.trust import own_key
from luhyadb.choices import KeyStateChoices
from luhyadb.models import HostCredential
from nc.consumers.nc_cmd import NcCommandConsumer
from nc.models import CommandRecord
from tests.consuming import deliver
from tests.keys import enrolled_key

pytestmark = [pytest.mark.database, pytest.mark.django_db]

QUEUE = node_commands("nc-1")


class Reporter:
    def __init__(self) -> None:
        self.reports: list[str] = []

    def report_now(self, last_command: str = "") -> None:
        self.reports.append(last_command)


@pytest.fixture
def node(settings):
    """This host as node controller nc-1 of cluster1, and the hosts around it."""
    settings.EDUCLOUD = replace(settings.EDUCLOUD, name="nc-1", roles=("nc",), cluster="cluster1")
    return {"cc-1": enrolled_key("cc-1", "cc"), "cc-2": enrolled_key("cc-2", "cc", cluster="cluster2"),
            "nc-2": enrolled_key("nc-2"), "pc-12": enrolled_key("pc-12", "pc", mac="52:54:00:3c:0f:12"),
            "nc-1": own_key()}


def run(sent: list[tuple]):
    """Put each (message body) on the node's queue and run its consumer; what ran, and what was parked."""
    bus = InProcessBus()
    for body in sent:
        bus.publish_raw(QUEUE, body)
    reporter = Reporter()
    done = deliver(bus, QUEUE, NcCommandConsumer(reporter).consume, len(sent))
    return reporter.reports, done


def sealed(key, command: Command, queue: str = QUEUE) -> bytes:
    return seal(key, queue, encode(command))


def test_commands_from_the_clusters_cc_and_from_the_node_itself_run(node):
    from_cc, from_itself = Command(op="status/report"), Command(op="status/report")
    ran, done = run([sealed(node["cc-1"], from_cc), sealed(node["nc-1"], from_itself)])
    assert (ran, done.reasons) == ([from_cc.msg_id, from_itself.msg_id], [])


@pytest.mark.parametrize("sender, reason", [
    ("nc-2", "nc-2 may not command nc-1: only its cluster's CC and the node itself may"),
    ("pc-12", "pc-12 may not command nc-1: only its cluster's CC and the node itself may"),
    ("cc-2", "cc-2 controls cluster cluster2, not this node's cluster cluster1"),
])
def test_a_command_from_another_host_is_parked_and_never_runs(node, sender, reason):
    ran, done = run([sealed(node[sender], Command(op="status/report"))])
    assert (ran, done.reasons) == ([], [f"refused: {reason}"])
    assert not CommandRecord.objects.exists()


def test_a_command_of_a_revoked_cc_or_sealed_for_another_node_is_parked(node):
    moved = sealed(node["cc-1"], Command(op="status/report"), queue=node_commands("nc-2"))
    HostCredential.objects.filter(name="cc-2").update(state=KeyStateChoices.REVOKED, cluster="cluster1")
    ran, done = run([moved, sealed(node["cc-2"], Command(op="status/report"))])
    assert ran == []
    assert done.reasons == [f"refused: wrong signature: not sealed by cc-1 for {QUEUE}",
                            "refused: cc-2 is not a trusted host of this cloud (unknown, or its key was revoked)"]
