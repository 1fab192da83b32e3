"""The kiosk flow in a real browser: a classroom PC (a second host running only a node controller with ``nc.host_mode``
and ``nc.kiosk``, the all-in-one host as its CC, CLC and walrus) enrols with a PC join token of the students'
owner-group (issued on the all-in-one host), registers itself and the admin's Hosts page lists it online; the
administrator gives it the students' owner-group and defines a local desktop in that group; in the PC's own browser
the kiosk lists the desktop, Start pulls it onto the PC (progress bar) and runs it as a real QEMU VM with its console
on the PC's loopback, and Stop stops it.

The PC is a host of its own because the all-in-one host's node controller must stay a node for the cloud's
instances (the students' remote desktops): the CC never places those on a classroom PC. The two processes share no
message bus (the all-in-one host runs the in-process one), so the PC's heartbeats do not reach the CC: the PC is
online from its registration, and beats every 60 s so that it stays so for the test (heartbeats through a CC:
tests/integration/test_host_agent.py). The PC reaches its CC through a link of a few MB/s, as over a classroom's
LAN, rather than over the loopback, where the 10 MB test image arrives before the page can show the pull."""

from __future__ import annotations

import logging
import re
import socket
import threading
import time
from contextlib import contextmanager, suppress

import pytest
from playwright.sync_api import expect

from tests.e2e.browser.pages import VM_TIMEOUT_MS, choose, create_desktop, shot, wait_host_online
from tests.services import RoleProcess, kill_vms_under, processes_mentioning, wait_for

pytestmark = [pytest.mark.e2e]

logger = logging.getLogger(__name__)

PC_NAME = "pc-1"
PC_MAC = "52:54:00:e2:e0:01"
# Whether the kiosk page's bar showed the pull going on, watched from inside the page, where no render of it can be
# missed between two looks from outside.
WATCH_THE_PULL = """(insid) => {
    window.educloudPull = {shown: false, max: 0};
    const bar = document.querySelector(`li[data-insid="${insid}"] progress.pull`);
    const note = () => {
        if (bar.hidden) return;
        window.educloudPull.shown = true;
        window.educloudPull.max = Math.max(window.educloudPull.max, bar.value);
    };
    new MutationObserver(note).observe(bar, {attributes: true});
}"""


# The classroom's LAN as the PC sees it, each way: the 10 MB test image takes about four seconds to pull.
LAN_BYTES_PER_SECOND = 2_500_000


def _pump(source: socket.socket, target: socket.socket, bytes_per_second: int) -> None:
    """Pass what ``source`` sends on to ``target`` at ``bytes_per_second``; when either hangs up, both are shut (which
    also ends the pump of the other way)."""
    try:
        while data := source.recv(64 * 1024):
            target.sendall(data)
            time.sleep(len(data) / bytes_per_second)
    except OSError as exc:
        logger.debug("slow link: %s", exc)
    finally:
        for side in (source, target):
            with suppress(OSError):  # already shut by the other way's pump
                side.shutdown(socket.SHUT_RDWR)
            side.close()


@contextmanager
def slow_link(port: int, bytes_per_second: int):
    """A TCP relay on a loopback port of its own to ``port``, passing at most ``bytes_per_second`` each way per
    connection; yields its URL."""
    listener = socket.create_server(("127.0.0.1", 0))

    def accept() -> None:
        while True:
            try:
                client, _address = listener.accept()
                upstream = socket.create_connection(("127.0.0.1", port))
            except OSError:
                return  # the listener is closed: the link is gone
            for source, target in ((client, upstream), (upstream, client)):
                threading.Thread(target=_pump, args=(source, target, bytes_per_second), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        listener.close()


@pytest.fixture
def classroom_pc(host, built_classroom, tmp_path_factory):
    """The classroom PC's node controller as a process of its own, enrolled with a PC join token of the classroom's
    owner-group, reaching the all-in-one host through the classroom's LAN (``slow_link``); its VMs are killed and
    its log printed afterwards."""
    aio, _image = host
    workdir = tmp_path_factory.mktemp("browser-pc")
    token = aio.issue_join_token("pc", owner_group=built_classroom.group)
    with slow_link(aio.port, LAN_BYTES_PER_SECOND) as cloud:
        pc = RoleProcess(workdir, PC_NAME, "nc", {
            "cloud": {"clc_url": cloud, "cc_url": cloud, "walrus_url": cloud, "heartbeat_seconds": "60"},
            "host": {"mac": PC_MAC},
            "nc": {"host_mode": "true", "kiosk": "true", "stop_timeout_seconds": "5"}}, join_token=token)
        pc.start().wait_listening()
        try:
            yield pc
        finally:
            pc.stop()
            leftovers = kill_vms_under(workdir)
            print(f"----- {PC_NAME} log -----\n{pc.tail(40)}")
            assert not leftovers, f"VM processes were left running on the PC: {leftovers}"


def test_a_classroom_pc_registers_and_its_kiosk_pulls_runs_and_stops_the_groups_local_desktop(
        host, built_classroom, classroom_pc, admin_page, browser):
    page, classroom = admin_page, built_classroom
    row = wait_host_online(page, PC_NAME)
    expect(row).to_contain_text(PC_MAC)
    shot(page, "hosts-pc-online")

    row.get_by_role("link", name="Edit").click()
    expect(page.get_by_role("heading", name=f"Edit {PC_NAME}")).to_be_visible()
    choose(page.locator("#id_owner_group"), f"({classroom.group})")
    page.locator("#id_auto_sync").uncheck()  # else the PC would pull the desktop by itself once it lists it
    shot(page, "host-form")
    page.get_by_role("button", name="Save").click()
    expect(page.locator(".flash").first).to_contain_text(f"{PC_NAME} saved")
    expect(wait_host_online(page, PC_NAME)).to_contain_text(classroom.group)

    desktop_name = "Kiosk desktop of class 1"
    insid = create_desktop(page, desktop_name, classroom.image_id, classroom.group, kind="lvd")
    page.get_by_role("link", name="Push to PCs").click()
    expect(page.locator("#push-targets")).to_contain_text(PC_NAME)  # the PC's group offers it
    shot(page, "push-targets")

    kiosk_context = browser.new_context(viewport={"width": 1280, "height": 900})
    kiosk_context.set_default_timeout(30_000)
    try:
        kiosk = kiosk_context.new_page()
        kiosk.educloud_shots = page.educloud_shots
        kiosk.goto(f"http://127.0.0.1:{classroom_pc.port}/nc/kiosk/")
        expect(kiosk.locator("#link")).to_have_text("Connected to the cloud")
        card = kiosk.locator(f'li[data-insid="{insid}"]')
        expect(card.locator(".name")).to_have_text(desktop_name)
        expect(card.locator(".state")).to_have_text("Not on this PC yet")
        shot(kiosk, "kiosk-listed")

        kiosk.evaluate(WATCH_THE_PULL, insid)
        card.locator("button.start").click()
        expect(card.locator("progress.pull")).to_be_visible()
        kiosk.wait_for_function("() => window.educloudPull.max > 0")  # the bar moves while the image arrives
        shot(kiosk, "kiosk-pulling")
        expect(card.locator(".state")).to_have_text("Running", timeout=VM_TIMEOUT_MS)
        console = card.locator(".reach a").first
        expect(console).to_have_attribute("href", re.compile(r"^vnc://127\.0\.0\.1:\d+$"))
        expect(card.locator("progress.pull")).to_be_hidden()
        assert processes_mentioning(insid), "the kiosk says running, but no VM of the desktop runs on the PC"
        shot(kiosk, "kiosk-running")

        card.locator("button.stop").click()
        expect(card.locator(".state")).to_have_text("Ready", timeout=60_000)  # stopped; its image stays on the PC
        expect(card.locator(".reach")).to_be_hidden()
        wait_for("the desktop's VM to end", lambda: not processes_mentioning(insid), timeout=30)
        shot(kiosk, "kiosk-stopped")
    finally:
        kiosk_context.close()
