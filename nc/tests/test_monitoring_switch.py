"""The live monitoring switch on a node (``instance/monitoring``, issue 17): the CLC switches monitoring of a run
at work and the node's next sweep samples that instance or leaves it out. The switch names its run: one not on
this node yet is retried later, one of an earlier run is stale, and of two switches of one run the later wins
whatever order they come in. Through the node's own command path (``execute_command``), as its worker runs it."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from luhyaapi.bus import RetryLater
from luhyaapi.messages import Command
from nc.drivers.base import VMMetrics
from nc.models import CommandRecord, NodeInstance
from nc.services import instances
from nc.services.commands import execute_command
from nc.services.metrics import InstanceSampler, sample_instances
from tests.commands import RecordingReporter

pytestmark = [pytest.mark.database, pytest.mark.django_db]

INSID = "ins-0000f001"


class RunningDriver:
    """Every instance asked about runs."""

    name = "running"
    capabilities: dict[str, bool] = {}

    def metrics(self, insid: str) -> VMMetrics:
        return VMMetrics(alive=True, cpu_seconds=1.0, memory_bytes=2**28)


@pytest.fixture(autouse=True)
def driver(monkeypatch) -> RunningDriver:
    driver = RunningDriver()
    monkeypatch.setattr(instances, "node_driver", lambda: driver)
    return driver


def running(seq: int = 2, labels: dict | None = None) -> NodeInstance:
    return NodeInstance.objects.create(instance_id=INSID, tid=f"t-{INSID}", seq=seq, state="running",
                                       options={"cpus": 1}, labels=labels or {"image_id": "img-0000000a",
                                                                              "monitoring": True})


def switch(monitoring: bool, run: int = 2, at: int = 1_000, changes: dict | None = None) -> bool:
    command = Command(op="instance/monitoring", paras={"insid": INSID, "run": run, "monitoring": monitoring,
                                                       "at": at} | (changes or {}))
    return execute_command(command, RecordingReporter())


def sampled() -> set[str]:
    return {sample.dimensions["InstanceId"] for sample in sample_instances(InstanceSampler(), clock=lambda: 1.0)}


def labels() -> dict:
    return NodeInstance.objects.get(instance_id=INSID).labels


def test_switched_off_the_next_sweep_leaves_the_instance_out_and_switched_on_again_samples_it():
    running()
    assert sampled() == {INSID}
    assert switch(False, at=1_000)
    assert sampled() == set()
    assert labels()["image_id"] == "img-0000000a", "the run's other labels stay"
    assert switch(True, at=2_000)
    assert sampled() == {INSID}


def test_of_two_switches_of_one_run_the_later_wins_in_whatever_order_they_come():
    running()
    switch(False, at=5_000)
    switch(True, at=4_000)  # sent earlier, delivered later (a retry)
    assert labels()["monitoring"] is False
    assert sampled() == set()


def test_a_switch_of_an_earlier_run_is_stale_as_the_later_run_brought_the_clcs_switch_itself():
    running(seq=3)
    switch(False, run=2)
    assert labels()["monitoring"] is True
    assert sampled() == {INSID}


@pytest.mark.parametrize("seq", [None, 1], ids=["no record", "an earlier run's record"])
def test_a_switch_of_a_run_not_on_this_node_yet_is_retried_later_and_not_recorded_done(seq):
    if seq is not None:
        running(seq=seq)
    with pytest.raises(RetryLater, match="run 2"):
        switch(False, run=2)
    assert CommandRecord.objects.get(op="instance/monitoring").done_at is None, "its redelivery runs it"
    if seq is None:
        running(seq=2)
    else:
        NodeInstance.objects.filter(instance_id=INSID).update(seq=2)
    assert switch(False, run=2)
    assert labels()["monitoring"] is False


@pytest.mark.parametrize("paras, field", [
    ({"monitoring": "off"}, "monitoring"),
    ({"insid": "../ins-0000f001"}, "insid"),
    ({"run": 0}, "run"),
    ({"at": -1}, "at"),
    ({"extra": 1}, "extra"),
])
def test_a_bad_switch_is_refused_naming_the_field_before_anything_is_recorded(paras, field):
    running()
    with pytest.raises(ValidationError, match=field):
        switch(False, changes=paras)
    assert not CommandRecord.objects.exists()
    assert labels()["monitoring"] is True
