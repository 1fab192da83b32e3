"""A role host's samples of itself (issue 17, collection): CPU, memory, load, network and the data directory's file
system from Linux's /proc and ``shutil.disk_usage``, as ``eduCloud/Host`` metric samples.

The parsing functions take the files' text, so that tests feed them real-format samples; ``HostSampler`` reads the
files and keeps the previous CPU and network counters, as the CPU percentage and the bytes of a sample are the
difference between two readings.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from luhyaapi.metrics import HOST_METRICS, HOST_NAMESPACE, MetricSample

# The interfaces whose traffic is not the host's: loopback is the host talking to itself.
EXCLUDED_INTERFACES = frozenset({"lo"})


class ProcFormatError(ValueError):
    """A /proc file did not have the lines or fields expected; the text names the file and what is missing."""


@dataclass(frozen=True)
class CpuTimes:
    """The host's CPU time since boot, in clock ticks (all CPUs together): ``busy`` and ``total``."""

    busy: int
    total: int


def parse_cpu_times(stat: str) -> CpuTimes:
    """The aggregate ``cpu`` line of /proc/stat. Idle time is ``idle`` plus ``iowait`` (a CPU waiting for a disk is
    free to run something else); the total is user, nice, system, idle, iowait, irq, softirq and steal (``guest``
    and ``guest_nice`` are already counted in user and nice, so they are left out, not counted twice)."""
    for line in stat.splitlines():
        fields = line.split()
        if fields and fields[0] == "cpu":
            try:
                ticks = [int(value) for value in fields[1:9]]
            except ValueError:
                raise ProcFormatError(f"/proc/stat: the cpu line has a field that is not a number: {line!r}") from None
            if len(ticks) < 4:
                raise ProcFormatError(f"/proc/stat: the cpu line has {len(ticks)} fields, fewer than 4")
            ticks += [0] * (8 - len(ticks))  # kernels before 2.6.11 have fewer columns
            idle = ticks[3] + ticks[4]
            return CpuTimes(busy=sum(ticks) - idle, total=sum(ticks))
    raise ProcFormatError("/proc/stat: no aggregate cpu line")


def cpu_percent(before: CpuTimes, after: CpuTimes) -> float:
    """The busy share of the CPU time between two readings, 0..100 (0 when no tick passed)."""
    total = after.total - before.total
    if total <= 0:
        return 0.0
    return min(100.0, max(0.0, (after.busy - before.busy) / total * 100))


def parse_meminfo(meminfo: str) -> tuple[int, int]:
    """(used, total) bytes from /proc/meminfo. Used is what programs hold: ``MemTotal - MemAvailable`` (the page
    cache the kernel would give back is not used), or, on kernels before 3.14 without ``MemAvailable``, total
    less free, buffers and cache."""
    values: dict[str, int] = {}
    for line in meminfo.splitlines():
        name, _, rest = line.partition(":")
        fields = rest.split()
        if fields and fields[0].isdigit():
            values[name.strip()] = int(fields[0]) * (1024 if fields[1:2] == ["kB"] else 1)
    if "MemTotal" not in values:
        raise ProcFormatError("/proc/meminfo: no MemTotal line")
    total = values["MemTotal"]
    if "MemAvailable" in values:
        available = values["MemAvailable"]
    else:
        available = values.get("MemFree", 0) + values.get("Buffers", 0) + values.get("Cached", 0)
    return max(0, total - available), total


def parse_loadavg(loadavg: str) -> float:
    """The 1-minute load average, the first field of /proc/loadavg."""
    try:
        return float(loadavg.split()[0])
    except (IndexError, ValueError):
        raise ProcFormatError(f"/proc/loadavg: no load average in {loadavg[:60]!r}") from None


def parse_net_dev(net_dev: str) -> tuple[int, int]:
    """(received, transmitted) bytes since boot over every interface of /proc/net/dev but loopback."""
    received = transmitted = 0
    for line in net_dev.splitlines():
        name, colon, counters = line.partition(":")
        if not colon or name.strip() in EXCLUDED_INTERFACES or "|" in line:
            continue
        fields = counters.split()
        if len(fields) < 9:
            raise ProcFormatError(f"/proc/net/dev: interface {name.strip()} has {len(fields)} counters, not 16")
        try:
            received += int(fields[0])
            transmitted += int(fields[8])
        except ValueError:
            raise ProcFormatError(f"/proc/net/dev: a counter of {name.strip()} is not a number") from None
    return received, transmitted


@dataclass(frozen=True)
class _Counters:
    cpu: CpuTimes
    received: int
    transmitted: int


class HostSampler:
    """This host's samples, dimensions ``HostName``, ``Cluster`` and ``Role`` when given.

    Every sample gives ``MemoryUsed``, ``MemoryTotal``, ``LoadAverage``, ``DiskUsed`` and ``DiskTotal`` (the file
    system of ``data_dir``, where the role keeps what grows: images, disks, the database). ``CPUUtilization``,
    ``NetworkIn`` and ``NetworkOut`` come from the second sample on: they are what happened since the previous
    one. A network counter lower than before (an interface that went away or was made again) counts 0.
    """

    def __init__(self, data_dir: Path, host: str, cluster: str, role: str = "", proc: Path = Path("/proc"),
                 clock: Callable[[], float] = time.time) -> None:
        self.data_dir = Path(data_dir)
        self.proc = Path(proc)
        self.clock = clock
        self.dimensions = {"HostName": host, "Cluster": cluster} | ({"Role": role} if role else {})
        self._previous: _Counters | None = None

    def _read(self, name: str) -> str:
        return (self.proc / name).read_text()

    def sample(self) -> list[MetricSample]:
        """Read the host now and give its samples (see the class). Raises OSError if a file cannot be read and
        ProcFormatError if one is not as Linux writes it."""
        at = self.clock()
        used, total = parse_meminfo(self._read("meminfo"))
        disk = shutil.disk_usage(self.data_dir)
        values: dict[str, float] = {
            "MemoryUsed": used, "MemoryTotal": total, "LoadAverage": parse_loadavg(self._read("loadavg")),
            "DiskUsed": disk.used, "DiskTotal": disk.total,
        }
        received, transmitted = parse_net_dev(self._read("net/dev"))
        now = _Counters(parse_cpu_times(self._read("stat")), received, transmitted)
        before, self._previous = self._previous, now
        if before is not None:
            values["CPUUtilization"] = cpu_percent(before.cpu, now.cpu)
            values["NetworkIn"] = max(0, now.received - before.received)
            values["NetworkOut"] = max(0, now.transmitted - before.transmitted)
        return [MetricSample(namespace=HOST_NAMESPACE, name=name, dimensions=self.dimensions, timestamp=at,
                             value=value, unit=HOST_METRICS[name]) for name, value in values.items()]
