"""A node's samples of its instances (nc.services.metrics, issue 17): CPU % of the instance's vCPUs from the CPU
seconds between two readings (clamped to 0..100), byte counters as the increase since the previous reading (0 when
a counter went back: the VM started again), the first reading of an instance giving only memory and ``Alive``, a VM
that should run but does not giving ``Alive`` 0, and a forgotten instance starting over. The sweep over the node's
records samples started instances only, through a recording driver (no hypervisor: the drivers' own counters are
proved by their contract tests), respects the monitoring switch and skips one instance its driver fails on."""

from __future__ import annotations

import pytest
from django.conf import settings

from luhyaapi.messages import MetricsReport, decode, encode
from luhyaapi.metrics import INSTANCE_METRICS, INSTANCE_NAMESPACE, MAX_SAMPLES, MetricSample
from nc.drivers.base import DriverError, VMMetrics, VMNotFound
from nc.models import NodeInstance
from nc.services import instances
from nc.services.kiosk import TID_PREFIX as KIOSK_TID_PREFIX
from nc.services.metrics import (
    NO_LABELS,
    InstanceLabels,
    InstanceSampler,
    SampledInstance,
    metrics_reports,
    sample_instances,
)

INSID = "ins-0000e001"
OTHER = "ins-0000e002"
GiB = 2**30


def vm(cpu: float = 0.0, memory: int = GiB, read: int | None = 0, write: int | None = 0, rx: int = 0, tx: int = 0,
       alive: bool = True, read_ops: int | None = None, write_ops: int | None = None) -> VMMetrics:
    return VMMetrics(alive=alive, cpu_seconds=cpu, memory_bytes=memory, disk_read_bytes=read, disk_write_bytes=write,
                     net_rx_bytes=rx, net_tx_bytes=tx, disk_read_ops=read_ops, disk_write_ops=write_ops)


def target(vcpus: int = 1, insid: str = INSID, labels: InstanceLabels = NO_LABELS) -> SampledInstance:
    return SampledInstance(insid, vcpus, "nc-1", "c1", labels)


def values(samples: list[MetricSample]) -> dict[str, float]:
    names = [sample.name for sample in samples]
    assert len(names) == len(set(names)), f"a metric sent twice in one reading: {names}"
    return {sample.name: sample.value for sample in samples}


@pytest.mark.parametrize("vcpus, cpu_before, cpu_after, seconds, percent", [
    (1, 100.0, 130.0, 60.0, 50.0),     # 30 CPU seconds in 60 s of one vCPU
    (2, 100.0, 130.0, 60.0, 25.0),     # the same of two vCPUs
    (4, 0.0, 240.0, 60.0, 100.0),      # every vCPU busy
    (1, 0.0, 90.0, 60.0, 100.0),       # more than the vCPUs could (a late reading's time): clamped to 100
    (1, 500.0, 10.0, 60.0, 0.0),       # CPU seconds went back (the VM started again): clamped to 0
    (1, 100.0, 100.0, 60.0, 0.0),      # idle
])
def test_cpu_utilization_is_the_cpu_seconds_between_readings_per_second_and_vcpu(vcpus, cpu_before, cpu_after,
                                                                                 seconds, percent):
    sampler = InstanceSampler()
    sampler.sample(target(vcpus), vm(cpu=cpu_before), 1000.0)
    after = values(sampler.sample(target(vcpus), vm(cpu=cpu_after), 1000.0 + seconds))
    assert after["CPUUtilization"] == pytest.approx(percent)


def test_the_first_reading_sends_memory_and_alive_only_as_its_counters_span_the_whole_run():
    samples = InstanceSampler().sample(target(), vm(cpu=5000.0, memory=3 * GiB, read=10**9, write=10**9,
                                                    rx=10**8, tx=10**8), 1000.0)
    assert values(samples) == {"MemoryUsed": 3 * GiB, "Alive": 1}
    for sample in samples:
        assert sample.namespace == INSTANCE_NAMESPACE
        assert sample.unit == INSTANCE_METRICS[sample.name]
        assert sample.timestamp == 1000.0
        assert sample.dimensions == {"InstanceId": INSID, "NodeName": "nc-1", "Cluster": "c1"}


def test_the_next_readings_send_each_counters_increase_and_the_memory_as_read():
    sampler = InstanceSampler()
    sampler.sample(target(), vm(cpu=10, read=1000, write=2000, rx=300, tx=400), 1000.0)
    second = values(sampler.sample(target(), vm(cpu=40, memory=2 * GiB, read=1500, write=2000, rx=900, tx=410),
                                   1060.0))
    assert second == {"MemoryUsed": 2 * GiB, "Alive": 1, "CPUUtilization": pytest.approx(50.0),
                      "DiskReadBytes": 500, "DiskWriteBytes": 0, "NetworkIn": 600, "NetworkOut": 10}
    third = values(sampler.sample(target(), vm(cpu=46, read=1600, write=2100, rx=900, tx=500), 1120.0))
    assert (third["DiskReadBytes"], third["DiskWriteBytes"], third["NetworkIn"], third["NetworkOut"]) == (
        100, 100, 0, 90)
    assert third["CPUUtilization"] == pytest.approx(10.0)


def test_disk_operations_are_sent_as_their_increase_by_a_driver_that_counts_them():
    sampler = InstanceSampler()
    sampler.sample(target(), vm(read_ops=100, write_ops=7), 1000.0)
    second = values(sampler.sample(target(), vm(read_ops=160, write_ops=7), 1060.0))
    assert (second["DiskReadOps"], second["DiskWriteOps"]) == (60, 0)
    third = values(sampler.sample(target(), vm(read_ops=5, write_ops=20), 1120.0))  # the VM started again
    assert (third["DiskReadOps"], third["DiskWriteOps"]) == (0, 13)


def test_a_driver_that_counts_no_operations_sends_no_operation_metrics():
    sampler = InstanceSampler()
    sampler.sample(target(), vm(read=10), 1000.0)
    second = values(sampler.sample(target(), vm(read=20), 1060.0))
    assert second["DiskReadBytes"] == 10
    assert not {"DiskReadOps", "DiskWriteOps"} & set(second)


def test_a_counter_not_read_this_time_sends_nothing_and_the_next_increase_spans_both_periods():
    sampler = InstanceSampler()
    sampler.sample(target(), vm(read=1000, write=50, read_ops=10, rx=5), 1000.0)
    missed = values(sampler.sample(target(), vm(read=None, write=None, rx=8), 1060.0))
    assert not {"DiskReadBytes", "DiskWriteBytes", "DiskReadOps"} & set(missed), "no made-up amount"
    assert missed["NetworkIn"] == 3
    after = values(sampler.sample(target(), vm(read=1600, write=50, read_ops=30, rx=9), 1120.0))
    assert (after["DiskReadBytes"], after["DiskWriteBytes"], after["DiskReadOps"], after["NetworkIn"]) == (
        600, 0, 20, 1)


def test_a_counter_that_went_back_counts_zero_and_becomes_the_base_of_the_next_increase():
    sampler = InstanceSampler()
    sampler.sample(target(), vm(cpu=100, read=10**6, write=10**6, rx=10**6, tx=10**6), 1000.0)
    reset = values(sampler.sample(target(), vm(cpu=2, read=100, write=10**6 + 5, rx=50, tx=60), 1060.0))
    assert (reset["DiskReadBytes"], reset["DiskWriteBytes"], reset["NetworkIn"], reset["NetworkOut"]) == (0, 5, 0, 0)
    assert reset["CPUUtilization"] == 0.0
    after = values(sampler.sample(target(), vm(cpu=8, read=400, write=10**6 + 5, rx=80, tx=60), 1120.0))
    assert (after["DiskReadBytes"], after["NetworkIn"]) == (300, 30)
    assert after["CPUUtilization"] == pytest.approx(10.0)


def test_a_vm_not_alive_sends_alive_zero_only_and_its_next_reading_starts_over():
    sampler = InstanceSampler()
    sampler.sample(target(), vm(cpu=100, read=10**6), 1000.0)
    assert values(sampler.sample(target(), vm(alive=False), 1060.0)) == {"Alive": 0}
    assert INSID not in sampler.known()
    assert set(values(sampler.sample(target(), vm(cpu=3, read=10), 1120.0))) == {"MemoryUsed", "Alive"}


def test_a_forgotten_instance_starts_over_and_retain_forgets_those_not_named():
    sampler = InstanceSampler()
    for insid in (INSID, OTHER):
        sampler.sample(target(insid=insid), vm(cpu=1), 1000.0)
    sampler.retain([OTHER])
    assert sampler.known() == {OTHER}
    assert set(values(sampler.sample(target(insid=INSID), vm(cpu=2), 1060.0))) == {"MemoryUsed", "Alive"}
    assert "CPUUtilization" in values(sampler.sample(target(insid=OTHER), vm(cpu=2), 1060.0))
    sampler.forget(OTHER)
    assert set(values(sampler.sample(target(insid=OTHER), vm(cpu=3), 1120.0))) == {"MemoryUsed", "Alive"}


def test_a_reading_not_later_than_the_previous_is_a_first_reading_not_a_division_by_zero():
    sampler = InstanceSampler()
    sampler.sample(target(), vm(cpu=1), 1000.0)
    assert set(values(sampler.sample(target(), vm(cpu=2), 1000.0))) == {"MemoryUsed", "Alive"}
    assert values(sampler.sample(target(), vm(cpu=32), 1060.0))["CPUUtilization"] == pytest.approx(50.0)


def test_image_and_owner_group_are_dimensions_when_known():
    labels = InstanceLabels(image_id="img-0000000a", owner_group="edu.s1.class3a")
    [memory, _alive] = InstanceSampler().sample(target(labels=labels), vm(), 1000.0)
    assert memory.dimensions == {"InstanceId": INSID, "NodeName": "nc-1", "Cluster": "c1",
                                 "ImageId": "img-0000000a", "OwnerGroup": "edu.s1.class3a"}


class MeteredDriver:
    """A recording hypervisor for the sweep: each instance's next reading (or the error its metrics raises), and
    the instances it was asked about."""

    name = "metered"
    capabilities: dict[str, bool] = {}

    def __init__(self) -> None:
        self.readings: dict[str, VMMetrics | DriverError] = {}
        self.asked: list[str] = []

    def metrics(self, insid: str) -> VMMetrics:
        self.asked.append(insid)
        reading = self.readings.get(insid)
        if reading is None:
            raise VMNotFound(f"no VM {insid}")
        if isinstance(reading, DriverError):
            raise reading
        return reading


@pytest.fixture
def driver(monkeypatch) -> MeteredDriver:
    driver = MeteredDriver()
    monkeypatch.setattr(instances, "node_driver", lambda: driver)
    return driver


def record(insid: str, state: str = "running", cpus: int = 1, labels: dict | None = None) -> NodeInstance:
    return NodeInstance.objects.create(instance_id=insid, tid=f"t-{insid}", state=state, options={"cpus": cpus},
                                       labels=labels or {})


def by_instance(samples: list[MetricSample]) -> dict[str, dict[str, float]]:
    grouped: dict[str, list[MetricSample]] = {}
    for sample in samples:
        grouped.setdefault(sample.dimensions["InstanceId"], []).append(sample)
    return {insid: values(group) for insid, group in grouped.items()}


@pytest.mark.database
@pytest.mark.django_db
def test_the_sweep_samples_the_started_instances_of_this_node_with_its_name_cluster_and_their_vcpus(driver):
    record(INSID, "running", cpus=2)
    record(OTHER, "booting")
    for insid, state in (("ins-0000e003", "stopped"), ("ins-0000e004", "preparing"), ("ins-0000e005", "failed")):
        record(insid, state)
    driver.readings = {INSID: vm(cpu=100), OTHER: vm(cpu=10), "ins-0000e003": vm(cpu=1)}
    sampler = InstanceSampler()
    first = sample_instances(sampler, clock=lambda: 1000.0)
    assert sorted(set(driver.asked)) == [INSID, OTHER]  # stopped, preparing and failed records are not asked about
    assert set(by_instance(first)) == {INSID, OTHER}
    assert {sample.dimensions["NodeName"] for sample in first} == {settings.EDUCLOUD.name}
    assert {sample.dimensions["Cluster"] for sample in first} == {settings.EDUCLOUD.cluster}

    driver.readings = {INSID: vm(cpu=160), OTHER: vm(cpu=40)}
    second = by_instance(sample_instances(sampler, clock=lambda: 1060.0))
    assert second[INSID]["CPUUtilization"] == pytest.approx(50.0)  # 60 CPU seconds in 60 s of 2 vCPUs
    assert second[OTHER]["CPUUtilization"] == pytest.approx(50.0)


@pytest.mark.database
@pytest.mark.django_db
def test_a_stopped_or_deleted_instance_sends_nothing_and_is_forgotten(driver):
    running = record(INSID)
    record(OTHER)
    driver.readings = {INSID: vm(cpu=1), OTHER: vm(cpu=1)}
    sampler = InstanceSampler()
    sample_instances(sampler, clock=lambda: 1000.0)
    running.state = "stopped"
    running.save()
    NodeInstance.objects.filter(instance_id=OTHER).delete()
    assert sample_instances(sampler, clock=lambda: 1060.0) == []
    assert sampler.known() == set()
    running.state = "running"
    running.save()
    again = by_instance(sample_instances(sampler, clock=lambda: 1120.0))
    assert set(again[INSID]) == {"MemoryUsed", "Alive"}  # a new run starts over


@pytest.mark.database
@pytest.mark.django_db
def test_monitoring_off_sends_nothing_for_that_instance_and_the_records_labels_add_their_dimensions(driver):
    record(INSID, labels={"image_id": "img-0000000b", "monitoring": False})
    record(OTHER, labels={"image_id": "img-0000000a", "owner_group": "edu.s1.class3a", "monitoring": True})
    driver.readings = {INSID: vm(), OTHER: vm()}
    samples = sample_instances(InstanceSampler(), clock=lambda: 1000.0)
    assert driver.asked == [OTHER]
    assert {(sample.dimensions.get("ImageId"), sample.dimensions.get("OwnerGroup")) for sample in samples} == {
        ("img-0000000a", "edu.s1.class3a")}


@pytest.mark.database
@pytest.mark.django_db
def test_a_record_without_labels_is_monitored_without_image_and_owner_group_and_a_label_too_long_is_left_out(driver):
    record(INSID)
    record(OTHER, labels={"image_id": "img-0000000a", "owner_group": "edu." + "x" * 200})
    driver.readings = {INSID: vm(), OTHER: vm()}
    samples = sample_instances(InstanceSampler(), clock=lambda: 1000.0)
    dimensions = {sample.dimensions["InstanceId"]: set(sample.dimensions) for sample in samples}
    assert dimensions == {INSID: {"InstanceId", "NodeName", "Cluster"},
                          OTHER: {"InstanceId", "NodeName", "Cluster", "ImageId"}}


@pytest.mark.database
@pytest.mark.django_db
def test_a_classroom_kiosks_own_desktop_sends_nothing_as_it_is_no_instance_of_the_cloud(driver):
    record(INSID)
    NodeInstance.objects.create(instance_id=OTHER, tid=f"{KIOSK_TID_PREFIX}{OTHER}", state="running",
                                options={"cpus": 1})
    driver.readings = {INSID: vm(), OTHER: vm()}
    assert set(by_instance(sample_instances(InstanceSampler(), clock=lambda: 1000.0))) == {INSID}
    assert driver.asked == [INSID]


@pytest.mark.database
@pytest.mark.django_db
def test_a_started_instance_whose_vm_is_gone_sends_alive_zero(driver):
    record(INSID)
    driver.readings = {}  # the driver raises VMNotFound
    assert by_instance(sample_instances(InstanceSampler(), clock=lambda: 1000.0)) == {INSID: {"Alive": 0}}


@pytest.mark.database
@pytest.mark.django_db
def test_a_vm_the_watcher_ended_sends_alive_zero_once_in_the_next_sweep_unless_started_again_or_never_sampled(driver):
    """The watcher looks every 5 s and ends the run of a VM that stopped on its own before a sweep can see it gone
    (the record of a temporary instance ends with its run): what it noted is the watchdog's evidence."""
    ended = record(INSID, labels={"image_id": "img-0000000a"})
    record(OTHER)  # ended, then started again before the sweep: read as it runs
    record("ins-0000e003", labels={"monitoring": False})  # never sampled
    driver.readings = {INSID: vm(), OTHER: vm()}
    sampler = InstanceSampler()
    sample_instances(sampler, clock=lambda: 1000.0)
    ended.delete()
    sampler.note_ended([INSID, OTHER, "ins-0000e003", "ins-0000e004"])
    after = sample_instances(sampler, clock=lambda: 1060.0)
    assert by_instance(after)[INSID] == {"Alive": 0}
    assert by_instance(after)[OTHER]["Alive"] == 1
    assert set(by_instance(after)) == {INSID, OTHER}
    assert {s.dimensions.get("ImageId") for s in after if s.dimensions["InstanceId"] == INSID} == {"img-0000000a"}
    assert INSID not in by_instance(sample_instances(sampler, clock=lambda: 1120.0))


@pytest.mark.database
@pytest.mark.django_db
def test_a_driver_error_skips_that_instance_once_and_keeps_its_previous_reading(driver):
    record(INSID)
    record(OTHER)
    sampler = InstanceSampler()
    driver.readings = {INSID: vm(cpu=0, read=0), OTHER: vm(cpu=0)}
    sample_instances(sampler, clock=lambda: 1000.0)
    driver.readings = {INSID: DriverError("QMP did not answer"), OTHER: vm(cpu=30)}
    assert set(by_instance(sample_instances(sampler, clock=lambda: 1060.0))) == {OTHER}
    driver.readings = {INSID: vm(cpu=60, read=4000), OTHER: vm(cpu=60)}
    third = by_instance(sample_instances(sampler, clock=lambda: 1120.0))
    assert third[INSID]["CPUUtilization"] == pytest.approx(50.0)  # 60 s of CPU over the 120 s since its last
    assert third[INSID]["DiskReadBytes"] == 4000  # both periods' bytes, none lost


def test_a_batch_goes_as_metrics_messages_of_at_most_max_samples_that_travel_as_json():
    sample = MetricSample(namespace=INSTANCE_NAMESPACE, name="Alive", dimensions={"InstanceId": INSID},
                          timestamp=1000.0, value=1)
    reports = metrics_reports("nc-1", [sample] * (MAX_SAMPLES + 1))
    assert [len(report.samples) for report in reports] == [MAX_SAMPLES, 1]
    assert metrics_reports("nc-1", []) == []
    decoded = decode(encode(reports[1]))
    assert isinstance(decoded, MetricsReport) and decoded == reports[1]
    with pytest.raises(ValueError, match="samples"):
        MetricsReport(host="nc-1", samples=(sample,) * (MAX_SAMPLES + 1))
