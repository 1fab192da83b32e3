"""Fixtures of the browser tests: one all-in-one host (every role in one process, real QEMU, the console proxy on a
port of its own) and one headless Chromium for the whole package, a fresh page with its own cookies per test, an
administrator's page, the administrator's API client (for what a test checks besides the pages), and the classroom
the admin console test builds (the student tests build it themselves when run alone)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.e2e.browser.pages import SHOTS, Classroom, build_classroom, login, shot
from tests.services import ADMIN_PASSWORD, ADMIN_USER, ConsoleClient, allinone_host

CHROMIUM = Path("/usr/bin/chromium")


@pytest.fixture(scope="package")
def host(tmp_path_factory):
    """The all-in-one host and the test image file; its VMs are killed and its log printed afterwards."""
    if not CHROMIUM.is_file():
        pytest.skip(f"{CHROMIUM} is not installed; the test command (tests/run.sh) installs Debian's chromium")
    with allinone_host(tmp_path_factory.mktemp("browser-aio"), ports=20, stop_timeout=20) as running:
        yield running


@pytest.fixture(scope="package")
def admin_api(host) -> ConsoleClient:
    """The first administrator on the host's API (logged in, as the console's own scripts call it)."""
    aio, _image = host
    return ConsoleClient(aio.url)


@pytest.fixture(scope="package")
def chromium():
    """One headless Chromium (Debian's) for the package: Playwright's sync API runs once per thread, so every test
    that drives a browser, whichever host it starts, opens its pages in this one."""
    if not CHROMIUM.is_file():
        pytest.skip(f"{CHROMIUM} is not installed; the test command (tests/run.sh) installs Debian's chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture(scope="package")
def browser(host, chromium):
    """The package's Chromium, once the all-in-one host runs."""
    return chromium


@pytest.fixture
def page(request, host, browser):
    """A page with cookies of its own, at the host; its screenshots go to tests/artifacts/browser/<test name>/, with a
    last one (``NN-failure.png``) when the test fails."""
    aio, _image = host
    context = browser.new_context(base_url=aio.url, viewport={"width": 1280, "height": 900})
    context.set_default_timeout(30_000)
    page = context.new_page()
    folder = SHOTS / request.node.name
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    page.educloud_shots = {"folder": folder, "taken": 0}
    try:
        yield page
        if getattr(request.node, "educloud_failed", False):
            shot(page, "failure")
    finally:
        context.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Note a failed test on its item, so its page fixture takes a last screenshot of where it stopped."""
    outcome = yield
    report = outcome.get_result()
    if report.when == "call" and report.failed:
        item.educloud_failed = True


@pytest.fixture
def admin_page(page):
    """The page, logged in as the first administrator."""
    login(page, ADMIN_USER, ADMIN_PASSWORD)
    return page


@pytest.fixture(scope="package")
def classroom() -> Classroom:
    """The classroom, empty until the admin console test (or ``built_classroom``) makes it."""
    return Classroom()


@pytest.fixture
def built_classroom(classroom, host, browser) -> Classroom:
    """The classroom with its image, students and desktop: made by the admin console test when it ran first, else
    made here through the console with a page of its own."""
    if not classroom.desktop_id:
        aio, image = host
        context = browser.new_context(base_url=aio.url)
        page = context.new_page()
        folder = SHOTS / "classroom-setup"
        folder.mkdir(parents=True, exist_ok=True)
        page.educloud_shots = {"folder": folder, "taken": 0}
        try:
            login(page, ADMIN_USER, ADMIN_PASSWORD)
            build_classroom(page, classroom, image)
        finally:
            context.close()
    return classroom
