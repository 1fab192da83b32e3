"""A classroom PC's node controller (``nc.host_mode``, ``nc.kiosk``) against a real CC and CLC (this test server):
it registers the PC as a host and heartbeats it through its CC, so the CLC has it online (and offline once its
beats stop arriving); its kiosk pulls a local desktop through the chain walrus -> CC -> PC with progress, runs it as
a real QEMU VM on the PC's loopback, stops it, and with the CC unreachable still lists and runs it from the PC's
cache, saying it is offline."""

from __future__ import annotations

import re
import socket
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest
import requests
from django.contrib.auth import get_user_model
from django.core.cache import cache

import cc.services.image_cache as cluster_cache_module
from cc.consumers.cc_status import CcStatusConsumer
from cc.services.nodes import NodeStatusRelay
from clc.consumers.clc_status import ClcStatusConsumer
from clc.services.images import create_image, finish_upload, start_upload
from clc.services.status import StatusFolder, host_key
from daemons.heartbeat import HeartbeatPublisher
from luhyaapi.bus import InProcessBus
from luhyaapi.queues import CLC_STATUS, cc_status
from luhyaapi.transfer import upload_file
from luhyaapi.trust import own_key
from luhyadb.models import Host, Server
from nc.drivers.qemu import QemuDriver
from nc.models import NodeInstance
from nc.services.images import node_cache
from nc.services.instances import vm_infos
from nc.tests.kiosk import PC_MAC, PC_NAME, make_school, reset_kiosk, school_group
from tests.services import ARTIFACTS, build_test_image, kill_vms_under, processes_mentioning, wait_for

pytestmark = [pytest.mark.database, pytest.mark.guest, pytest.mark.django_db(transaction=True)]

DESKTOPS = "/nc/kiosk/desktops/"
MATHS = "ins-0000a001"


@pytest.fixture(autouse=True)
def _fresh_kiosk(monkeypatch):
    reset_kiosk(monkeypatch)


class Running:
    """Background loops of the test (a CC relay, the CLC's fold, the PC's heartbeat), each stopped on its own."""

    def __init__(self) -> None:
        self.loops: list[tuple[threading.Event, threading.Thread]] = []

    def start(self, target) -> threading.Event:
        stop = threading.Event()
        thread = threading.Thread(target=target, args=(stop,), daemon=True)
        thread.start()
        self.loops.append((stop, thread))
        return stop

    def stop(self, stop: threading.Event) -> None:
        stop.set()
        for event, thread in self.loops:
            if event is stop:
                thread.join(timeout=15)
                assert not thread.is_alive()

    def stop_all(self) -> None:
        for stop, _thread in self.loops:
            self.stop(stop)


@pytest.fixture
def running():
    loops = Running()
    yield loops
    loops.stop_all()


def test_a_pcs_node_controller_registers_the_pc_and_heartbeats_it_online_through_its_cc(live_server, cloud_at,
                                                                                         tmp_path, running, client):
    cache.clear()
    config = cloud_at(live_server.url, name=PC_NAME, mac=PC_MAC, data_dir=tmp_path / "pc", host_mode=True,
                      heartbeat_seconds=0.5, db_touch_seconds=0)
    bus = InProcessBus()
    folder = StatusFolder(missed_heartbeats=3, db_touch_seconds=0)
    running.start(lambda stop: bus.consume(CLC_STATUS, ClcStatusConsumer(folder).consume, stop))
    relay = running.start(lambda stop: bus.consume(cc_status(config.cluster), CcStatusConsumer(
        NodeStatusRelay(bus, touch_seconds=0)).consume, stop))
    publisher = HeartbeatPublisher("nc", config, bus, vms=vm_infos)
    pc = running.start(publisher.run)

    host = wait_for("the PC to be registered", lambda: Host.objects.filter(mac=PC_MAC).first())
    assert (host.name, host.ip, host.cluster, host.state, host.heartbeat_seconds) == (
        PC_NAME, config.ip, config.cluster, "online", 0.5)
    assert host.memory_mb > 0 and host.disk_mb > 0
    node = Server.objects.get(role="nc", name=PC_NAME)
    assert (node.mac, node.cluster) == (PC_MAC, config.cluster)  # the same machine: it can be powered off as a PC

    registered_at = host.last_seen
    beaten = wait_for("heartbeats folded into the PC's record", lambda: Host.objects.get(mac=PC_MAC).last_seen
                      > registered_at and Host.objects.get(mac=PC_MAC))
    assert beaten.state == "online"
    report = wait_for("a later heartbeat in the status cache", lambda: (cache.get(host_key(PC_MAC)) or {}).get(
        "seq", 0) >= 2 and cache.get(host_key(PC_MAC)))
    assert (report["type"], report["state"], report["name"]) == ("hoststatus", "online", PC_NAME)
    client.force_login(get_user_model().objects.create_user("boss", is_staff=True, is_superuser=True))
    status = client.get("/clc/api/1.0/status/").json()
    assert [(row["mac"], row["state"]) for row in status["hosts"]] == [(PC_MAC, "online")]

    # What the kiosk runs travels up with the node controller's next beat, and the Hosts page shows it in the PC's
    # row (counted: this test's CLC has no record of the desktop to name it by).
    def running_cell() -> str:
        page = client.get("/clc/hosts/").content.decode()
        return re.search(r'<td class="running">(.*?)</td>', page, re.S)[1]

    assert "nothing" in running_cell()
    NodeInstance.objects.create(instance_id="ins-0000a001", tid="kiosk:ins-0000a001", state="running")
    wait_for("the Hosts page to show the PC's run", lambda: "1 other" in running_cell())
    NodeInstance.objects.filter(instance_id="ins-0000a001").delete()
    wait_for("the Hosts page to show the run ended", lambda: "nothing" in running_cell())

    # The PC's beats stop arriving (its CC relays nothing more): after three missed beats it is offline.
    running.stop(relay)
    time.sleep(3 * 0.5 + 0.5)
    assert host_key(PC_MAC) in folder.sweep()
    assert Host.objects.get(mac=PC_MAC).state == "offline"

    # They arrive again, and the node controller stops on purpose: the PC is online, then stopped.
    running.start(lambda stop: bus.consume(cc_status(config.cluster), CcStatusConsumer(
        NodeStatusRelay(bus, touch_seconds=0)).consume, stop))
    wait_for("the PC online again", lambda: Host.objects.get(mac=PC_MAC).state == "online")
    running.stop(pc)
    wait_for("the PC stopped", lambda: Host.objects.get(mac=PC_MAC).state == "stopped")


# The kiosk with real QEMU


@pytest.fixture
def pc_with_desktops(live_server, cloud_at, tmp_path, monkeypatch):
    """The PC's node controller (QEMU, kiosk on) with this test server as its CC, CLC and walrus; the project's test
    image uploaded to walrus as the image of the Maths lab desktop. VMs left by a failure are killed afterwards."""
    availability = QemuDriver.probe()
    if not availability.available:
        pytest.skip(f"qemu: {availability.reason}")
    image_file = build_test_image()
    data_dir = tmp_path / "pc"
    config = cloud_at(live_server.url, name=PC_NAME, mac=PC_MAC, data_dir=data_dir, host_mode=True, kiosk=True,
                      hypervisor="qemu", vm_stop_timeout=30)
    monkeypatch.setattr(cluster_cache_module, "_caches", {})
    Server.objects.create(name="aio", role="walrus", ip="127.0.0.1", cluster=config.cluster, api_url=live_server.url,
                          state="online")
    image = create_image(name="Maths", owner_group=school_group())
    upload = start_upload(image, image_file.stat().st_size)
    upload_file(config.walrus_url, own_key(), image_file, image.image_id, upload_id=upload["upload_id"])
    finish_upload(image, upload["upload_id"])
    make_school(image, auto_sync=False)  # this test pulls on Start, so nothing may be pulled in the background
    try:
        yield config, image
    finally:
        leftovers = kill_vms_under(data_dir)
        assert not leftovers, f"VM processes were left running: {leftovers}"


class Browser:
    """The PC's browser on the kiosk page (a real HTTP client through the test server, with the page's CSRF token)."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.session = requests.Session()
        page = self.session.get(f"{base}/nc/kiosk/", timeout=30)
        assert page.status_code == 200, page.text
        self.token = re.search(r'"csrf": "([^"]+)"', page.text)[1]

    def listing(self, refresh: bool = False) -> dict:
        answer = self.session.get(f"{self.base}{DESKTOPS}" + ("?refresh=1" if refresh else ""), timeout=30)
        assert answer.status_code == 200, answer.text
        return answer.json()

    def desktop(self, insid: str, refresh: bool = False) -> dict | None:
        return next((item for item in self.listing(refresh)["desktops"] if item["instance_id"] == insid), None)

    def post(self, insid: str, action: str) -> requests.Response:
        return self.session.post(f"{self.base}{DESKTOPS}{insid}/{action}/", headers={"X-CSRFToken": self.token},
                                 timeout=30)

    def wait_state(self, insid: str, state: str, timeout: float = 180.0, seen: list | None = None) -> dict:
        def probe():
            item = self.desktop(insid) or {}
            if seen is not None and item:
                seen.append((item["state"], item["progress"]))
            if item.get("state") == "failed":
                pytest.fail(f"{insid} failed: {item['error']}")
            return item if item.get("state") == state else None

        return wait_for(f"{insid} to be {state}", probe, timeout, every=0.05)


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def _port_of(address: str) -> int:
    return int(address.rstrip("/").rsplit(":", 1)[1])


def _guest_page(url: str, timeout: float = 120.0) -> str:
    def probe():
        try:
            answer = requests.get(url, timeout=5)
        except requests.RequestException:
            return None
        return answer.text if answer.status_code == 200 else None

    return wait_for(f"the guest's page at {url}", probe, timeout, every=1.0)


def _run_and_check(browser: Browser, data_dir: Path, seen: list | None = None) -> dict:
    """Wait for the Maths lab to run, and check it is a QEMU VM of this PC reachable only on its loopback."""
    desktop = browser.wait_state(MATHS, "running", seen=seen)
    assert desktop["console"].startswith("vnc://127.0.0.1:")
    assert _listening(_port_of(desktop["console"]))
    assert desktop["access"]["http"].startswith("http://127.0.0.1:")
    assert any(str(data_dir).encode() in Path(f"/proc/{pid}/cmdline").read_bytes()
               for pid in processes_mentioning(MATHS))
    return desktop


def _stop_and_check(browser: Browser, desktop: dict) -> None:
    stopping = browser.post(MATHS, "stop")
    assert stopping.status_code == 202, stopping.text
    assert stopping.json()["state"] == "stopping"
    browser.wait_state(MATHS, "ready", timeout=90)
    wait_for("the VM process to end", lambda: not processes_mentioning(MATHS), 30)
    assert not _listening(_port_of(desktop["console"]))
    assert not NodeInstance.objects.filter(instance_id=MATHS).exists()  # a temporary desktop's disk is discarded


def test_the_kiosk_pulls_runs_and_stops_a_desktop_and_offline_still_runs_it_from_the_pcs_cache(
        pc_with_desktops, live_server, settings):
    config, image = pc_with_desktops
    browser = Browser(live_server.url.replace("localhost", "127.0.0.1"))
    assert browser.listing()["online"]
    assert browser.desktop(MATHS)["state"] == "not pulled"

    started = browser.post(MATHS, "start")
    assert started.status_code == 202, started.text
    assert (started.json()["state"], started.json()["progress"]) == ("pulling", 0)
    seen: list[tuple[str, int]] = []
    desktop = _run_and_check(browser, config.data_dir, seen)
    progress = [percent for state, percent in seen if state in ("pulling", "starting", "running")]
    assert progress == sorted(progress) and desktop["progress"] == 100, seen
    assert node_cache().path(image.image_id, 1).exists()  # pulled through the chain into the PC's cache
    assert "eduCloud test VM" in _guest_page(desktop["access"]["http"])

    other = browser.post("ins-0000a002", "start")
    assert other.status_code == 409 and MATHS in other.json()["detail"]  # one desktop at a time on a PC
    _stop_and_check(browser, desktop)

    settings.EDUCLOUD = replace(settings.EDUCLOUD, cc_url="http://127.0.0.1:9")
    offline = browser.listing(refresh=True)
    assert not offline["online"] and "cannot be reached" in offline["reason"]
    assert [(item["instance_id"], item["state"]) for item in offline["desktops"]] == [(MATHS, "ready")]
    started = browser.post(MATHS, "start")
    assert started.status_code == 202, started.text
    desktop = _run_and_check(browser, config.data_dir)
    assert "eduCloud test VM" in _guest_page(desktop["access"]["http"])
    assert not browser.listing()["online"]
    _stop_and_check(browser, desktop)


CHROMIUM = Path("/usr/bin/chromium")


def test_the_kiosk_page_in_a_browser_starts_a_desktop_shows_it_running_with_its_console_and_stops_it(
        pc_with_desktops, live_server, settings):
    if not CHROMIUM.is_file():
        pytest.skip(f"{CHROMIUM} is not installed; the test command (tests/run.sh) installs Debian's chromium")
    from playwright.sync_api import expect, sync_playwright

    # The guest is stopped before it has booted far enough to answer the power button: do not wait long for it.
    settings.EDUCLOUD = replace(settings.EDUCLOUD, vm_stop_timeout=3)
    base = live_server.url.replace("localhost", "127.0.0.1")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        try:
            page = chromium.new_page()
            page.set_default_timeout(60_000)
            page.goto(f"{base}/nc/kiosk/")
            expect(page.locator("#link")).to_have_text("Connected to the cloud")
            maths = page.locator(f'li[data-insid="{MATHS}"]')
            expect(maths.locator(".name")).to_have_text("Maths lab")
            expect(maths.locator(".state")).to_have_text("Not on this PC yet")
            expect(page.locator("li.desktop")).to_have_count(2)

            maths.locator("button.start").click()
            expect(maths.locator(".state")).to_have_text("Running")
            expect(maths.locator(".reach a").first).to_have_attribute("href", re.compile(r"^vnc://127\.0\.0\.1:\d+$"))
            expect(maths.locator("button.start")).to_be_disabled()
            expect(page.locator("#error")).to_be_hidden()
            assert processes_mentioning(MATHS)
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "kiosk-running-desktop.png"))

            maths.locator("button.stop").click()
            expect(maths.locator(".state")).to_have_text("Ready")
            wait_for("the VM process to end", lambda: not processes_mentioning(MATHS), 30)

            settings.EDUCLOUD = replace(settings.EDUCLOUD, cc_url="http://127.0.0.1:9")
            page.locator("#refresh").click()
            expect(page.locator("#link")).to_have_text("Offline")
            expect(page.locator("#offline")).to_contain_text("The desktops already on this PC can still be used")
            expect(page.locator("li.desktop")).to_have_count(1)
            expect(maths.locator(".state")).to_have_text("Ready")
        finally:
            chromium.close()
