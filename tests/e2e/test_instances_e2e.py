"""End to end on the all-in-one host (every role in one process, the embedded defaults): the test image uploaded
with ``manage.py upload_image`` on the host, an instance defined and run as a real QEMU VM by the administrator
through the API, its page fetched through its port forward and its screen captured
with a real VNC client, then stopped and deleted with nothing left behind; and the image wizard used end to end
(a file written in the guest, the disk submitted as a new version, the new version booted and the file found)."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from luhyaapi.client import RoleClient
from tests.services import (
    ARTIFACTS,
    ConsoleClient,
    allinone_host,
    instance_record,
    processes_mentioning,
    wait_for,
)

pytestmark = [pytest.mark.e2e]

VNCDO = Path(sys.executable).with_name("vncdo")


@pytest.fixture(scope="module")
def host(tmp_path_factory):
    with allinone_host(tmp_path_factory.mktemp("aio"), ports=40, stop_timeout=30) as running:
        yield running


def _client(aio) -> ConsoleClient:
    """The first administrator, logged in to the host's console."""
    return ConsoleClient(aio.url)


def _cluster_instances(aio) -> list[dict]:
    """The CC's own list of the instances it placed, asked as the CLC asks it (signed by the host, whose roles
    include clc: the CC's API is for the CLC, not for people)."""
    return RoleClient(aio.url, aio.key(), timeout=60).get("/cc/api/1.0/instances/")


def _wait_state(client, insid: str, state: str, timeout: float = 180.0) -> dict:
    def probe():
        instance = instance_record(client, insid)
        if instance and instance["state"] == "failed":
            pytest.fail(f"instance {insid} failed: {instance['message']}")
        return instance if instance and instance["state"] == state else None

    return wait_for(f"{insid} to be {state}", probe, timeout)


def _upload_image(client, aio, image: Path) -> dict:
    wait_for("the node and walrus online", lambda: {
        (s["role"], s["state"]) for s in client.get("/clc/api/1.0/status/")["services"]} >= {
        ("nc", "online"), ("walrus", "online"), ("cc", "online")}, timeout=60)
    image_id = aio.upload_image(image, "eduCloud test VM")
    record = client.get(f"/clc/api/1.0/images/{image_id}/")
    assert record["current_version"] == 1 and record["owner_group"] == "edu", record
    return record


def _guest_page(url: str, path: str = "", timeout: float = 120.0) -> str:
    def probe():
        try:
            response = requests.get(url + path, timeout=5)
        except requests.RequestException:
            return None
        return response.text if response.status_code == 200 else None

    return wait_for(f"the guest's page {url}{path}", probe, timeout, every=1.0)


def _port_of(url: str) -> int:
    return int(url.rstrip("/").rsplit(":", 1)[1])


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def _security_types(port: int) -> bytes:
    """What the console offers a client that connects directly (RFB 3.8 security types)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as console:
        assert console.recv(12) == b"RFB 003.008\n"
        console.sendall(b"RFB 003.008\n")
        return console.recv(console.recv(1)[0])


def _capture_console(console: dict, png: Path) -> None:
    """Capture the VM's screen with vncdotool (a real RFB client, logging in with the run's password) and check
    it shows something."""
    from PIL import Image, ImageStat

    png.parent.mkdir(parents=True, exist_ok=True)
    port = _port_of(console["url"])
    subprocess.run([str(VNCDO), "-s", f"127.0.0.1::{port}", "-p", console["password"], "--timeout", "30",
                    "capture", str(png)], check=True, timeout=60)
    with Image.open(png) as screen:
        assert screen.size[0] >= 640 and screen.size[1] >= 400, screen.size
        spread = ImageStat.Stat(screen.convert("L")).stddev[0]
    assert spread > 5, f"the captured screen is blank (grey-level spread {spread:.1f})"


def test_an_instance_runs_serves_its_page_shows_its_console_and_leaves_nothing_when_deleted(host):
    aio, image_file = host
    client = _client(aio)
    image = _upload_image(client, aio, image_file)
    instance = client.post("/clc/api/1.0/instances/", {
        "name": "Test desktop", "kind": "rvd", "image": image["image_id"], "vm_type": "tiny", "owner_group": "edu",
        "services": [80]})
    insid = instance["instance_id"]

    started = time.monotonic()
    placed = client.post(f"/clc/api/1.0/instances/{insid}/run/", {})
    assert placed["state"] == "scheduled" and placed["node"] == "aio"
    running = _wait_state(client, insid, "running")
    print(f"run -> running in {time.monotonic() - started:.1f} s")
    task = client.get(f"/clc/api/1.0/tasks/{running['tid']}/")
    assert (task["phase"], task["state"], task["done"]) == ("editing", "running", True)

    page = _guest_page(running["access"]["http"])
    assert "eduCloud test VM" in page
    print(f"run -> page served through the forward in {time.monotonic() - started:.1f} s")
    guest_ip = wait_for("the guest's address", lambda: (instance_record(client, insid) or {}).get("guest_ip"), 60)
    assert guest_ip == "10.0.2.15"  # QEMU's user networking hands out this address by DHCP

    console = client.get(f"/clc/api/1.0/instances/{insid}/console/")
    assert console["url"] == running["console_url"] and len(console["password"]) == 8
    assert _security_types(_port_of(console["url"])) == bytes([2]), "the console lets nobody in without the password"
    _capture_console(console, ARTIFACTS / "console-running-instance.png")

    vm_dir = aio.dir / "nc" / "vms" / insid
    disk_dir = aio.dir / "nc" / "disks" / insid
    assert processes_mentioning(insid) and vm_dir.exists() and disk_dir.exists()
    client.post(f"/clc/api/1.0/instances/{insid}/stop/", {})
    _wait_state(client, insid, "stopped", timeout=90)
    wait_for("the VM process to end", lambda: not processes_mentioning(insid), 30)
    assert not disk_dir.exists(), "a temporary instance's disk is discarded on stop"
    assert not _listening(_port_of(running["console_url"]))
    assert not _listening(_port_of(running["access"]["http"]))
    assert _cluster_instances(aio)[0]["state"] == "stopped"

    client.request("DELETE", f"/clc/api/1.0/instances/{insid}/")
    wait_for(f"{insid} to be deleted", lambda: instance_record(client, insid) is None, 60)
    assert not vm_dir.exists() and not disk_dir.exists() and not processes_mentioning(insid)
    assert all(item["insid"] != insid for item in _cluster_instances(aio))


def test_the_image_wizard_modifies_an_image_and_the_new_version_boots_with_the_change(host):
    aio, image_file = host
    client = _client(aio)
    image = _upload_image(client, aio, image_file)
    build = client.post("/clc/api/1.0/builds/", {"image": image["image_id"], "vm_type": "tiny"})
    tid = build["tid"]
    assert tid.startswith(f"{image['image_id']}:{image['image_id']}:ins-")

    client.post(f"/clc/api/1.0/builds/{tid}/prepare/", {})
    wait_for("the prepare step to finish", lambda: (lambda b: b["phase"] == "preparing" and b["done"])(
        client.get(f"/clc/api/1.0/builds/{tid}/")), 180)
    client.post(f"/clc/api/1.0/builds/{tid}/run/", {})
    vm = wait_for("the wizard's VM to run", lambda: (lambda b: b["instance"]["state"] == "running" and b["instance"])(
        client.get(f"/clc/api/1.0/builds/{tid}/")), 180)
    assert vm["console_url"].startswith("vnc://")
    written = _guest_page(vm["access"]["http"], "cgi-bin/write?name=wizard.txt&text=made-in-the-wizard")
    assert "wizard.txt" in written

    client.post(f"/clc/api/1.0/builds/{tid}/stop/", {})
    wait_for("the wizard's VM to stop", lambda: client.get(f"/clc/api/1.0/builds/{tid}/")["instance"]["state"]
              == "stopped", 90)
    client.post(f"/clc/api/1.0/builds/{tid}/submit/", {})
    done = wait_for("the submit to finish", lambda: (lambda b: b["phase"] == "submitting" and b["done"] and b)(
        client.get(f"/clc/api/1.0/builds/{tid}/")), 300)
    assert done["instance"] is None, "the wizard's VM is removed after the submit"
    modified = client.get(f"/clc/api/1.0/images/{image['image_id']}/")
    assert modified["current_version"] == 2 and modified["version"] == "1.0.1"
    assert [v["number"] for v in modified["versions"]] == [2, 1]

    instance = client.post("/clc/api/1.0/instances/", {
        "name": "After the wizard", "kind": "rvd", "image": image["image_id"], "vm_type": "tiny",
        "owner_group": "edu", "services": [80]})
    client.post(f"/clc/api/1.0/instances/{instance['instance_id']}/run/", {})
    running = _wait_state(client, instance["instance_id"], "running")
    assert _guest_page(running["access"]["http"], "cgi-bin/read?name=wizard.txt").strip() == "made-in-the-wizard"
    client.request("DELETE", f"/clc/api/1.0/instances/{instance['instance_id']}/")
    wait_for("the instance to be deleted", lambda: instance_record(client, instance["instance_id"]) is None, 90)


def test_a_running_vm_survives_a_restart_of_the_node_controller_and_is_taken_back(host):
    aio, image_file = host
    client = _client(aio)
    image = _upload_image(client, aio, image_file)
    insid = client.post("/clc/api/1.0/instances/", {
        "name": "Survivor", "kind": "vs", "image": image["image_id"], "vm_type": "tiny", "owner_group": "edu",
        "services": [80]})["instance_id"]
    client.post(f"/clc/api/1.0/instances/{insid}/run/", {})
    running = _wait_state(client, insid, "running")
    _guest_page(running["access"]["http"])
    vm_pids = processes_mentioning(insid)

    aio.kill()  # the node controller dies at once (with the CLC and CC of this all-in-one host)
    assert processes_mentioning(insid) == vm_pids, "the VM runs on without its node controller"
    aio.start().wait_listening()
    assert "eduCloud test VM" in _guest_page(running["access"]["http"])
    assert _wait_state(client, insid, "running")["node"] == "aio"

    client.post(f"/clc/api/1.0/instances/{insid}/stop/", {})
    _wait_state(client, insid, "stopped", timeout=90)
    wait_for("the adopted VM to end", lambda: not processes_mentioning(insid), 30)
    client.request("DELETE", f"/clc/api/1.0/instances/{insid}/")
    wait_for(f"{insid} to be deleted", lambda: instance_record(client, insid) is None, 60)
