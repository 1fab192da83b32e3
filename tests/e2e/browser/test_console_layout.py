"""The console's menu in a real browser: at 1280 px wide (a school's usual screen) the first administrator's menu,
every link shown, is one line with the account's links beside it; narrower, it wraps between links and the page
never scrolls sideways."""

from __future__ import annotations

import pytest

from tests.e2e.browser.pages import shot

pytestmark = [pytest.mark.e2e]

ADMIN_LINKS = ["System status", "Images", "Instances", "Desktop pools", "Volumes", "Monitoring", "Hosts", "Networks",
               "Tasks", "VM types", "Accounts", "Owner-groups", "My desktops", "Records"]


def boxes(page, selector: str) -> list[dict]:
    return page.eval_on_selector_all(selector, "els => els.map(e => { const r = e.getBoundingClientRect(); "
                                               "return {text: e.textContent.trim(), top: r.top, bottom: r.bottom}; })")


def test_the_admins_menu_is_one_line_at_1280_pixels(admin_page):
    page = admin_page
    page.set_viewport_size({"width": 1280, "height": 900})
    page.goto("/clc/")
    shot(page, "menu-1280")
    links = boxes(page, "header.bar nav a")
    assert [link["text"] for link in links] == ADMIN_LINKS
    assert len({round(link["top"]) for link in links}) == 1, f"the menu wraps: {links}"
    line_top, line_bottom = links[0]["top"], links[0]["bottom"]
    for item in boxes(page, "header.bar .logout > :is(span, a, button)"):  # user name, My account, Log out
        assert item["top"] < line_bottom and item["bottom"] > line_top, f"{item} is not on the menu's line"
    assert page.evaluate("document.documentElement.scrollWidth") <= 1280


def test_a_narrower_window_wraps_the_menu_between_links_without_sideways_scrolling(admin_page):
    page = admin_page
    page.set_viewport_size({"width": 900, "height": 900})
    page.goto("/clc/")
    shot(page, "menu-900")
    for link in boxes(page, "header.bar nav a"):
        assert link["bottom"] - link["top"] < 30, f"{link['text']!r} breaks inside itself"
    assert page.evaluate("document.documentElement.scrollWidth") <= 900
