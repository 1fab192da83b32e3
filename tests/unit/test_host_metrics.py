"""A role host's samples of itself (luhyaapi.hostmetrics): /proc/stat, /proc/meminfo, /proc/loadavg and
/proc/net/dev as Linux writes them, parsed into CPU %, memory, load and network bytes (loopback left out); the
sampler's first sample holds no CPU or network (nothing to subtract yet), the next ones the difference; and one
reading of this machine's real /proc gives sane values."""

from __future__ import annotations

from pathlib import Path

import pytest

from luhyaapi.hostmetrics import (
    CpuTimes,
    HostSampler,
    ProcFormatError,
    cpu_percent,
    parse_cpu_times,
    parse_loadavg,
    parse_meminfo,
    parse_net_dev,
)
from luhyaapi.metrics import HOST_METRICS, HOST_NAMESPACE

STAT = """cpu  820213 1395 130605 310337 4652 0 4315 3416 0 0
cpu0 399808 622 62059 169778 1515 0 1559 1708 0 0
cpu1 420405 772 68546 140558 3137 0 2756 1708 0 0
intr 61276598 0 9 0 0 0 0 0 0 0
ctxt 114720815
btime 1796590000
"""

MEMINFO = """MemTotal:       24683772 kB
MemFree:        21051336 kB
MemAvailable:   23326280 kB
Buffers:           55312 kB
Cached:          2269556 kB
SwapCached:            0 kB
HugePages_Total:       0
"""

# As this machine's kernel writes it (columns padded to width), split only to keep the lines short here.
NET_DEV = (
    "Inter-|   Receive                                                |  Transmit\n"
    " face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier"
    " compressed\n"
    "    lo: 76692139668 6984827    0    0    0     0          0         0 76692139668 6984827    0    0    0     0"
    "       0          0\n"
    "  eth0: 1185945676   29694    0    0    0     0          0         0  1671596   17348    0    0    0     0"
    "       0          0\n"
    "  br0:1000 10    0    0    0     0          0         0  2000   20    0    0    0     0       0          0\n"
)


def test_cpu_times_are_the_aggregate_line_with_iowait_idle_and_guest_time_not_counted_twice():
    # user+nice+system+irq+softirq+steal busy; idle+iowait idle; the guest columns (last two) left out.
    times = parse_cpu_times("cpu  100 10 50 800 40 0 5 5 70 7\ncpu0 1 1 1 1 1 1 1 1 1 1\n")
    assert times == CpuTimes(busy=170, total=1010)
    assert parse_cpu_times(STAT) == CpuTimes(busy=820213 + 1395 + 130605 + 4315 + 3416,
                                             total=820213 + 1395 + 130605 + 310337 + 4652 + 4315 + 3416)


@pytest.mark.parametrize("before, after, percent", [
    (CpuTimes(100, 1000), CpuTimes(150, 1100), 50.0),
    (CpuTimes(100, 1000), CpuTimes(100, 1100), 0.0),
    (CpuTimes(100, 1000), CpuTimes(200, 1100), 100.0),
    (CpuTimes(100, 1000), CpuTimes(100, 1000), 0.0),     # no tick passed: not a division by zero
    (CpuTimes(500, 5000), CpuTimes(10, 100), 0.0),        # the counters went back (a reboot between): 0, not < 0
])
def test_cpu_percent_is_the_busy_share_of_the_ticks_between_two_readings(before, after, percent):
    assert cpu_percent(before, after) == pytest.approx(percent)


def test_memory_used_is_total_less_available_and_falls_back_to_free_buffers_and_cache():
    assert parse_meminfo(MEMINFO) == ((24683772 - 23326280) * 1024, 24683772 * 1024)
    old_kernel = "MemTotal: 1000 kB\nMemFree: 100 kB\nBuffers: 50 kB\nCached: 250 kB\n"
    assert parse_meminfo(old_kernel) == (600 * 1024, 1000 * 1024)


def test_load_average_is_the_one_minute_figure():
    assert parse_loadavg("1.53 0.82 1.44 3/191 22623\n") == 1.53


def test_network_bytes_sum_every_interface_but_loopback_also_when_the_name_touches_the_counters():
    assert parse_net_dev(NET_DEV) == (1185945676 + 1000, 1671596 + 2000)


@pytest.mark.parametrize("parse, text, names", [
    (parse_cpu_times, "intr 1 2 3\n", "cpu line"),
    (parse_cpu_times, "cpu  1 2 x 4\n", "not a number"),
    (parse_meminfo, "MemFree: 1 kB\n", "MemTotal"),
    (parse_loadavg, "", "load average"),
    (parse_net_dev, "  eth0: 1 2 3\n", "eth0"),
])
def test_a_file_not_as_linux_writes_it_is_refused_naming_what_is_missing(parse, text, names):
    with pytest.raises(ProcFormatError, match=names):
        parse(text)


def _fake_proc(root: Path, stat: str, net_dev: str) -> Path:
    (root / "net").mkdir(parents=True, exist_ok=True)
    (root / "stat").write_text(stat)
    (root / "meminfo").write_text(MEMINFO)
    (root / "loadavg").write_text("0.50 0.40 0.30 1/100 42\n")
    (root / "net" / "dev").write_text(net_dev)
    return root


def _net(rx: int, tx: int) -> str:
    return NET_DEV.splitlines()[0] + "\n" + NET_DEV.splitlines()[1] + (
        f"\n    lo: 999999 1 0 0 0 0 0 0 999999 1 0 0 0 0 0 0\n  eth0: {rx} 1 0 0 0 0 0 0 {tx} 1 0 0 0 0 0 0\n")


def test_the_first_sample_has_no_cpu_or_network_and_the_next_ones_the_difference(tmp_path):
    proc = _fake_proc(tmp_path / "proc", "cpu  100 0 0 900 0 0 0 0 0 0\n", _net(1000, 500))
    times = iter([1000.0, 1060.0, 1120.0])
    sampler = HostSampler(tmp_path, "nc-1", "c1", role="nc", proc=proc, clock=lambda: next(times))

    first = {sample.name: sample for sample in sampler.sample()}
    assert set(first) == {"MemoryUsed", "MemoryTotal", "LoadAverage", "DiskUsed", "DiskTotal"}
    assert first["LoadAverage"].value == 0.5
    assert first["MemoryTotal"].value == 24683772 * 1024
    assert all(s.namespace == HOST_NAMESPACE and s.timestamp == 1000.0 and s.unit == HOST_METRICS[s.name]
               and s.dimensions == {"HostName": "nc-1", "Cluster": "c1", "Role": "nc"} for s in first.values())

    _fake_proc(proc, "cpu  400 0 0 1600 0 0 0 0 0 0\n", _net(4000, 700))  # 300 busy of 1000 ticks
    second = {sample.name: sample.value for sample in sampler.sample()}
    assert second["CPUUtilization"] == pytest.approx(30.0)
    assert (second["NetworkIn"], second["NetworkOut"]) == (3000, 200)

    _fake_proc(proc, "cpu  400 0 0 2600 0 0 0 0 0 0\n", _net(10, 5))  # the interface was made again
    third = {sample.name: sample.value for sample in sampler.sample()}
    assert third["CPUUtilization"] == 0.0
    assert (third["NetworkIn"], third["NetworkOut"]) == (0, 0)


def test_a_host_without_a_role_has_no_role_dimension(tmp_path):
    proc = _fake_proc(tmp_path / "proc", STAT, NET_DEV)
    samples = HostSampler(tmp_path, "clc-1", "c1", proc=proc).sample()
    assert {frozenset(s.dimensions) for s in samples} == {frozenset({"HostName", "Cluster"})}


def test_this_machines_real_proc_gives_sane_values(tmp_path):
    sampler = HostSampler(tmp_path, "this-host", "c1")
    first = {sample.name: sample.value for sample in sampler.sample()}
    burn = 0
    for n in range(200_000):  # some CPU time between the two readings, so that ticks pass
        burn += n * n
    second = {sample.name: sample.value for sample in sampler.sample()}
    assert set(second) == set(HOST_METRICS)
    assert 0 < first["MemoryUsed"] < first["MemoryTotal"]
    assert 0 < second["DiskUsed"] < second["DiskTotal"]
    assert 0.0 <= second["CPUUtilization"] <= 100.0
    assert second["LoadAverage"] >= 0
    assert second["NetworkIn"] >= 0 and second["NetworkOut"] >= 0
