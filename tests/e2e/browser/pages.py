"""What the browser tests do on eduCloud's pages: screenshots, logging in, pages of more people at once, a desktop's
screen in the in-browser console (whether it shows one, typing into it), and the administrator's steps that build a
classroom (an image with its disk file, an owner-group, two student accounts, a desktop assigned to a student)."""

from __future__ import annotations

import re
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

from playwright.sync_api import Browser, Locator, Page, expect
from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

from tests.services import ARTIFACTS

SHOTS = ARTIFACTS / "browser"
# A VM under TCG boots in 5-10 s; the image is copied to the node first. Generous, so a slow CI machine passes.
VM_TIMEOUT_MS = 180_000
SHOT_TIMEOUT_MS = 20_000

# Whether the console's canvas shows a screen: the spread of its grey levels, as the VNC capture of the other e2e
# tests measures it (a blank or single-colour canvas has none).
CANVAS_SHOWS_A_SCREEN = """() => {
  const canvas = document.querySelector("#screen canvas");
  if (!canvas || canvas.width < 320 || canvas.height < 200) return false;
  const pixels = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
  let count = 0, sum = 0, squares = 0;
  for (let i = 0; i < pixels.length; i += 4 * 7) {
    const grey = 0.299 * pixels[i] + 0.587 * pixels[i + 1] + 0.114 * pixels[i + 2];
    count += 1; sum += grey; squares += grey * grey;
  }
  const mean = sum / count;
  return Math.sqrt(squares / count - mean * mean) > 5;
}"""
# The characters a US keyboard types with Shift held, by the key that types them: a page's keyboard.type() sends
# these without Shift, and QEMU's console (which takes the key's scancode from noVNC) would type the unshifted one.
SHIFTED_KEYS = dict(zip('~!@#$%^&*()_+{}|:"<>?', ["Backquote", *(f"Digit{n}" for n in "1234567890"), "Minus", "Equal",
                                                 "BracketLeft", "BracketRight", "Backslash", "Semicolon", "Quote",
                                                 "Comma", "Period", "Slash"], strict=True))


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


@contextmanager
def person_page(browser: Browser, base_url: str, folder: Path) -> Iterator[Page]:
    """A page with cookies of its own (another person at another computer), its screenshots in ``folder`` (with a
    last one, ``NN-failure.png``, when the block fails); closed afterwards."""
    context = browser.new_context(base_url=base_url, viewport={"width": 1280, "height": 900})
    context.set_default_timeout(30_000)
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    page = context.new_page()
    page.educloud_shots = {"folder": folder, "taken": 0}
    try:
        yield page
    except BaseException:
        with suppress(PlaywrightError):  # the failure is what matters; a page that cannot be captured adds nothing
            shot(page, "failure")
        raise
    finally:
        context.close()


def type_on_console(page: Page, text: str, delay_ms: int = 30) -> None:
    """Type ``text`` into the console on the page (noVNC's canvas, focused first) as a person does, key by key: a
    newline presses Enter, and a shifted character is typed with Shift held."""
    page.locator("#screen canvas").focus()
    for character in text:
        if character in SHIFTED_KEYS:
            key = f"Shift+{SHIFTED_KEYS[character]}"
        elif character.isupper():
            key = f"Shift+Key{character}"
        else:
            key = {"\n": "Enter", " ": "Space"}.get(character, character)
        page.keyboard.press(key, delay=delay_ms)


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
