"""The student portal in a real browser: a student sees only their own desktop, starts it, watches it come up, sees
its screen in the page (noVNC through the platform's console proxy) and stops it; another student can neither see
that desktop nor open or run it by URL, and a console page a student may not use is a refusal page, never a
traceback."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, Response, expect

from tests.e2e.browser.pages import CANVAS_SHOWS_A_SCREEN, VM_TIMEOUT_MS, login, shot
from tests.services import instance_record, wait_for

pytestmark = [pytest.mark.e2e]


def _post_from_page(page: Page, action: str) -> Response:
    """Submit a POST form to ``action`` from the current page with the page's own CSRF token, as the console's Run
    button does, and return the answer."""
    with page.expect_navigation() as navigation:
        page.evaluate("""(action) => {
            const form = document.createElement("form");
            form.method = "post";
            form.action = action;
            form.appendChild(document.querySelector("input[name=csrfmiddlewaretoken]").cloneNode());
            document.body.appendChild(form);
            form.submit();
        }""", action)
    return navigation.value


def test_another_student_can_neither_see_nor_open_nor_run_a_students_desktop_and_a_refusal_is_a_page(
        page, admin_api, built_classroom):
    classroom = built_classroom
    insid = classroom.desktop_id
    login(page, classroom.students[1], classroom.password)
    expect(page).to_have_url(re.compile(r"/portal/$"))
    expect(page.locator(".empty")).to_contain_text("You have no desktops yet")
    expect(page.locator("body")).not_to_contain_text(classroom.desktop_name)
    shot(page, "portal-without-the-desktop")

    page.goto("/clc/instances/")  # a student's desktops are the portal's: the console's list sends them there
    expect(page).to_have_url(re.compile(r"/portal/$"))
    expect(page.locator("body")).not_to_contain_text(insid)
    expect(page.locator("body")).not_to_contain_text(classroom.desktop_name)
    expect(page.get_by_role("link", name="New instance")).to_have_count(0)
    shot(page, "instances-sent-to-the-portal")

    for path in (f"/clc/instances/{insid}/", f"/portal/desktops/{insid}/"):
        response = page.goto(path)
        assert response.status == 404, f"{path}: {response.status}"
        expect(page.get_by_role("heading", name="Not found")).to_be_visible()
        expect(page.locator("body")).not_to_contain_text(classroom.desktop_name)
        shot(page, "not-found-" + path.strip("/").split("/")[0])

    page.goto("/clc/instances/")
    for action in (f"/clc/instances/{insid}/run/", f"/portal/desktops/{insid}/start/"):
        response = _post_from_page(page, action)
        assert response.status == 404, f"POST {action}: {response.status}"
        expect(page.get_by_role("heading", name="Not found")).to_be_visible()
        shot(page, "run-refused-" + action.strip("/").split("/")[0])
        page.goto("/clc/instances/")
    assert instance_record(admin_api, insid)["state"] == "defined", "a refused run must not start the desktop"

    response = page.goto("/clc/images/")
    assert response.status == 403
    expect(page.get_by_role("heading", name="You may not do this")).to_be_visible()
    expect(page.locator("body")).to_contain_text(classroom.students[1])
    expect(page.locator("body")).not_to_contain_text("Traceback")
    shot(page, "images-forbidden")


def test_a_student_starts_their_desktop_sees_its_screen_in_the_browser_console_and_stops_it(
        page, admin_api, built_classroom):
    classroom = built_classroom
    insid = classroom.desktop_id
    login(page, classroom.students[0], classroom.password)
    expect(page).to_have_url(re.compile(r"/portal/$"))
    card = page.locator(f"li.desktop[data-insid='{insid}']")
    expect(page.locator("li.desktop")).to_have_count(1)
    expect(card.locator("h2")).to_have_text(classroom.desktop_name)
    expect(card.locator("[data-field=state]")).to_have_text("Defined")
    shot(page, "my-desktops")

    card.locator("button[data-action=start]").click()
    expect(page.locator(".flash").first).to_contain_text("is starting")
    shot(page, "starting")
    expect(card.locator("[data-field=state]")).to_have_text("Running", timeout=VM_TIMEOUT_MS)
    shot(page, "running")

    card.locator("a.primary[data-action=connect]").click()
    expect(page).to_have_url(re.compile(rf"/portal/desktops/{insid}/$"))
    expect(page.locator("#console-note")).to_contain_text("Connected", timeout=60_000)
    page.wait_for_function(CANVAS_SHOWS_A_SCREEN, timeout=60_000, polling=500)
    # The screen is there from the firmware on; the guest's own screen (its banner) once its system has come up,
    # which the test image announces with its address on the serial console.
    wait_for("the guest's system to come up", lambda: (instance_record(admin_api, insid) or {}).get("guest_ip"),
              timeout=120)
    page.wait_for_timeout(1000)
    assert page.evaluate(CANVAS_SHOWS_A_SCREEN), "the console went blank once the guest was up"
    shot(page, "console-page")
    page.locator("#screen canvas").screenshot(path=str(page.educloud_shots["folder"] / "console.png"))

    page.on("dialog", lambda dialog: dialog.accept())  # "Stop …? Unsaved work in it is lost."
    page.locator("button[data-action=stop]").click()
    expect(page.locator(".flash").first).to_contain_text("is stopping")
    expect(page.locator("#state")).to_have_text("Stopped", timeout=90_000)
    expect(page.locator("#console-note")).not_to_contain_text("Connected.")
    shot(page, "stopped")
