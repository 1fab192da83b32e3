"""Image transfer benchmark: walrus -> CC cluster cache -> NC over loopback, against ``cp`` of the same file.

For each size (default 1 GiB and 4 GiB) the script

1. starts (once) two real eduCloud hosts as processes on 127.0.0.1 with ``manage.py run_cloud`` (web API on
   waitress plus daemons; ``tests.services.RoleProcess``): ``wal`` with roles ``clc,walrus`` and ``cc`` with role
   ``cc`` (embedded defaults: SQLite, in-process bus, local-memory cache; the data path is HTTP between them), the
   CC enrolled with a join token issued on ``wal``, and one key per simulated NC enrolled with ``wal`` the same way;
2. writes a test file: a 64 MiB random block repeated with a per-block counter in its first 8 bytes, so the data is
   incompressible and its sha256 real;
3. times ``cp`` of that file to a new file on the same disk (``--cp-repeats`` times before the chain and once
   after), ``cp`` followed by ``fsync`` of the copy (``cp+fsync``: ``download`` fsyncs too) and the sha256 of the
   file in one thread;
4. uploads the file to walrus with ``luhyaapi.transfer.upload_file`` signed with ``wal``'s own key, as
   ``manage.py upload_image`` on the CLC host sends it (walrus upload MB/s), ``--upload-repeats`` times (the
   versions after the first are deleted at once);
5. pulls it as an NC does (``nc.services.images.fetch_image``): ``luhyaapi.transfer.download`` of
   ``<cc>/cc/api/1.0/images/<id>/versions/<n>/data`` signed with its NC's key, expected sha256 given, from a child
   process of this script; first with the CC's cache cold (the CC fetches from walrus while it streams to the NC),
   then warm (served from the CC's verified cache), ``--repeats`` times each;
6. ``--nodes`` NCs (child processes, each a ``download`` into its own file) pull the image at once with the CC's
   cache cold; checks in the CC's log that walrus was asked once ("cluster cache: fetching ...").

Before each timed step the page cache's dirty pages are written out (``os.sync``, not timed) and the CC cache is
emptied where the step needs it cold (its files are deleted; walrus's copy stays). Nothing is dropped from the page
cache: with 24 GiB of RAM every source file is page-cache hot, for ``cp`` and for the chain alike, so this measures
CPU and copies, not the disk (except where files pass the dirty limits, e.g. ten 4 GiB NC copies, and every
``fsync``).

Reported per step: MB/s (10^6 bytes of the image per second of wall time), best of the repeats and median, and the
ratio of the best to the best ``cp`` (and ``cp+fsync``) of the same run; for pulls also the tail after the last byte
reached the NC's file (``download``'s ``fsync``, sha256 check and rename); CPU seconds used by walrus, the CC and
the NC(s) (from /proc); and the CPU used meanwhile by the machine's other processes ("foreign cores": another
benchmark or test run may share the 2 cores). Before each timed step the script waits, at most ``--quiet-wait``
seconds, until those use less than ``--quiet-cores``. Best-of is the headline because interference only ever slows
a step down; on a virtual machine even ``cp`` of the same file varies several-fold from one try to the next (fresh
guest pages are expensive to touch: on the VM this was written on, the hypervisor takes back the guest's free pages,
so writing a GiB of new page cache costs from 0.4 to 2.5 CPU seconds of the writer's kernel time, depending on
whether it gets pages just freed by another file), so compare numbers of one run, and CPU seconds across runs.
Before/after figures of a change are fairest from two runs back to back, the old code run from its own copy with
this same script (``git archive HEAD | tar -x -C /tmp/head``, copy this file to ``/tmp/head/bench/`` and run it
there: the script imports the product from the folder it is in).

``--profile DIR`` (needs ``py-spy``: ``.venv/bin/pip install py-spy``, not a requirement of the project) records, for
the first size after its measurements, one extra upload (walrus and this script) and one extra cold and one extra
warm pull (walrus, the CC and the pulling NC) with ``py-spy record``, writes the raw stacks to DIR and prints where
each process spent its samples (sha256, socket, file I/O, waitress buffering, fsync, ...).

The sha256 of the file in one thread (``hashlib``, page-cache hot) is timed too: every copy is verified, so one
pull can never be faster than that, whatever the transfer does.

Run (from the repository root; the default run, 1 and 4 GiB with 10 NCs at once for the 1 GiB image, takes about
5-7 minutes on 2 cores and needs about 17 GiB of disk; ``--concurrent-max-gib 4`` adds 10 NCs x 4 GiB, which needs
about 53 GiB, writes 40 GiB and takes 2-3 minutes more):

    .venv/bin/python bench/image_transfer.py
    .venv/bin/python bench/image_transfer.py --sizes 0.25 --nodes 4            # a quick look
    .venv/bin/python bench/image_transfer.py --sizes 1 --profile /tmp/prof --json /tmp/transfer.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import linecache
import multiprocessing as mp
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from luhyaapi.client import RoleClient  # noqa: E402
from luhyaapi.ids import new_id  # noqa: E402
from luhyaapi.keys import HostKey  # noqa: E402
from luhyaapi.transfer import download, upload_file  # noqa: E402
from tests.services import RoleProcess, enrol_keys  # noqa: E402

MiB = 1024 * 1024
GiB = 1024 * MiB
MB = 1_000_000
BLOCK = 64 * MiB
MAX_IMAGE_BYTES = 4 * GiB  # walrus refuses bigger uploads (walrus.constants.MAX_IMAGE_BYTES)
MIN_RATE = 20 * MB  # a step slower than this is considered stuck: its timeout is size / MIN_RATE (at least 120 s)
CLK_TCK = os.sysconf("SC_CLK_TCK")
RATE = 200  # py-spy samples per second
FETCH_LINE = "cluster cache: fetching {image} version {version} "


def log(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", flush=True)


def mbps(size: int, seconds: float) -> float:
    return size / seconds / MB if seconds > 0 else float("inf")


# --------------------------------------------------------------------------------------------------------------------
# CPU accounting: ours per process, and everybody else's (another benchmark may be running on the same 2 cores)
# --------------------------------------------------------------------------------------------------------------------


def _proc_stat(pid: int) -> tuple[str, int, int] | None:
    """(command name, parent pid, utime + stime in ticks) of a process, None if it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    name = raw[raw.index("(") + 1:raw.rindex(")")]
    fields = raw[raw.rindex(")") + 2:].split()
    return name, int(fields[1]), int(fields[11]) + int(fields[12])


def cpu_seconds(pid: int) -> float:
    stat = _proc_stat(pid)
    return stat[2] / CLK_TCK if stat else 0.0


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def snapshot_all() -> dict[int, tuple[str, int]]:
    """Ticks of every user-space process (kernel threads, children of kthreadd, are left out: their writeback work
    is mostly ours)."""
    found = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            stat = _proc_stat(int(entry))
            if stat and stat[1] != 2 and int(entry) != 2:
                found[int(entry)] = (stat[0], stat[2])
    return found


def other_benchmarks() -> list[str]:
    """Command lines of other benchmarks or test runs now on the machine (they compete for the 2 cores)."""
    mine = os.getpid()
    hits = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != mine:
            line = _cmdline(int(entry))
            if re.search(r"status_fanin|pytest|bench/", line) and "image_transfer" not in line:
                hits.append(f"{entry}: {line[:140]}")
    return hits


def wait_quiet(ours: set[int], max_wait: float, threshold: float) -> float:
    """Wait (at most ``max_wait`` seconds) until the other processes of the machine use less than ``threshold``
    cores over half a second; return the last such measurement (cores)."""
    deadline = time.monotonic() + max_wait
    while True:
        before, start = snapshot_all(), time.monotonic()
        time.sleep(0.5)
        after, wall = snapshot_all(), time.monotonic() - start
        busy = sum(max(0, ticks - before.get(pid, (name, 0))[1]) for pid, (name, ticks) in after.items()
                   if pid not in ours) / CLK_TCK / wall
        if busy < threshold or time.monotonic() >= deadline:
            return round(busy, 2)


class Usage:
    """CPU used during one step by walrus, the CC, this script's children (the NCs) and everybody else."""

    def __init__(self, bench: Bench) -> None:
        self.bench = bench
        self.quiet = bench.quiet()
        self.t0 = time.monotonic()
        self.walrus0 = cpu_seconds(bench.walrus.process.pid)
        self.cc0 = cpu_seconds(bench.cc.process.pid)
        self.all0 = snapshot_all()
        self.load0 = os.getloadavg()[0]

    def done(self, ours: set[int]) -> dict:
        wall = time.monotonic() - self.t0
        all1 = snapshot_all()
        ours = ours | {os.getpid(), self.bench.walrus.process.pid, self.bench.cc.process.pid} | self.bench.helpers
        foreign: Counter[str] = Counter()
        for pid, (name, ticks) in all1.items():
            if pid in ours:
                continue
            before = self.all0.get(pid, (name, 0))[1]
            if ticks > before:
                foreign[name] += (ticks - before) / CLK_TCK
        total = sum(foreign.values())
        return {"walrus_cpu_s": round(cpu_seconds(self.bench.walrus.process.pid) - self.walrus0, 2),
                "cc_cpu_s": round(cpu_seconds(self.bench.cc.process.pid) - self.cc0, 2),
                "foreign_cores": round(total / wall, 2) if wall > 0 else 0.0,
                "foreign_top": [f"{name} {seconds / wall:.2f}" for name, seconds in foreign.most_common(3)
                                if seconds / wall >= 0.05],
                "foreign_cores_before": self.quiet,
                "loadavg_1m": [round(self.load0, 2), round(os.getloadavg()[0], 2)]}


# --------------------------------------------------------------------------------------------------------------------
# NC pulls (child processes, so that a wedged transfer can be bounded and each NC has its own interpreter)
# --------------------------------------------------------------------------------------------------------------------


def _nc_main(url: str, dest: str, key: HostKey, sha256: str, size: int, go, results) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent ends us
    marks = {"first": None, "last": None}

    def progress(done: int, total: int) -> None:
        now = time.monotonic()
        if marks["first"] is None:
            marks["first"] = now
        if done >= total:
            marks["last"] = now

    go.wait()
    start = time.monotonic()
    cpu0 = os.times()
    try:
        digest = download(url, dest, key=key, expected_sha256=sha256, progress=progress)
        error = "" if digest == sha256 else f"sha256 {digest}"
    except Exception as exc:  # reported to the parent, which fails the step
        error = f"{type(exc).__name__}: {exc}"
    end = time.monotonic()
    cpu1 = os.times()
    if not error and os.path.getsize(dest) != size:
        error = f"{dest} has {os.path.getsize(dest)} bytes, not {size}"
    results.put({"sender": key.name, "start": start, "end": end, "first": marks["first"], "last": marks["last"],
                 "cpu_s": (cpu1.user - cpu0.user) + (cpu1.system - cpu0.system), "error": error})


@dataclass
class Pull:
    """The result of one step of pulls: one NC or many at once."""

    name: str
    size: int
    wall: float
    nodes: list[dict]
    usage: dict
    walrus_fetches: int
    extra: dict = field(default_factory=dict)

    @property
    def per_node_mbps(self) -> list[float]:
        return [mbps(self.size, node["end"] - node["go"]) for node in self.nodes]

    def summary(self) -> dict:
        first = [node["first"] - node["go"] for node in self.nodes if node["first"] is not None]
        tails = [node["end"] - node["last"] for node in self.nodes if node["last"] is not None]
        receive = [node["last"] - node["first"] for node in self.nodes
                   if node["last"] is not None and node["first"] is not None]
        return {"name": self.name, "size": self.size, "nodes": len(self.nodes), "wall_s": round(self.wall, 3),
                "aggregate_mbps": round(mbps(self.size * len(self.nodes), self.wall), 1),
                "per_node_mbps": [round(value, 1) for value in self.per_node_mbps],
                "first_byte_s": round(max(first), 3) if first else None,
                "receive_s": round(statistics.median(receive), 3) if receive else None,
                "tail_s": round(statistics.median(tails), 3) if tails else None,
                "nc_cpu_s": round(sum(node["cpu_s"] for node in self.nodes), 2),
                "walrus_fetches": self.walrus_fetches, **self.usage, **self.extra}


# --------------------------------------------------------------------------------------------------------------------
# The benchmark
# --------------------------------------------------------------------------------------------------------------------


class Bench:
    def __init__(self, workdir: Path, args) -> None:
        self.workdir = workdir
        self.args = args
        self.helpers: set[int] = set()  # py-spy processes: not "foreign" load
        max_size = max(args.sizes)
        cache_gb = str(max(2, int(max_size * 2 / GiB) + 2))
        self.cache_gb = cache_gb
        self.walrus = RoleProcess(workdir, "wal", "clc,walrus", {"host": {"image_cache_gb": cache_gb}})
        self.walrus_url = self.walrus.url
        self.cc: RoleProcess | None = None
        self.ctx = mp.get_context("fork")
        self.children: list = []

    # Hosts.

    def start(self) -> None:
        log(f"starting walrus (clc,walrus) at {self.walrus.url} in {self.workdir}")
        self.walrus.start().wait_listening(180)
        # Uploads and walrus calls are the CLC host's (signed with its own key); each NC pulls with a key of its own.
        self.clc_key = self.walrus.key()
        self.nc_keys = enrol_keys(self.walrus, [f"bench-nc-{n}" for n in range(max(1, self.args.nodes))])
        self.cc = RoleProcess(self.workdir, "cc", "cc",
                              {"cloud": {"clc_url": self.walrus_url, "walrus_url": self.walrus_url},
                               "host": {"image_cache_gb": self.cache_gb}},
                              join_token=self.walrus.issue_join_token(roles="cc"))
        log(f"starting the CC at {self.cc.url}; {len(self.nc_keys)} NC keys enrolled")
        self.cc.start().wait_listening(180)
        self.walrus_client = RoleClient(self.walrus_url, self.clc_key, timeout=120)
        self.walrus_client.get("/walrus/api/1.0/images/")

    def stop(self) -> None:
        for child in self.children:
            if child.is_alive():
                child.kill()
                child.join(timeout=10)
        for host in (self.cc, self.walrus):
            if host is None:
                continue
            try:
                host.stop()
            except Exception as exc:
                log(f"stopping {host.name}: {exc}")

    def fetch_lines(self, image_id: str, version: int) -> int:
        needle = FETCH_LINE.format(image=image_id, version=version)
        return self.cc.log.read_text(errors="replace").count(needle) if self.cc.log.exists() else 0

    def empty_cc_cache(self, image_id: str, version: int) -> None:
        """Make the CC's cache cold for one version: delete its file, sidecar and partial file (as
        ``VerifiedFileCache.remove`` does); walrus's copy stays."""
        folder = self.cc.dir / "cc" / "images" / image_id
        for name in (f"{version}.img", f"{version}.img.json", f"{version}.img.part"):
            (folder / name).unlink(missing_ok=True)

    def quiet(self) -> float:
        """Before a timed step: wait (bounded by --quiet-wait) for the machine's other processes to calm down."""
        ours = {os.getpid(), self.walrus.process.pid, self.cc.process.pid} | self.helpers
        ours |= {child.pid for child in self.children if child.pid}
        return wait_quiet(ours, self.args.quiet_wait, self.args.quiet_cores)

    # Steps.

    def make_file(self, path: Path, size: int) -> str:
        block = bytearray(os.urandom(BLOCK))
        digest = hashlib.sha256()
        with open(path, "wb") as out:
            written, counter = 0, 0
            while written < size:
                block[:8] = counter.to_bytes(8, "little")
                piece = memoryview(block)[:min(BLOCK, size - written)]
                out.write(piece)
                digest.update(piece)
                written += len(piece)
                counter += 1
        return digest.hexdigest()

    def time_cp(self, source: Path, fsync: bool) -> float:
        target = source.with_name("cp-copy.img")
        os.sync()
        self.quiet()
        start = time.monotonic()
        subprocess.run(["cp", str(source), str(target)], check=True, timeout=self.timeout(source.stat().st_size))
        if fsync:
            fd = os.open(target, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        seconds = time.monotonic() - start
        target.unlink()
        return seconds

    def time_sha256(self, source: Path) -> float:
        """The sha256 of the (page-cache hot) file in one thread, as ``luhyaapi.imagecache.sha256_of`` takes it."""
        self.quiet()
        start = time.monotonic()
        digest = hashlib.sha256()
        with open(source, "rb", buffering=0) as file:
            while data := file.read(8 * MiB):
                digest.update(data)
        return time.monotonic() - start

    def timeout(self, nbytes: int) -> float:
        return max(120.0, nbytes / MIN_RATE)

    def pull(self, name: str, url: str, sha256: str, size: int, nodes: int, profile: Path | None = None) -> Pull:
        """``nodes`` NCs (child processes) download ``url`` at once, each into its own file; their files are
        deleted afterwards."""
        folder = self.workdir / "nc" / name
        folder.mkdir(parents=True)
        go = self.ctx.Event()
        results = self.ctx.Queue()
        children = []
        for n in range(nodes):
            child = self.ctx.Process(target=_nc_main, name=f"nc-{n}", daemon=True,
                                     args=(url, str(folder / f"nc-{n}.img"), self.nc_keys[n], sha256, size, go,
                                           results))
            child.start()
            children.append(child)
        self.children = children
        image_id, version = re.search(r"/images/([^/]+)/versions/(\d+)/", url).groups()
        fetches0 = self.fetch_lines(image_id, int(version))
        spies = self.start_spies(profile, [("walrus", self.walrus.process.pid), ("cc", self.cc.process.pid),
                                           ("nc", children[0].pid)]) if profile else []
        os.sync()
        usage = Usage(self)
        go_at = time.monotonic()
        go.set()
        found, deadline = [], go_at + self.timeout(size * nodes)
        try:
            while len(found) < nodes:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise RuntimeError(f"{name}: {len(found)} of {nodes} pulls ended within "
                                       f"{self.timeout(size * nodes):.0f}s")
                try:
                    found.append(results.get(timeout=min(left, 5)))
                except Exception:
                    dead = [child.name for child in children if child.exitcode not in (None, 0)]
                    if dead:
                        raise RuntimeError(f"{name}: NC processes {dead} died") from None
            wall = max(result["end"] for result in found) - go_at
        finally:
            self.stop_spies(spies)
            for child in children:
                child.join(timeout=30)
                if child.is_alive():
                    child.kill()
        errors = [f"{result['sender']}: {result['error']}" for result in found if result["error"]]
        if errors:
            raise RuntimeError(f"{name}: " + "; ".join(errors))
        used = usage.done({child.pid for child in children})
        time.sleep(0.2)  # the CC logs "fetching" before it streams, but let its log reach the file
        fetches = self.fetch_lines(image_id, int(version)) - fetches0
        shutil.rmtree(folder)
        for result in found:
            result["go"] = go_at
        return Pull(name, size, wall, found, used, fetches)

    # Profiles (optional, --profile).

    def start_spies(self, profile: Path, targets: list[tuple[str, int]]) -> list[tuple[str, subprocess.Popen, Path]]:
        spy = py_spy()
        spies = []
        profile.mkdir(parents=True, exist_ok=True)
        for role, pid in targets:
            out = profile / f"{self.profile_tag}-{role}.txt"
            process = subprocess.Popen([spy, "record", "--pid", str(pid), "--rate", str(RATE), "--format", "raw",
                                        "--full-filenames", "--output", str(out)],
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            self.helpers.add(process.pid)
            spies.append((role, process, out))
        time.sleep(1.0)  # py-spy attaches
        return spies

    def stop_spies(self, spies) -> None:
        for _role, process, _out in spies:
            if process.poll() is None:
                process.send_signal(signal.SIGINT)
        for _role, process, _out in spies:
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)

    # One size.

    def run_size(self, size: int) -> dict:
        args = self.args
        label = f"{size / GiB:g} GiB"
        folder = self.workdir / "files"
        folder.mkdir(exist_ok=True)
        source = folder / "image.raw"
        log(f"== {label}: writing the test file")
        start = time.monotonic()
        sha256 = self.make_file(source, size)
        made = time.monotonic() - start
        log(f"   written and hashed in {made:.1f}s; sha256 {sha256[:16]}...")

        cp_times = [self.time_cp(source, fsync=False) for _ in range(args.cp_repeats)]
        cp_sync_times = [self.time_cp(source, fsync=True) for _ in range(max(1, args.cp_repeats - 1))]
        hash_times = [self.time_sha256(source) for _ in range(2)]
        log(f"   cp: {', '.join(f'{mbps(size, t):.0f}' for t in cp_times)} MB/s; cp+fsync "
            f"{', '.join(f'{mbps(size, t):.0f}' for t in cp_sync_times)} MB/s; sha256 "
            f"{', '.join(f'{mbps(size, t):.0f}' for t in hash_times)} MB/s")

        image_id = new_id("image")
        uploads = []
        for n in range(args.upload_repeats):
            os.sync()
            usage = Usage(self)
            start = time.monotonic()
            stored = upload_file(self.walrus_url, self.clc_key, source, image_id)
            uploads.append({"wall_s": round(time.monotonic() - start, 3), **usage.done(set())})
            if stored["sha256"] != sha256 or stored["size"] != size:
                raise RuntimeError(f"walrus stored {stored}, expected {size} bytes with sha256 {sha256}")
            log(f"   upload to walrus: {uploads[-1]['wall_s']:.1f}s = {mbps(size, uploads[-1]['wall_s']):.0f} MB/s "
                f"({image_id} v{stored['version']})")
            if n:
                # Only the first version is pulled: the others go at once, so the disk holds what it did before.
                self.walrus_client.request("DELETE", f"/walrus/api/1.0/images/{image_id}/versions/{stored['version']}/")
            else:
                version = int(stored["version"])
        url = f"{self.cc.url}/cc/api/1.0/images/{image_id}/versions/{version}/data"

        pulls: list[Pull] = []
        try:
            for n in range(args.repeats):
                self.empty_cc_cache(image_id, version)
                pulls.append(self.pull(f"cold-{n}", url, sha256, size, 1))
                log(f"   1 NC, CC cache cold: {pulls[-1].wall:.1f}s = {mbps(size, pulls[-1].wall):.0f} MB/s "
                    f"(walrus fetches {pulls[-1].walrus_fetches})")
                pulls.append(self.pull(f"warm-{n}", url, sha256, size, 1))
                log(f"   1 NC, CC cache warm: {pulls[-1].wall:.1f}s = {mbps(size, pulls[-1].wall):.0f} MB/s "
                    f"(walrus fetches {pulls[-1].walrus_fetches})")
            concurrent = None
            if args.nodes > 1 and size <= args.concurrent_max_gib * GiB:
                need = (args.nodes + 1) * size + GiB
                free = shutil.disk_usage(self.workdir).free
                if free < need:
                    log(f"   {args.nodes} NCs at once: skipped, {free / GiB:.1f} GiB free, {need / GiB:.1f} needed")
                else:
                    self.empty_cc_cache(image_id, version)
                    concurrent = self.pull(f"many-{args.nodes}", url, sha256, size, args.nodes)
                    speeds = concurrent.per_node_mbps
                    log(f"   {args.nodes} NCs at once, CC cache cold: {concurrent.wall:.1f}s, aggregate "
                        f"{mbps(size * args.nodes, concurrent.wall):.0f} MB/s, per NC {min(speeds):.0f}-"
                        f"{max(speeds):.0f} MB/s, walrus fetches {concurrent.walrus_fetches}")
            cp_times.append(self.time_cp(source, fsync=False))
            profiles = {}
            if args.profile and not self.profiled:
                self.profiled = True
                self.profile_tag = f"{label.replace(' ', '')}-upload"
                spies = self.start_spies(args.profile, [("walrus", self.walrus.process.pid),
                                                        ("client", os.getpid())])
                try:
                    start = time.monotonic()
                    again = upload_file(self.walrus_url, self.clc_key, source, image_id)
                    upload_again = time.monotonic() - start
                finally:
                    self.stop_spies(spies)
                profiles["upload"] = {"wall_s": round(upload_again, 3), "mbps": round(mbps(size, upload_again), 1),
                                      "processes": {role: summarize_profile(args.profile /
                                                                            f"{self.profile_tag}-{role}.txt")
                                                    for role in ("walrus", "client")}}
                log(f"   profiled upload (version {again['version']}): {upload_again:.1f}s (not in the table)")
                for kind in ("cold", "warm"):
                    if kind == "cold":
                        self.empty_cc_cache(image_id, version)
                    self.profile_tag = f"{label.replace(' ', '')}-{kind}"
                    profiled = self.pull(f"profile-{kind}", url, sha256, size, 1, profile=args.profile)
                    profiles[kind] = {"wall_s": round(profiled.wall, 3), "mbps": round(mbps(size, profiled.wall), 1),
                                      "processes": {role: summarize_profile(args.profile /
                                                                            f"{self.profile_tag}-{role}.txt")
                                                    for role in ("walrus", "cc", "nc")}}
                    log(f"   profiled {kind} pull: {profiled.wall:.1f}s (py-spy attached; not in the table)")
        finally:
            source.unlink(missing_ok=True)
            self.empty_cc_cache(image_id, version)
            try:
                self.walrus_client.request("DELETE", f"/walrus/api/1.0/images/{image_id}/")
            except Exception as exc:
                log(f"   deleting {image_id} from walrus: {exc}")

        result = {"size": size, "label": label, "sha256": sha256, "make_file_s": round(made, 2),
                  "cp_s": [round(t, 3) for t in cp_times], "cp_best_mbps": round(mbps(size, min(cp_times)), 1),
                  "cp_median_mbps": round(mbps(size, statistics.median(cp_times)), 1),
                  "cp_fsync_s": [round(t, 3) for t in cp_sync_times],
                  "cp_fsync_best_mbps": round(mbps(size, min(cp_sync_times)), 1),
                  "sha256_s": [round(t, 3) for t in hash_times],
                  "uploads": uploads,
                  "pulls": [pull.summary() for pull in pulls],
                  "concurrent": concurrent.summary() if concurrent else None,
                  "profiles": profiles}
        return result

    profiled = False
    profile_tag = ""


# --------------------------------------------------------------------------------------------------------------------
# Where the time goes: py-spy raw stacks, classified by the innermost Python frame
# --------------------------------------------------------------------------------------------------------------------

_FRAME_RE = re.compile(r"^(?P<func>.*) \((?P<file>[^()]*):(?P<line>\d+)\)$")
_CATEGORIES = [
    # (category, file part, source-line or function regex)
    ("sha256", "", r"hash\w*\.update\(|\bupdate\(chunk|\bupdate\(data|\bdigest\.update"),
    ("fsync", "", r"\bf(data)?sync\("),
    ("waiting (not CPU)", "threading.py", r"acquire\(|wait\("),
    ("waiting (not CPU)", "multiprocessing/synchronize.py", r"acquire\(|wait\("),
    ("waiting (not CPU)", "waitress/wasyncore.py", r"select\(|poll\("),
    ("waitress buffering (BytesIO/tempfile copies)", "waitress/buffers.py", r""),
    ("waitress (other)", "waitress/trigger.py", r""),
    ("socket send", "waitress/", r"\.send\(|sendall|def send"),
    ("socket send", "http/client.py", r"sendall|\.send\("),
    ("socket send", "socket.py", r"sendall|\.send\("),
    ("socket recv", "socket.py", r"recv|readinto"),
    ("socket recv", "http/client.py", r"readinto|\.read\(|_safe_read|recv"),
    ("socket recv", "ssl.py", r""),
    ("socket recv", "waitress/", r"\.recv\("),
    ("file write", "", r"\.write\(|pwrite|\.flush\(|truncate"),
    ("file read", "", r"\.read\(|pread|readinto"),
    ("waitress (other)", "waitress/", r""),
    ("http client (urllib3/requests, other)", "urllib3/", r""),
    ("http client (urllib3/requests, other)", "requests/", r""),
    ("http client (urllib3/requests, other)", "http/client.py", r""),
    ("locks and waits", "threading.py", r""),
    ("Django/DRF", "django/", r""),
    ("Django/DRF", "rest_framework/", r""),
]


def _classify(frame: str) -> tuple[str, str]:
    match = _FRAME_RE.match(frame.strip())
    if not match:
        return "other", frame
    path, line = match["file"], int(match["line"])
    source = linecache.getline(path, line).strip()
    where = f"{match['func']} ({'/'.join(Path(path).parts[-2:])}:{line}) {source[:70]}"
    for category, file_part, pattern in _CATEGORIES:
        if file_part and file_part not in path:
            continue
        if not pattern or re.search(pattern, source):
            return category, where
    return "other Python", where


_classify_cache: dict[str, str] = {}


def summarize_profile(path: Path) -> dict:
    """Samples per category as a share of this process's busy samples (py-spy leaves most idle threads out; the
    threads it still shows waiting on a lock or in select are counted apart; the CPU seconds of the table, read
    from /proc, are the better measure of how much), and the top innermost frames."""
    categories: Counter[str] = Counter()
    leaves: Counter[str] = Counter()
    total = 0
    if not path.exists():
        return {"error": f"{path} missing (py-spy failed?)"}
    for raw in path.read_text(errors="replace").splitlines():
        stack, _, count = raw.rpartition(" ")
        if not count.isdigit() or not stack:
            continue
        frames = stack.split(";")
        category, where = _classify(frames[-1])
        _classify_cache[where] = category
        categories[category] += int(count)
        leaves[where] += int(count)
        total += int(count)
    waiting = categories.pop("waiting (not CPU)", 0)
    busy = total - waiting
    if not busy:
        return {"samples": total, "waiting_samples": waiting}
    for where in [where for where in leaves if _classify_cache.get(where) == "waiting (not CPU)"]:
        del leaves[where]
    return {"samples": total, "waiting_samples": waiting, "busy_samples": busy,
            "share": {name: round(100 * count / busy, 1) for name, count in categories.most_common()},
            "top_frames": [f"{100 * count / busy:5.1f}% {where}" for where, count in leaves.most_common(12)]}


# --------------------------------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------------------------------


def print_report(results: list[dict]) -> None:
    print()
    print("MB/s: 10^6 bytes of the image per second of wall time, best of the repeats (other processes of the machine")
    print("only ever slow a step down), median after it. /cp: best MB/s divided by the best cp MB/s of the same file")
    print("in the same run; /cp+fsync: the same against cp followed by fsync of the copy (download fsyncs too).")
    print("Every source file is page-cache hot (24 GiB RAM, nothing dropped); dirty pages are synced before each step.")
    header = (f"{'size':>7} {'step':<32} {'MB/s':>6} {'/cp':>5} {'/cp+fsync':>9} {'median':>7} {'wall s':>7}  "
              "where the time went / notes")
    print(header)
    print("-" * 150)
    for result in results:
        size, label = result["size"], result["label"]
        cp, cps = mbps(size, min(result["cp_s"])), mbps(size, min(result["cp_fsync_s"]))

        def row(step: str, walls: list[float], notes: str = "", nodes: int = 1, label=label, cp=cp, cps=cps,
                size=size) -> None:
            best, median = mbps(size * nodes, min(walls)), mbps(size * nodes, statistics.median(walls))
            print(f"{label:>7} {step:<32} {best:6.0f} {best / cp:5.2f} {best / cps:9.2f} {median:7.0f} "
                  f"{min(walls):7.2f}  {notes}")

        row("cp", result["cp_s"], "samples " + ", ".join(f"{mbps(size, t):.0f}" for t in result["cp_s"]) + " MB/s")
        row("cp + fsync", result["cp_fsync_s"])
        row("sha256 of the file (1 thread)", result["sha256_s"], "the ceiling of one verified pull")
        uploads = result["uploads"]
        best = min(uploads, key=lambda upload: upload["wall_s"])
        row(f"upload to walrus (x{len(uploads)})", [upload["wall_s"] for upload in uploads],
            f"cpu s: walrus {best['walrus_cpu_s']}; foreign cores "
            f"{'/'.join(str(upload['foreign_cores']) for upload in uploads)}")
        for kind in ("cold", "warm"):
            pulls = [pull for pull in result["pulls"] if pull["name"].startswith(kind)]
            if not pulls:
                continue
            best = min(pulls, key=lambda pull: pull["wall_s"])
            row(f"1 NC, CC cache {kind} (x{len(pulls)})", [pull["wall_s"] for pull in pulls],
                f"cpu s: walrus {best['walrus_cpu_s']} cc {best['cc_cpu_s']} nc {best['nc_cpu_s']}; fsync+check tail "
                f"{best['tail_s']}s; walrus fetches {sum(pull['walrus_fetches'] for pull in pulls)}; foreign cores "
                f"{'/'.join(str(pull['foreign_cores']) for pull in pulls)}")
        many = result["concurrent"]
        if many:
            speeds = many["per_node_mbps"]
            row(f"{many['nodes']} NCs at once, cold: total", [many["wall_s"]],
                f"cpu s: walrus {many['walrus_cpu_s']} cc {many['cc_cpu_s']} "
                f"({many['cc_cpu_s'] / (many['nodes'] * size / GiB):.2f} per GiB served) ncs {many['nc_cpu_s']}; "
                f"walrus fetches {many['walrus_fetches']}; foreign cores {many['foreign_cores']}",
                nodes=many["nodes"])
            per = statistics.median(speeds)
            print(f"{label:>7} {'  ... per NC (median)':<32} {per:6.0f} {per / cp:5.2f} {per / cps:9.2f} {'':7} "
                  f"{'':7}  min {min(speeds):.0f}, max {max(speeds):.0f} MB/s; tail {many['tail_s']}s")
    for result in results:
        for kind, profile in result["profiles"].items():
            step = "upload to walrus" if kind == "upload" else f"{kind} pull"
            print(f"\nprofile of one {step} of {result['label']} ({profile['wall_s']}s with py-spy attached):")
            for role, summary in profile["processes"].items():
                if "share" not in summary:
                    print(f"  {role}: {summary}")
                    continue
                shares = ", ".join(f"{name} {share}%" for name, share in summary["share"].items() if share >= 1)
                print(f"  {role} ({summary['busy_samples']} busy samples): {shares}")
                for frame in summary["top_frames"][:6]:
                    print(f"      {frame}")


# --------------------------------------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------------------------------------


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1,4", help="image sizes in GiB, comma separated (at most 4)")
    parser.add_argument("--nodes", type=int, default=10, help="NCs pulling one image at once (1: skip that step)")
    parser.add_argument("--concurrent-max-gib", type=float, default=1.0,
                        help="run the NCs-at-once step only for sizes up to this (it writes nodes x size)")
    parser.add_argument("--repeats", type=int, default=2, help="cold and warm single-NC pulls per size")
    parser.add_argument("--upload-repeats", type=int, default=2, help="uploads to walrus per size (best of)")
    parser.add_argument("--cp-repeats", type=int, default=3, help="cp timings before the chain (one more after)")
    parser.add_argument("--dir", type=Path, default=None,
                        help="where to make the working directory (default: whichever of /work, /tmp, $TMPDIR has "
                             "the most free space); everything made there is deleted at the end")
    parser.add_argument("--profile", type=Path, default=None, help="py-spy one cold and one warm pull into DIR")
    parser.add_argument("--quiet-wait", type=float, default=20.0,
                        help="before each timed step wait up to this many seconds for the other processes of the "
                             "machine to use less than --quiet-cores (0: do not wait)")
    parser.add_argument("--quiet-cores", type=float, default=0.3, help="see --quiet-wait")
    parser.add_argument("--json", type=Path, default=None, help="write the results as JSON here")
    parser.add_argument("--keep", action="store_true", help="keep the working directory (logs) at the end")
    args = parser.parse_args(argv)
    args.sizes = [int(float(part) * 1024) * MiB for part in args.sizes.split(",") if part.strip()]
    if not args.sizes or any(size <= 0 or size > MAX_IMAGE_BYTES for size in args.sizes):
        parser.error("--sizes: each between 1 MiB and 4 GiB (walrus's limit)")
    if args.nodes < 1 or args.repeats < 1 or args.cp_repeats < 1 or args.upload_repeats < 1:
        parser.error("--nodes, --repeats, --upload-repeats and --cp-repeats are at least 1")
    return args


def py_spy() -> str | None:
    """py-spy on the PATH or next to this Python (``.venv/bin/pip install py-spy``)."""
    beside = Path(sys.executable).with_name("py-spy")
    return shutil.which("py-spy") or (str(beside) if beside.exists() else None)


def pick_dir(given: Path | None) -> Path:
    if given is not None:
        given.mkdir(parents=True, exist_ok=True)
        return given
    candidates = [Path(p) for p in ("/work", "/tmp", tempfile.gettempdir()) if Path(p).is_dir()]
    return max(candidates, key=lambda path: shutil.disk_usage(path).free)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.profile and not py_spy():
        log("--profile needs py-spy on the PATH or in the venv: .venv/bin/pip install py-spy")
        return 2
    parent = pick_dir(args.dir)
    biggest = max(args.sizes)
    many = max((size for size in args.sizes if size <= args.concurrent_max_gib * GiB), default=0)
    need = max((5 if args.profile else 4) * biggest, (args.nodes + 3) * many if args.nodes > 1 else 0) + GiB
    least = (5 if args.profile else 4) * biggest + GiB
    free = shutil.disk_usage(parent).free
    log(f"working under {parent}: {free / GiB:.1f} GiB free, this run needs up to {need / GiB:.1f} GiB")
    if free < least:
        log(f"not enough free disk space (at least {least / GiB:.1f} GiB): use --dir or smaller --sizes")
        return 2
    if free < need:
        log("not enough for every NCs-at-once step: those that do not fit are skipped")
    others = other_benchmarks()
    if others:
        log("other benchmarks/tests running now (they share the 2 cores; results are noisy):")
        for line in others:
            log(f"   {line}")
    workdir = Path(tempfile.mkdtemp(prefix="image-transfer-", dir=parent))

    def on_term(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_term)
    bench = Bench(workdir, args)
    results = []
    started = time.monotonic()
    try:
        bench.start()
        for size in args.sizes:
            results.append(bench.run_size(size))
    except BaseException:
        log(f"failed; last lines of the CC's log:\n{bench.cc.tail(15)}\nand walrus's:\n{bench.walrus.tail(15)}")
        raise
    finally:
        bench.stop()
        if args.keep:
            log(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    print_report(results)
    others_after = other_benchmarks()
    print(f"\ntotal {time.monotonic() - started:.0f}s; other benchmarks/tests seen at start: {len(others)}, at end: "
          f"{len(others_after)} (see 'foreign' cores per step)")
    if args.json:
        args.json.write_text(json.dumps({"results": results, "others_at_start": others, "others_at_end": others_after,
                                         "args": {"sizes": args.sizes, "nodes": args.nodes,
                                                  "repeats": args.repeats}}, indent=2))
        log(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
