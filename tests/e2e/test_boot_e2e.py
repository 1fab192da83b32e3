"""End to end on the all-in-one host with real QEMU (TCG here, as the driver's probe decides): an instance of the test
image is seen booting, then running only once its page answers, its guest IP on the admin's pages; an instance of
a blank disk (a guest that never leaves its BIOS) is seen booting, then "Running, not answering" after the node's
time limit, on the admin's pages and in the API."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest
import requests

from tests.services import (
    ConsoleClient,
    allinone_host,
    instance_record,
    processes_mentioning,
    wait_for,
)

pytestmark = [pytest.mark.e2e]

# Long enough for the test image to boot under TCG on a busy 2-core machine (about 8 s idle), short for the test.
READY_TIMEOUT = 45


@pytest.fixture(scope="module")
def host(tmp_path_factory):
    """An all-in-one host (clc, walrus, cc, nc) whose node gives a guest READY_TIMEOUT seconds to show it is up."""
    with allinone_host(tmp_path_factory.mktemp("aio"), ports=20, stop_timeout=20,
                       nc={"ready_timeout_seconds": str(READY_TIMEOUT)}) as running:
        yield running


def _run(client: ConsoleClient, image: Path, name: str) -> str:
    wait_for("the node and walrus online", lambda: {
        (s["role"], s["state"]) for s in client.get("/clc/api/1.0/status/")["services"]} >= {
        ("nc", "online"), ("walrus", "online"), ("cc", "online")}, timeout=60)
    record = client.upload_image(image, name)
    instance = client.post("/clc/api/1.0/instances/", {
        "name": name, "kind": "rvd", "image": record["image_id"], "vm_type": "tiny", "owner_group": "edu",
        "services": [80]})
    client.post(f"/clc/api/1.0/instances/{instance['instance_id']}/run/", {})
    return instance["instance_id"]


def _follow(client: ConsoleClient, insid: str, until, timeout: float) -> tuple[list[str], dict]:
    """The states the CLC showed (each once, in order) until ``until(record)``, and that record."""
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while True:
        record = instance_record(client, insid)
        assert record is not None and record["state"] != "failed", record
        if not seen or seen[-1] != record["state"]:
            seen.append(record["state"])
        if until(record):
            return seen, record
        assert time.monotonic() < deadline, f"{insid}: gave up after {timeout:.0f} s; seen {seen}"
        time.sleep(0.2)


def _admin_pages(client: ConsoleClient, insid: str) -> str:
    session = client._logged_in()
    return "".join(session.get(f"{client.base_url}{path}", timeout=60).text
                   for path in ("/clc/instances/", f"/clc/instances/{insid}/"))


def _stop_and_delete(client: ConsoleClient, insid: str) -> None:
    client.post(f"/clc/api/1.0/instances/{insid}/stop/", {})
    wait_for(f"{insid} stopped", lambda: instance_record(client, insid)["state"] == "stopped", 90)
    client.request("DELETE", f"/clc/api/1.0/instances/{insid}/")
    wait_for(f"{insid} deleted", lambda: instance_record(client, insid) is None, 60)
    assert not processes_mentioning(insid)


def test_the_test_image_is_booting_then_running_once_its_page_answers_with_its_guest_ip_on_the_admins_pages(host):
    aio, image = host
    client = ConsoleClient(aio.url)
    insid = _run(client, image, "Boot watch")
    started = time.monotonic()
    seen, running = _follow(client, insid, lambda record: record["state"] == "running", 240)
    print(f"run -> running in {time.monotonic() - started:.1f} s, states seen: {seen}")
    assert "booting" in seen and seen.index("booting") == len(seen) - 2, seen
    assert (running["answering"], running["guest_ip"]) == (True, "10.0.2.15")
    page = requests.get(running["access"]["http"], timeout=10)
    assert page.status_code == 200 and "eduCloud test VM" in page.text, "running means its service answers"
    pages = _admin_pages(client, insid)
    assert pages.count("10.0.2.15") == 2 and 'class="state running">Running<' in pages
    _stop_and_delete(client, insid)


def test_a_guest_that_never_leaves_its_bios_is_running_not_answering_after_the_time_limit(host, tmp_path):
    aio, _ = host
    client = ConsoleClient(aio.url)
    blank = tmp_path / "blank.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(blank), "16M"], check=True, timeout=60)
    insid = _run(client, blank, "No system")
    seen, booting = _follow(client, insid, lambda record: record["state"] == "booting", 180)
    booting_since = time.monotonic()
    assert booting["console_url"].startswith("vnc://"), "its console is there to see what it does"
    seen, stuck = _follow(client, insid, lambda record: record["state"] != "booting", READY_TIMEOUT + 60)
    waited = time.monotonic() - booting_since
    print(f"booting for {waited:.1f} s, then {stuck['state_text']}")
    assert (stuck["state"], stuck["answering"], stuck["state_text"]) == ("running", False, "Running, not answering")
    assert waited >= READY_TIMEOUT - 10, "not before the time limit (less the fold's delays)"
    pages = _admin_pages(client, insid)
    assert pages.count("Running, not answering") == 2 and "open its console to see what it shows" in pages
    _stop_and_delete(client, insid)
