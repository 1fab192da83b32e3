"""The admin console in a real browser: the first administrator logs in, sees the system status, creates an image
and uploads its disk file through the page (progress bar to 100 %), creates an owner-group and two student accounts,
and defines a remote desktop assigned to one student, which the instances list then shows."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.e2e.browser.pages import build_classroom, shot

pytestmark = [pytest.mark.e2e]


def test_the_admin_builds_a_classroom_image_accounts_and_a_students_desktop_through_the_console(
        admin_page, host, classroom):
    page = admin_page
    _aio, disk = host
    expect(page.get_by_role("heading", name="System status")).to_be_visible()
    build_classroom(page, classroom, disk)
    page.goto("/clc/")
    shot(page, "system-status")

    page.goto("/clc/accounts/")
    for student in classroom.students:
        row = page.locator("tr", has_text=student)
        expect(row).to_contain_text("user")
        expect(row).to_contain_text(classroom.group)
    shot(page, "accounts")

    page.goto("/clc/instances/")
    row = page.locator("#instances tbody tr", has_text=classroom.desktop_id)
    expect(row).to_contain_text(classroom.desktop_name)
    expect(row).to_contain_text("Remote virtual desktop")
    expect(row).to_contain_text(classroom.image_name)
    expect(row).to_contain_text("Defined")
    shot(page, "instances")
