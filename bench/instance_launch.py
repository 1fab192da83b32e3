"""Benchmark: how fast an instance launches.

Two figures, against the issue's goals:
1. control-plane time, from the run request to the CLC's API until the node calls the hypervisor's start, with the
   image already in the node's cache: CLC (clc,walrus), CC and NC as separate processes on RabbitMQ (a scratch
   vhost); p50/p99 over ``--launches`` runs (goal: under 0.5 s). The node logs the moment of its start call
   (``start call at <epoch>``); each launch is stopped again before the next.
2. request -> console reachable (the VNC port answers with its RFB banner) and request -> the guest's page served
   (the tiny test image under TCG on this machine; goal for the console: under 8 s).

The CC and the NC enrol with join tokens issued on the CLC host; the benchmark acts as the administrator, logged in
to the CLC's API, and uploads the test image as the console does (walrus's pre-signed data URL).

Before this tree's own run, the tree at ``--reference`` (the last commit before commands became Celery tasks) is
unpacked from git and its copy of this benchmark run the same way: the two control-plane figures are printed side by
side with their ratio.

Run: ``.venv/bin/python bench/instance_launch.py [--launches 50] [--reference 62b8af0]``. Prints the figures and their
ratio to the goal.
"""

from __future__ import annotations

import argparse
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from allinone import cloud_online  # noqa: E402

from tests.rabbitmq import scratch_vhost  # noqa: E402
from tests.services import (  # noqa: E402
    ConsoleClient,
    RoleProcess,
    build_test_image,
    free_port_block,
    kill_vms_under,
    scratch_mariadb_database,
)

START_CALL = re.compile(r"instances: (ins-[0-9a-f]{8}) start call at (\d+\.\d+)")
CONTROL_PLANE_GOAL = 0.5
# The last commit with the hand-made command path (commands on cmd.<node> and the nc-commands consumer), whose figure
# is printed beside this tree's; its benchmark prints it as this one does.
REFERENCE = "62b8af0"
REFERENCE_LINE = re.compile(r"control plane, .*?: p50 (\d+) ms, p99 (\d+) ms")
CONSOLE_GOAL = 8.0


def wait_for(what: str, probe, timeout: float = 120.0, every: float = 0.01):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(every)
    raise SystemExit(f"timed out waiting for {what}")


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]


def rfb_banner(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.settimeout(0.5)
            return sock.recv(12).startswith(b"RFB ")
    except OSError:
        return False


def page_served(url: str) -> bool:
    try:
        return requests.get(url, timeout=1).status_code == 200
    except requests.RequestException:
        return False


class Cloud:
    """CLC+walrus, CC and NC as processes over RabbitMQ and MariaDB, with the test image uploaded."""

    def __init__(self, workdir: Path, bus_url: str, db_url: str) -> None:
        low, high = free_port_block(40)
        common = {"cloud": {"heartbeat_seconds": "1", "missed_heartbeats": "5"}, "bus": {"url": bus_url}}
        self.clc = RoleProcess(workdir, "clc-1", "clc,walrus", common | {"database": {"url": db_url}})
        self.processes = [self.clc]
        try:
            self.clc.start().wait_listening()
            self.cc = RoleProcess(workdir, "cc-1", "cc", common | {"cloud": common["cloud"] | {"clc_url": self.clc.url},
                                                                 "cc": {"port_range": f"{low}-{high}"}},
                                  join_token=self.clc.issue_join_token(roles="cc"))
            self.processes.append(self.cc)
            self.cc.start().wait_listening()
            self.nc = RoleProcess(workdir, "nc-1", "nc", common | {"cloud": common["cloud"] | {"cc_url": self.cc.url},
                                                                 "nc": {"stop_timeout_seconds": "2"}},
                                  join_token=self.clc.issue_join_token(roles="nc"))
            self.processes.append(self.nc)
            self.nc.start().wait_listening()
        except BaseException:
            self.close()
            raise
        self.client = ConsoleClient(self.clc.url)

    def online(self) -> bool:
        return cloud_online(self.client)

    def upload(self, image: Path) -> str:
        return self.client.upload_image(image, "bench test VM")["image_id"]

    def instance(self, image_id: str) -> str:
        return self.client.post("/clc/api/1.0/instances/", {
            "name": "bench", "kind": "rvd", "image": image_id, "vm_type": "tiny", "owner_group": "edu",
            "services": [80]})["instance_id"]

    def state(self, insid: str) -> dict:
        return self.client.get(f"/clc/api/1.0/instances/{insid}/")

    def run(self, insid: str) -> tuple[float, dict]:
        sent = time.time()
        return sent, self.client.post(f"/clc/api/1.0/instances/{insid}/run/", {})

    def stop(self, insid: str) -> None:
        self.client.post(f"/clc/api/1.0/instances/{insid}/stop/", {})
        wait_for(f"{insid} stopped", lambda: self.state(insid)["state"] == "stopped", 60, 0.05)

    def start_calls(self) -> list[tuple[str, float]]:
        return [(m[1], float(m[2])) for m in START_CALL.finditer(self.nc.log.read_text(errors="replace"))]

    def close(self) -> None:
        for process in self.processes:
            process.stop()


def measure(launches: int, boots: int) -> dict:
    """The figures of this tree: control-plane seconds of each launch, and of each boot to console and to page."""
    image = build_test_image()
    with tempfile.TemporaryDirectory(prefix="educloud-bench-") as tmp, scratch_vhost("educloud-bench") as bus_url, \
            scratch_mariadb_database("educloud_bench") as db_url:
        workdir = Path(tmp)
        cloud = Cloud(workdir, bus_url, db_url)
        try:
            wait_for("every role online", cloud.online, 90, 0.2)
            image_id = cloud.upload(image)
            insid = cloud.instance(image_id)
            # The first run pulls the image into the node's cache; the timed ones find it there.
            cloud.run(insid)
            wait_for("the first run", lambda: cloud.state(insid)["state"] == "running", 180, 0.1)
            cloud.stop(insid)

            control: list[float] = []
            for _ in range(launches):
                before = len(cloud.start_calls())
                sent, _ = cloud.run(insid)
                calls = wait_for("the start call", lambda before=before: cloud.start_calls()[before:], 60, 0.005)
                control.append(calls[0][1] - sent)
                wait_for("running", lambda: cloud.state(insid)["state"] == "running", 60, 0.02)
                cloud.stop(insid)

            consoles: list[float] = []
            pages: list[float] = []
            for _ in range(boots):
                sent, placed = cloud.run(insid)
                port = int(placed["console_url"].rsplit(":", 1)[1])
                wait_for("the console", lambda port=port: rfb_banner(port), 60, 0.02)
                consoles.append(time.time() - sent)
                wait_for("the guest's page", lambda url=placed["access"]["http"]: page_served(url), 120, 0.05)
                pages.append(time.time() - sent)
                cloud.stop(insid)
        finally:
            cloud.close()
            kill_vms_under(workdir)
    return {"control": control, "consoles": consoles, "pages": pages}


def reference_control(revision: str, launches: int) -> tuple[float, float]:
    """p50 and p99 (seconds) of the control-plane figure as the tree at ``revision`` measures it with its own copy of
    this benchmark (and so its own roles), on this machine now."""
    from reference import reference_tree

    with reference_tree(revision) as tree:
        result = subprocess.run([sys.executable, str(tree / "bench" / "instance_launch.py"),
                                 "--launches", str(launches), "--boots", "1"],
                                cwd=tree, capture_output=True, text=True, timeout=1800)
    found = REFERENCE_LINE.search(result.stdout)
    if result.returncode != 0 or found is None:
        raise SystemExit(f"the reference run at {revision} failed:\n{result.stdout[-2000:]}{result.stderr[-3000:]}")
    return int(found[1]) / 1000, int(found[2]) / 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--launches", type=int, default=50)
    parser.add_argument("--boots", type=int, default=5, help="launches timed to console and page")
    parser.add_argument("--reference", default=REFERENCE, help="the commit to measure the control plane of before "
                        "this tree's, in the same run (\"\" for none)")
    args = parser.parse_args()
    before = reference_control(args.reference, args.launches) if args.reference else None
    figures = measure(args.launches, max(args.boots, 1))
    control, consoles, pages = figures["control"], figures["consoles"], figures["pages"]

    p50, p99 = percentile(control, 0.5), percentile(control, 0.99)
    print(f"control plane, run request -> hypervisor start call (image cached, {len(control)} launches over "
          f"RabbitMQ): p50 {p50 * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms, mean {statistics.mean(control) * 1000:.0f} "
          f"ms; goal {CONTROL_PLANE_GOAL * 1000:.0f} ms -> p99 at {p99 / CONTROL_PLANE_GOAL:.2f} of the goal")
    if before is not None:
        print(f"  before, at {args.reference} (the hand-made command path): p50 {before[0] * 1000:.0f} ms, p99 "
              f"{before[1] * 1000:.0f} ms; after/before: p50 {p50 / before[0]:.2f}, p99 {p99 / before[1]:.2f}")
    print(f"run request -> console answers (TCG, {len(consoles)} boots): median {statistics.median(consoles):.2f} s, "
          f"max {max(consoles):.2f} s; goal {CONSOLE_GOAL:.0f} s -> {max(consoles) / CONSOLE_GOAL:.2f} of the goal")
    print(f"run request -> guest's page served: median {statistics.median(pages):.2f} s, max {max(pages):.2f} s")


if __name__ == "__main__":
    main()
