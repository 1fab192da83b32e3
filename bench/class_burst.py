"""Benchmark: a class at 8:00, thirty desktops of one image started at once on the all-in-one.

The all-in-one host (clc, walrus, cc and nc in one process on the embedded defaults: SQLite, the in-process bus,
the local-memory cache) with real QEMU (TCG on this machine), the test image uploaded once and thirty instances of
the ``tiny`` VM type defined from it. The cluster's ``cc.cpu_overcommit`` is raised so that thirty one-CPU desktops
fit a two-core node (it takes 8 with the default of 4).

The reference, in the same minute: one launch alone, from the run request until the instance is running with its
console. Then the burst: thirty run requests sent at once from thirty threads; every launch must end running with a
console URL, or refused with a reason the person can read. Zero failures is the bar.

Prints: each answer's kind (placed / still being placed / refused), how many ended running with a console, the time
until the last was running, the median, and the ratio of the burst's last to the single reference launch.

Run: ``.venv/bin/python bench/class_burst.py [--launches 30] [--overcommit 15]``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from allinone import AllInOne, wait_for  # noqa: E402

from luhyaapi.client import RemoteError  # noqa: E402
from tests.services import ConsoleClient, build_test_image, kill_vms_under  # noqa: E402

STARTING = ("scheduled", "preparing", "booting")
# What a class may wait for its desktops before the run counts as failed.
BURST_LIMIT_SECONDS = 900.0


def define(cloud: AllInOne, image_id: str, name: str) -> str:
    return cloud.client.post("/clc/api/1.0/instances/", {
        "name": name, "kind": "rvd", "image": image_id, "vm_type": "tiny", "owner_group": "edu",
        "services": [80]})["instance_id"]


class Launch:
    """One desktop's run: the answer to its request and when it was seen running with a console."""

    def __init__(self, insid: str) -> None:
        self.insid = insid
        self.answer = ""
        self.reason = ""
        self.sent = 0.0
        self.running_after: float | None = None
        self.end = ""

    def request(self, client: ConsoleClient) -> None:
        self.sent = time.monotonic()
        try:
            placed = client.post(f"/clc/api/1.0/instances/{self.insid}/run/", {})
        except RemoteError as exc:
            self.answer, self.reason = f"refused ({exc.status})", exc.detail
            return
        # A run no cluster has taken yet waits for one (``placing``: queued or asked); the placer settles it.
        self.answer = "being placed" if placed.get("placing") or not placed.get("node") else "placed"

    def follow(self, record: dict) -> bool:
        """Take in the instance's record; True once its run has ended one way or the other."""
        state, refused = record["state"], self.answer.startswith("refused")
        if state in STARTING:
            return False  # refused or not, a node may be starting it: see where it ends
        if state == "running" and refused:
            self.end = "refused, yet running" + ("" if record.get("console_url") else " without console")
        elif state == "running" and record.get("console_url"):
            self.running_after = time.monotonic() - self.sent
            self.end = "running with console"
        elif state == "running":
            return False  # its console comes with the next report
        else:
            self.end = self.answer if refused else state
            self.reason = self.reason or record.get("message", "")
        return True


def run_alone(cloud: AllInOne, insid: str) -> float:
    launch = Launch(insid)
    launch.request(cloud.client)
    if launch.answer.startswith("refused"):
        raise SystemExit(f"the reference launch was refused: {launch.reason}")
    wait_for("the reference launch", lambda: launch.follow(cloud.record(insid)), BURST_LIMIT_SECONDS, 0.1)
    if launch.running_after is None:
        raise SystemExit(f"the reference launch ended {launch.end}: {launch.reason}")
    cloud.client.post(f"/clc/api/1.0/instances/{insid}/stop/", {})
    wait_for("the reference stopped", lambda: cloud.record(insid)["state"] == "stopped", 120)
    return launch.running_after


def burst(cloud: AllInOne, insids: list[str]) -> list[Launch]:
    launches = [Launch(insid) for insid in insids]
    gate = threading.Barrier(len(launches))

    def send(launch: Launch) -> None:
        client = ConsoleClient(cloud.host.url, timeout=120)
        client.get("/clc/api/1.0/status/")  # logged in before the gate: the burst is of run requests only
        gate.wait()
        launch.request(client)

    threads = [threading.Thread(target=send, args=(launch,)) for launch in launches]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # A refused launch is followed too: a run refused while its VM starts anyway is the worst end of all.
    waiting = {launch.insid: launch for launch in launches}
    deadline = time.monotonic() + BURST_LIMIT_SECONDS
    while waiting and time.monotonic() < deadline:
        for insid, launch in list(waiting.items()):
            if launch.follow(cloud.record(insid)):
                del waiting[insid]
        time.sleep(0.5)
    for launch in waiting.values():
        launch.end = f"not running after {BURST_LIMIT_SECONDS:.0f} s"
    return launches


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--launches", type=int, default=30)
    parser.add_argument("--overcommit", type=float, default=15.0, help="the cluster's cc.cpu_overcommit")
    args = parser.parse_args()
    image = build_test_image()
    with tempfile.TemporaryDirectory(prefix="educloud-burst-") as tmp:
        workdir = Path(tmp)
        # A console port and the guest's web service per desktop, with room for the reference launch.
        cloud = AllInOne(workdir, 2 * args.launches + 20, args.overcommit)
        try:
            wait_for("every role online", cloud.online, 120)
            image_id = cloud.client.upload_image(image, "class burst desktop")["image_id"]
            reference = define(cloud, image_id, "reference")
            # The reference run also brings the image into the node's cache, as the first lesson of a day would.
            run_alone(cloud, reference)
            single = run_alone(cloud, reference)
            insids = [define(cloud, image_id, f"desk{number:02d}") for number in range(args.launches)]
            started = time.monotonic()
            launches = burst(cloud, insids)
            wall = time.monotonic() - started
        finally:
            cloud.close()
            kill_vms_under(workdir)

    answers = Counter(launch.answer for launch in launches)
    ends = Counter(launch.end for launch in launches)
    running = [launch.running_after for launch in launches if launch.running_after is not None]
    failures = [launch for launch in launches if launch.running_after is None]
    print(f"answers to {len(launches)} run requests sent at once: "
          + ", ".join(f"{count} {answer}" for answer, count in sorted(answers.items())))
    print("ends: " + ", ".join(f"{count} {end}" for end, count in sorted(ends.items())))
    for launch in failures:
        print(f"  {launch.insid}: {launch.end}: {launch.reason or 'no reason given'}")
    print(f"reference, one launch alone in the same run: running with console after {single:.1f} s")
    if running:
        print(f"burst: {len(running)} of {len(launches)} running with console; "
              f"median {statistics.median(running):.1f} s, last {max(running):.1f} s ({wall:.1f} s wall); "
              f"last / single = {max(running) / single:.1f}")
    print(f"failures: {len(failures)} (the bar is 0)")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
