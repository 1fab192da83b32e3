"""What the browser tests do on eduCloud's pages: screenshots, logging in, and the administrator's steps that build
a classroom (an image with its disk file, an owner-group, two student accounts, a desktop assigned to a student)."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path

from playwright.sync_api import Locator, Page, expect
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

from tests.services import ARTIFACTS

SHOTS = ARTIFACTS / "browser"
# A VM under TCG boots in 5-10 s; the image is copied to the node first. Generous, so a slow CI machine passes.
VM_TIMEOUT_MS = 180_000
SHOT_TIMEOUT_MS = 20_000


@dataclass
class Classroom:
    """What the administrator makes for the student tests; ids are filled in once made."""

    group: str = "edu.class1"
    students: tuple[str, str] = ("student1", "student2")
    password: str = "Blue-Giraffe-Lamp-2024"
    image_name: str = "Maths lab desktop"
    desktop_name: str = "Desktop of student1"
    image_id: str = ""
    desktop_id: str = ""


def shot(page: Page, name: str) -> Path:
    """A full-page PNG at tests/artifacts/browser/<test name>/<NN-name>.png, numbered in the order taken."""
    shots = page.educloud_shots
    shots["taken"] += 1
    path = shots["folder"] / f"{shots['taken']:02d}-{name}.png"
    try:
        page.screenshot(path=str(path), full_page=True, timeout=SHOT_TIMEOUT_MS)
    except PlaywrightTimeoutError:
        # Headless Chromium now and then never finishes a full-page capture (seen once under load, after "fonts
        # loaded"); the visible part is still worth keeping, and a second hang fails the test.
        page.screenshot(path=str(path), animations="disabled", timeout=SHOT_TIMEOUT_MS)
    return path


def login(page: Page, username: str, password: str) -> None:
    """Log in on the console's login page; afterwards the browser is wherever the console sends this person."""
    page.goto("/clc/login/")
    expect(page.get_by_role("heading", name="Log in to the admin console")).to_be_visible()
    page.locator("input[name=username]").fill(username)
    page.locator("input[name=password]").fill(password)
    shot(page, f"login-{username}")
    page.get_by_role("button", name="Log in").click()
    page.wait_for_load_state()
    assert "/clc/login/" not in page.url, f"{username} could not log in: {page.locator('.error').all_inner_texts()}"


def choose(select: Locator, contains: str) -> None:
    """Pick the option of ``select`` whose label contains ``contains`` (labels carry sizes and ids the test does not
    know in advance)."""
    options = select.locator("option", has_text=contains)
    expect(options).to_have_count(1)
    select.select_option(label=options.inner_text().strip())


def wait_services_online(page: Page, roles: tuple[str, ...] = ("walrus", "cc", "nc")) -> None:
    """On the System status page (it refreshes itself): wait until each role's service shows online."""
    for role in roles:
        row = page.locator("#services tbody tr").filter(has=page.locator("td", has_text=re.compile(f"^{role}$")))
        expect(row.locator(".state.online")).to_be_visible(timeout=60_000)


def wait_host_online(page: Page, name: str, timeout: float = 60) -> Locator:
    """Hosts: reload the list (it does not refresh itself) until the classroom PC ``name`` shows online; its row."""
    deadline = time.monotonic() + timeout
    while True:
        page.goto(f"/clc/hosts/?q={name}")
        row = page.locator("#hosts tbody tr").filter(has=page.get_by_role("link", name=name, exact=True))
        if row.locator(".state.online").count():
            return row
        assert time.monotonic() < deadline, f"the Hosts page did not list {name} online within {timeout:.0f} s"
        page.wait_for_timeout(500)


def create_image(page: Page, name: str, disk: Path) -> str:
    """Images → New image, then upload ``disk`` on the image's page through its file input; waits for the progress
    bar to reach 100 % and the page to list the file as the current version. Returns the image id."""
    page.goto("/clc/images/")
    page.get_by_role("link", name="New image").click()
    expect(page.get_by_role("heading", name="New image")).to_be_visible()
    page.locator("#id_name").fill(name)
    page.locator("#id_usage").select_option("desktop")
    choose(page.locator("#id_owner_group"), "(edu)")
    shot(page, "image-form")
    page.get_by_role("button", name="Save").click()
    heading = page.get_by_role("heading", level=1)
    expect(heading).to_contain_text(name)
    image_id = heading.locator("small").inner_text().strip()
    expect(page.locator("#versions")).to_contain_text("No file uploaded yet.")

    page.locator("#upload-file").set_input_files(str(disk))
    # The page reloads itself once the upload is stored: watch the bar from inside the page, where it cannot be missed.
    page.evaluate("""() => {
        window.educloudMaxProgress = 0;
        const bar = document.getElementById("upload-progress");
        new MutationObserver(() => { window.educloudMaxProgress = Math.max(window.educloudMaxProgress, bar.value); })
            .observe(bar, {attributes: true});
        const watch = () => { window.educloudMaxProgress = Math.max(window.educloudMaxProgress, bar.value);
                              requestAnimationFrame(watch); };
        watch();
    }""")
    with page.expect_navigation(timeout=120_000):
        page.locator("#upload-go").click()
        page.wait_for_function("() => window.educloudMaxProgress >= 100", timeout=120_000)
        shot(page, "upload-done")
    expect(page.locator("#versions")).to_contain_text("current")
    expect(page.locator("#versions")).to_contain_text("qcow2")
    shot(page, "image-with-version")
    return image_id


def create_group(page: Page, path: str, name: str, instance_actions: tuple[str, ...]) -> None:
    """Owner-groups → new group at ``path``, then its permissions: ``instance_actions`` on instances only."""
    page.goto("/clc/groups/new/")
    expect(page.get_by_role("heading", name="New owner-group")).to_be_visible()
    page.locator("#id_path").fill(path)
    page.locator("#id_name").fill(name)
    shot(page, "group-form")
    page.get_by_role("button", name="Create").click()
    expect(page.get_by_role("heading", name=f"Owner-group {path}")).to_be_visible()
    for action in instance_actions:
        page.locator(f"#id_perm_instance_{action}").check()
    shot(page, "group-permissions")
    page.get_by_role("button", name="Save").click()
    expect(page.locator(".flash").first).to_contain_text(f"Owner-group {path} saved")


def create_student(page: Page, username: str, group: str, password: str) -> None:
    """Accounts → New account: a ``user`` of ``group`` with ``password``; the list then shows it."""
    page.goto("/clc/accounts/new/")
    expect(page.get_by_role("heading", name="New account")).to_be_visible()
    page.locator("#id_username").fill(username)
    page.locator("#id_first_name").fill(username.capitalize())
    page.locator("#id_role").select_option("user")
    choose(page.locator("#id_owner_group"), f"{group} (")  # this form labels groups "path (name)"
    page.locator("#id_password").fill(password)
    page.locator("#id_password2").fill(password)
    shot(page, f"account-form-{username}")
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_role("heading", name="Accounts")).to_be_visible()
    expect(page.locator(".flash").first).to_contain_text(f"Account {username} created.")


def create_desktop(page: Page, name: str, image_id: str, group: str, student: str = "", kind: str = "rvd") -> str:
    """Instances → New instance: a desktop of the image (remote by default, ``kind="lvd"`` for a local one), VM type
    tiny, in ``group``, assigned to ``student`` if given. Returns its instance id."""
    page.goto("/clc/instances/")
    page.get_by_role("link", name="New instance").click()
    expect(page.get_by_role("heading", name="New instance")).to_be_visible()
    page.locator("#id_name").fill(name)
    page.locator("#id_kind").select_option(kind)
    choose(page.locator("#id_image"), f"({image_id})")
    choose(page.locator("#id_vm_type"), "tiny (")
    choose(page.locator("#id_owner_group"), f"({group})")
    if student:
        choose(page.locator("#id_assigned_to"), student)
    shot(page, "instance-form")
    page.get_by_role("button", name="Save").click()
    heading = page.get_by_role("heading", level=1)
    expect(heading).to_contain_text(name)
    insid = re.search(r"/clc/instances/([^/]+)/$", page.url).group(1)
    shot(page, "instance-page")
    return insid


def build_classroom(page: Page, classroom: Classroom, disk: Path) -> None:
    """Every administrator step, in order, on an administrator's page; fills in the classroom's ids."""
    page.goto("/clc/")
    wait_services_online(page)
    classroom.image_id = create_image(page, classroom.image_name, disk)
    create_group(page, classroom.group, "Class 1", ("read", "execute"))
    for student in classroom.students:
        create_student(page, student, classroom.group, classroom.password)
    classroom.desktop_id = create_desktop(page, classroom.desktop_name, classroom.image_id, classroom.group,
                                          classroom.students[0])
