"""The classroom in a real browser, on the all-in-one host with real QEMU guests: a desktop pool of six
non-persistent desktops keeping two ready; six students log in one after another, each presses "Get a desktop" and
sees their running desktop's screen in the page; a desktop stopped comes back clean (a file written in its guest is
gone at its next run). Their teacher's class console shows every desktop's state, holder and a thumbnail of its real
screen, stops and starts a selection and the whole class, and watches a student's screen with no key reaching the
guest, even from a browser whose noVNC was altered to send keys; another school's teacher finds no such class.

What a guest did is read where the guest itself writes it: the commands typed in its console write to its serial
port (``/dev/ttyS0``), which the node keeps in the VM's ``serial.log``. A pool's desktops forward no guest port, so
the test image's page and CGI are out of reach; its console's shell (any login name, no password) is not."""

from __future__ import annotations

import re
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.browser.pages import (
    CANVAS_SHOWS_A_SCREEN,
    SHOTS,
    VM_TIMEOUT_MS,
    login,
    person_page,
    shot,
    type_on_console,
)
from tests.services import ConsoleClient, instance_record, wait_for

pytestmark = [pytest.mark.e2e]

SCHOOL, OTHER_SCHOOL, CLASS, CLASS_NAME = "edu.s1", "edu.s2", "edu.s1.c1", "7A"
STUDENTS = tuple(f"pupil{number}" for number in range(1, 7))
POOL_NAME = f"{CLASS_NAME} desktops"
TEACHER, OTHER_TEACHER = "teacher1", "teacher2"
PASSWORD = "Green-Otter-Violin-2031"
POOL_SIZE, MIN_READY = 6, 2
BUSY = ("scheduled", "preparing", "booting", "running", "stopping")
# What the guest's serial port shows once its consoles' login prompts are up (getty on tty1 and ttyS0 start together).
LOGIN_PROMPT = "login:"
# How long a console page may take to connect and show the screen of a desktop that runs.
CONSOLE_TIMEOUT_MS = 60_000
SERIAL_TIMEOUT = 90.0


@dataclass
class ClassPool:
    """The class's pool and its people, and the desktop each student got (filled in by the first test, or by
    ``seated`` when a later test runs alone)."""

    pool_id: str
    image_id: str
    desktops: dict[str, str] = field(default_factory=dict)


def _create(api: ConsoleClient, path: str, payload: dict) -> dict:
    return api.post(f"/clc/api/1.0/{path}/", payload)


def _pool_desktops(api: ConsoleClient, pool_id: str) -> list[dict]:
    return api.get(f"/clc/api/1.0/pools/{pool_id}/desktops/")


def _ready(api: ConsoleClient, pool_id: str) -> list[dict]:
    """The pool's free desktops that run and whose guest has come up (it has told its address)."""
    return [d for d in _pool_desktops(api, pool_id)
            if d["state"] == "running" and not d["assigned_to"] and d.get("guest_ip")]


@pytest.fixture(scope="module")
def class_pool(host, admin_api) -> ClassPool:
    """School edu.s1 with class edu.s1.c1 (six students) and teacher1 (a power user of the school), school edu.s2
    with teacher2, the test image as an image of edu.s1, and a pool of six non-persistent desktops of the class
    keeping two ready, made through the administrator's API; waits until the two ready ones run. Afterwards the
    pool keeps none ready and every desktop of it is stopped, so no guest outlives the module."""
    aio, image = host
    wait_for("the node, walrus and the cluster controller online", lambda: {
        (s["role"], s["state"]) for s in admin_api.get("/clc/api/1.0/status/")["services"]} >= {
        ("nc", "online"), ("walrus", "online"), ("cc", "online")}, timeout=60)
    for path, name, kind in ((SCHOOL, "School 1", "school"), (CLASS, CLASS_NAME, "class"),
                             (OTHER_SCHOOL, "School 2", "school")):
        _create(admin_api, "ownergroups", {"path": path, "name": name, "kind": kind})
    for username, role, group in ((TEACHER, "poweruser", SCHOOL), (OTHER_TEACHER, "poweruser", OTHER_SCHOOL),
                                  *((student, "user", CLASS) for student in STUDENTS)):
        _create(admin_api, "accounts", {"username": username, "first_name": username.capitalize(), "role": role,
                                        "owner_group": group, "password": PASSWORD})
    image_id = admin_api.upload_image(image, f"{CLASS_NAME} desktop", owner_group=SCHOOL)["image_id"]
    pool = _create(admin_api, "pools", {"name": POOL_NAME, "image": image_id, "vm_type": "tiny",
                                        "owner_group": CLASS, "min_ready": MIN_READY, "max_size": POOL_SIZE,
                                        "persistent": False})
    made = ClassPool(pool["pool_id"], image_id)
    try:
        wait_for(f"the pool to keep {MIN_READY} desktops ready",
                 lambda: len(_ready(admin_api, made.pool_id)) >= MIN_READY, timeout=VM_TIMEOUT_MS / 1000)
        yield made
    finally:
        _stop_the_pool(admin_api, made.pool_id)


def _stop_the_pool(api: ConsoleClient, pool_id: str) -> None:
    """Keep none ready and stop every busy desktop of the pool; wait until none runs."""
    api.request("PATCH", f"/clc/api/1.0/pools/{pool_id}/", {"min_ready": 0})
    for desktop in _pool_desktops(api, pool_id):
        if desktop["state"] in ("scheduled", "preparing", "booting", "running"):
            api.post(f"/clc/api/1.0/instances/{desktop['instance_id']}/stop/", {})
    wait_for("every desktop of the pool to stop", lambda: not [
        d["instance_id"] for d in _pool_desktops(api, pool_id) if d["state"] in BUSY], timeout=120)


def seated(host, admin_api, class_pool: ClassPool) -> dict[str, str]:
    """Each student's running desktop of the pool: those the first test gave them, or (when a test runs alone)
    claimed here through the API as each student, as the portal's Get a desktop does."""
    aio, _image = host
    if len(class_pool.desktops) < len(STUDENTS):
        for student in STUDENTS:
            claimed = ConsoleClient(aio.url, student, PASSWORD).post(
                f"/clc/api/1.0/pools/{class_pool.pool_id}/claim/", {})
            class_pool.desktops[student] = claimed["instance_id"]
    for student, insid in class_pool.desktops.items():
        _wait_guest_up(admin_api, insid, f"{student}'s desktop")
    return class_pool.desktops


def _wait_guest_up(api: ConsoleClient, insid: str, what: str) -> dict:
    """The desktop's record once it runs and its guest has told its address (its consoles are up)."""
    def probe():
        record = instance_record(api, insid) or {}
        if record.get("state") == "failed":
            pytest.fail(f"{what} ({insid}) failed: {record.get('message')}")
        return record if record.get("state") == "running" and record.get("guest_ip") else None

    return wait_for(f"{what} ({insid}) to run with its guest up", probe, timeout=VM_TIMEOUT_MS / 1000)


def serial_log(aio, insid: str) -> str:
    """What the guest of the desktop's current run wrote to its serial port (the node's ``serial.log``)."""
    path = Path(aio.dir) / "nc" / "vms" / insid / "serial.log"
    return path.read_text(errors="replace") if path.is_file() else ""


def _serial_line(aio, insid: str, line: str, timeout: float = SERIAL_TIMEOUT) -> str:
    """Wait until the guest's serial port shows ``line`` alone on a line; the whole log."""
    pattern = re.compile(rf"^{re.escape(line)}\r?$", re.MULTILINE)
    return wait_for(f"{insid}'s guest to write {line!r} to its serial port",
                    lambda: (log := serial_log(aio, insid)) and pattern.search(log) and log, timeout=timeout)


def _open_console(page: Page, insid: str) -> None:
    """The student's console page of their desktop, connected and showing its screen."""
    page.goto(f"/portal/desktops/{insid}/")
    expect(page.locator("#state")).to_have_text("Running", timeout=VM_TIMEOUT_MS)
    expect(page.locator("#console-note")).to_contain_text("Connected", timeout=CONSOLE_TIMEOUT_MS)
    page.wait_for_function(CANVAS_SHOWS_A_SCREEN, timeout=CONSOLE_TIMEOUT_MS, polling=500)
    _shown_large(page)


def _shown_large(page: Page) -> None:
    """The console's screen takes room on the page (noVNC scales it to its box: a box of no height shows nothing)."""
    box = page.locator("#screen canvas").bounding_box()
    assert box and box["width"] >= 640 and box["height"] >= 300, f"the screen is shown at {box}"


def _shell(page: Page, aio, insid: str) -> None:
    """Log in at the guest's console prompt (any name opens a root shell) once its prompts are up."""
    wait_for(f"{insid}'s guest to show its login prompts", lambda: LOGIN_PROMPT in serial_log(aio, insid),
             timeout=SERIAL_TIMEOUT)
    type_on_console(page, "root\n")


def _claim_in_portal(page: Page, pool_id: str) -> str:
    """On the portal: the pool's Get a desktop; the browser lands on the desktop's console page. Its id."""
    page.goto("/portal/")
    button = page.locator(f"li.pool[data-pool='{pool_id}'] button[data-action=claim]")
    expect(button).to_have_text("Get a desktop")
    button.click()
    expect(page).to_have_url(re.compile(r"/portal/desktops/[^/]+/$"))
    return re.search(r"/portal/desktops/([^/]+)/$", page.url).group(1)


@pytest.mark.timeout(600)  # the pool's first desktops boot here, under TCG (the module's fixture is timed with it)
def test_six_students_each_get_a_running_desktop_of_the_pool_in_the_browser_and_a_stopped_one_comes_back_clean(
        request, host, browser, admin_api, class_pool):
    aio, _image = host
    folder = SHOTS / request.node.name
    ready_at_first = {d["instance_id"] for d in _ready(admin_api, class_pool.pool_id)}
    waited = {}
    for number, student in enumerate(STUDENTS, 1):
        with person_page(browser, aio.url, folder / student) as page:
            login(page, student, PASSWORD)
            expect(page).to_have_url(re.compile(r"/portal/$"))
            shot(page, "portal")
            started = time.monotonic()
            insid = _claim_in_portal(page, class_pool.pool_id)
            assert insid not in class_pool.desktops.values(), f"{student} got {insid}, which another student holds"
            class_pool.desktops[student] = insid
            if number <= MIN_READY:  # the pool's ready desktops go to the first students as they are
                assert insid in ready_at_first, f"{student} got {insid}, not one of the ready {ready_at_first}"
                expect(page.locator("#state")).to_have_text("Running", timeout=5_000)
            shot(page, "desktop-page")
            expect(page.locator("#state")).to_have_text("Running", timeout=VM_TIMEOUT_MS)
            expect(page.locator("#console-note")).to_contain_text("Connected", timeout=CONSOLE_TIMEOUT_MS)
            page.wait_for_function(CANVAS_SHOWS_A_SCREEN, timeout=CONSOLE_TIMEOUT_MS, polling=500)
            _shown_large(page)
            waited[student] = round(time.monotonic() - started, 1)
            shot(page, "console")
    print(f"seconds from Get a desktop to a connected console, by student: {waited}")

    held = {d["instance_id"]: d["assigned_to"] for d in _pool_desktops(admin_api, class_pool.pool_id)}
    assert len(held) == POOL_SIZE, f"the pool has {len(held)} desktops, not {POOL_SIZE}: {held}"
    assert held == {insid: student for student, insid in class_pool.desktops.items()}, held

    # The first student writes a file in their guest, stops the desktop and gets a desktop again: the file is gone.
    student, insid = STUDENTS[0], class_pool.desktops[STUDENTS[0]]
    nonce = secrets.token_hex(4)
    with person_page(browser, aio.url, folder / f"{student}-again") as page:
        login(page, student, PASSWORD)
        _open_console(page, insid)
        _shell(page, aio, insid)
        type_on_console(page, f"echo kept-{nonce} >/data/mark.txt; sync; cat /data/mark.txt >/dev/ttyS0\n")
        _serial_line(aio, insid, f"kept-{nonce}")
        shot(page, "file-written")
        runs = instance_record(admin_api, insid)["runs"]

        page.on("dialog", lambda dialog: dialog.accept())  # "Stop …? Unsaved work in it is lost."
        page.locator("button[data-action=stop]").click()
        expect(page.locator(".flash").first).to_contain_text("is stopping")
        shot(page, "stopping")
        # Once its run has ended it is the pool's again (and the pool may start it at once to keep one ready): the
        # page says so and offers the pool's next desktop.
        returned = page.locator("#returned")
        expect(returned).to_contain_text("went back to", timeout=90_000)
        expect(page.locator("#state")).to_have_text("Stopped")
        assert not instance_record(admin_api, insid)["assigned_to"]
        shot(page, "given-back")

        returned.locator("button", has_text="Get a desktop").click()
        expect(page).to_have_url(re.compile(r"/portal/desktops/[^/]+/$"))
        again = re.search(r"/portal/desktops/([^/]+)/$", page.url).group(1)
        # The pool's only free desktop is the one given back: the same desktop, on a new run from the image.
        assert again == insid, f"{student} got {again}, not the free {insid}"
        _open_console(page, insid)
        assert instance_record(admin_api, insid)["runs"] > runs, "the desktop did not run again"
        _shell(page, aio, insid)
        type_on_console(page, f"cat /data/mark.txt >/dev/ttyS0 2>&1; echo checked-{nonce} >/dev/ttyS0\n")
        log = _serial_line(aio, insid, f"checked-{nonce}")
        shot(page, "file-gone")
    assert f"kept-{nonce}" not in log, "the file written in the guest's last run is still on its disk"
    assert "can't open '/data/mark.txt': No such file or directory" in log, log[-2000:]


# noVNC as a tampering watcher would alter it: it ignores "view only", so every key is sent (and counted); what
# stops the keys is the console proxy alone. Served in place of noVNC's core/rfb.js, which it imports (as
# rfb.js?genuine, a URL of its own) and extends.
TAMPERED_RFB = """
import RFB from "./rfb.js?genuine";
window.educloudKeysSent = 0;
export default class TamperedRFB extends RFB {
  get viewOnly() { return false; }
  set viewOnly(value) { window.educloudAskedViewOnly = value; }
  sendKey(keysym, code, down) {
    if (down !== undefined && this._rfbConnectionState === "connected") window.educloudKeysSent += 1;
    super.sendKey(keysym, code, down);
  }
}
"""

# Whether every thumbnail on the class console is a loaded 320-pixel-wide picture with a spread of grey levels (a
# real screen, not a blank or single-colour one).
THUMBNAILS_SHOW_SCREENS = """(count) => {
  const pictures = [...document.querySelectorAll("#desktops img[data-field=screen]")];
  return pictures.length === count && pictures.every((picture) => {
    if (picture.hidden || !picture.complete || picture.naturalWidth !== 320) return false;
    const canvas = document.createElement("canvas");
    canvas.width = picture.naturalWidth;
    canvas.height = picture.naturalHeight;
    const context = canvas.getContext("2d");
    context.drawImage(picture, 0, 0);
    const pixels = context.getImageData(0, 0, canvas.width, canvas.height).data;
    let n = 0, sum = 0, squares = 0;
    for (let i = 0; i < pixels.length; i += 4) {
      const grey = 0.299 * pixels[i] + 0.587 * pixels[i + 1] + 0.114 * pixels[i + 2];
      n += 1; sum += grey; squares += grey * grey;
    }
    return Math.sqrt(squares / n - (sum / n) ** 2) > 5;
  });
}"""


def _tamper_with_novnc(page: Page) -> None:
    def is_novnc_rfb(url: str) -> bool:
        return url.endswith("/core/rfb.js")  # the genuine module's URL ends in "?genuine"

    page.context.route(is_novnc_rfb, lambda route: route.fulfill(status=200, content_type="text/javascript",
                                                                 body=TAMPERED_RFB))


def _row(page: Page, insid: str):
    return page.locator(f"#desktops li.screen[data-insid='{insid}']")


def _act(page: Page, action: str, says: str) -> str:
    """Press the class console's ``action`` button, accept its question (checked to contain ``says``); the
    question and the page's message afterwards."""
    asked = []

    def answer(dialog):
        asked.append(dialog.message)
        dialog.accept()

    page.once("dialog", answer)
    with page.expect_navigation():
        page.locator(f"#class-form button[name=action][value={action}]").click()
    if says:
        assert asked and says in asked[0], f"{action} asked {asked!r}, not about {says!r}"
    else:
        assert not asked, f"{action} asked {asked!r}"
    return page.locator(".flash").first.inner_text()


def _states(page: Page, desktops, state: str, timeout_ms: float = VM_TIMEOUT_MS) -> None:
    for insid in desktops:
        expect(_row(page, insid).locator("[data-field=state]")).to_have_class(
            re.compile(rf"\b{state}\b"), timeout=timeout_ms)


@pytest.mark.timeout(600)
def test_the_teacher_sees_the_class_screens_watches_one_with_no_key_passing_and_stops_and_starts_the_class(
        request, host, browser, admin_api, page, class_pool):
    aio, _image = host
    desktops = seated(host, admin_api, class_pool)
    folder = SHOTS / request.node.name
    teacher = page
    login(teacher, TEACHER, PASSWORD)
    teacher.get_by_role("link", name="Desktop pools").click()
    teacher.get_by_role("link", name="Class consoles").click()
    teacher.locator("#classes").get_by_role("link", name=CLASS_NAME).click()
    expect(teacher).to_have_url(re.compile(rf"/clc/class/{re.escape(CLASS)}/$"))
    expect(teacher.locator("#desktops li.screen")).to_have_count(POOL_SIZE)
    for student, insid in desktops.items():
        expect(_row(teacher, insid).locator("[data-field=holder]")).to_have_text(student)
    _states(teacher, desktops.values(), "running", 10_000)
    teacher.wait_for_function(THUMBNAILS_SHOW_SCREENS, arg=POOL_SIZE, timeout=60_000, polling=1000)
    shot(teacher, "class-console-with-screens")

    # Watching: the first student's shell is open in their console; the teacher's tampered noVNC types a line
    # that would write a marker to the guest's serial port, then the student types one. Only the student's runs.
    student, insid = STUDENTS[0], desktops[STUDENTS[0]]
    nonce = secrets.token_hex(4)
    with person_page(browser, aio.url, folder / student) as student_page, \
            person_page(browser, aio.url, folder / "watching") as watcher:
        login(student_page, student, PASSWORD)
        _open_console(student_page, insid)
        _shell(student_page, aio, insid)

        _tamper_with_novnc(watcher)
        login(watcher, TEACHER, PASSWORD)
        watcher.goto(f"/clc/class/{CLASS}/")
        _row(watcher, insid).get_by_role("link", name="watch").click()
        expect(watcher).to_have_url(re.compile(rf"/clc/class/{re.escape(CLASS)}/watch/{insid}/$"))
        expect(watcher.locator("#console-note")).to_have_text("Watching.", timeout=CONSOLE_TIMEOUT_MS)
        watcher.wait_for_function(CANVAS_SHOWS_A_SCREEN, timeout=CONSOLE_TIMEOUT_MS, polling=500)
        _shown_large(watcher)
        assert watcher.evaluate("window.educloudAskedViewOnly") is True, "the watch page did not ask for view only"
        watched = f"watched-{nonce}"
        type_on_console(watcher, f"echo {watched} >/dev/ttyS0\n")
        sent = watcher.evaluate("window.educloudKeysSent")
        assert sent >= 2 * len(f"echo {watched} >/dev/ttyS0\n"), f"the altered noVNC sent only {sent} key events"
        shot(watcher, "watching-after-typing")

        type_on_console(student_page, f"echo after-{nonce} >/dev/ttyS0\n")
        log = _serial_line(aio, insid, f"after-{nonce}")
        assert watched not in log, "a key typed while watching reached the guest"
        # The proxy dropped the keys and went on: the teacher still watches the student's screen.
        expect(watcher.locator("#console-note")).to_have_text("Watching.")
        assert watcher.evaluate(CANVAS_SHOWS_A_SCREEN), "the watched screen went blank"
        shot(watcher, "still-watching")
        shot(student_page, "student-console")

    # The lesson is over: the pool keeps none ready, so the desktops the teacher stops stay stopped.
    ConsoleClient(aio.url, TEACHER, PASSWORD).request("PATCH", f"/clc/api/1.0/pools/{class_pool.pool_id}/",
                                                      {"min_ready": 0})
    teacher.goto(f"/clc/class/{CLASS}/")
    ticked = [desktops[student] for student in STUDENTS[-2:]]
    for insid in ticked:
        _row(teacher, insid).locator("input[name=selected]").check()
    said = _act(teacher, "stop", "the 2 ticked desktops")
    assert said.startswith("Stop: 2 desktops"), said
    _states(teacher, ticked, "stopped", 90_000)
    for insid in ticked:  # back in the pool, for the next student to come
        expect(_row(teacher, insid).locator("[data-field=holder]")).to_have_text("free")
    _states(teacher, [insid for insid in desktops.values() if insid not in ticked], "running", 1000)
    shot(teacher, "two-stopped")

    said = _act(teacher, "start", "")
    assert said.startswith(f"Start: 2 desktops; {POOL_SIZE - 2} left as they were"), said
    _states(teacher, desktops.values(), "running")
    shot(teacher, "all-started")

    said = _act(teacher, "stop", f"all {POOL_SIZE} desktops")
    assert said.startswith(f"Stop: {POOL_SIZE} desktops"), said
    _states(teacher, desktops.values(), "stopped", 90_000)
    expect(teacher.locator("#desktops [data-field=no-screen]:visible")).to_have_count(POOL_SIZE, timeout=10_000)
    shot(teacher, "all-stopped")


def test_another_schools_teacher_finds_no_such_class(page, admin_api, class_pool):
    desktop = _pool_desktops(admin_api, class_pool.pool_id)[0]["instance_id"]
    login(page, OTHER_TEACHER, PASSWORD)
    for path in (f"/clc/class/{CLASS}/", f"/clc/class/{CLASS}/status/", f"/clc/class/{CLASS}/watch/{desktop}/",
                 f"/clc/class/{CLASS}/screens/{desktop}.png"):
        response = page.goto(path)
        assert response.status == 404, f"{OTHER_TEACHER} got {response.status} for {path}"
    page.goto(f"/clc/class/{CLASS}/")
    expect(page.get_by_role("heading", name="Not found")).to_be_visible()
    expect(page.locator("body")).not_to_contain_text(POOL_NAME)
    shot(page, "other-school-not-found")
    page.goto("/clc/class/")
    expect(page.locator("body")).not_to_contain_text(CLASS)
    shot(page, "other-school-classes")
