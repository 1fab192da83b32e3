"""How long a login lasts: a student's (role user) session ends when the browser closes, as classroom PCs are
shared, an administrator's outlives it; everyone's ends after ``clc.session_idle_minutes`` without activity, and a
page left open refreshing itself in the background is not activity (an open console is)."""

from __future__ import annotations

import re
from dataclasses import replace

import pytest
from django.conf import settings as django_settings
from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import make_password
from django.test import Client

from clc.services import sessions
from luhyadb.models import Account, OwnerGroup

pytestmark = [pytest.mark.database, pytest.mark.django_db]
pytest_plugins = ["clc.tests.people_fixtures"]

PASSWORD = "a-long-pass-phrase-9"
PAGE = {"HTTP_ACCEPT": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}  # a browser's page load
POLL = {"HTTP_ACCEPT": "application/json"}  # the pages' scripts refreshing them
CONSOLE_OPEN = POLL | {"HTTP_X_EDUCLOUD_CONSOLE": "open"}


@pytest.fixture(autouse=True)
def _quick_hashes(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def clock(monkeypatch):
    class Clock:
        now = 1_800_000_000.0

        def advance(self, minutes: float) -> None:
            self.now += minutes * 60

    moved = Clock()
    monkeypatch.setattr(sessions, "clock", lambda: moved.now)
    return moved


def person(username: str, role: str, path: str = "edu.school.class1") -> Account:
    user = get_user_model().objects.create(username=username, password=make_password(PASSWORD))
    return Account.objects.create(user=user, owner_group=OwnerGroup.objects.get(path=path), role=role)


def log_in(username: str, page: str = "/clc/login/") -> tuple[Client, object]:
    browser = Client()
    response = browser.post(page, {"username": username, "password": PASSWORD}, **PAGE)
    assert response.status_code == 302, f"{username} could not log in"
    return browser, response.cookies[django_settings.SESSION_COOKIE_NAME]


def test_a_students_session_cookie_ends_with_the_browser(groups):
    person("pupil", "user")
    browser, cookie = log_in("pupil")
    assert cookie["expires"] == "" and cookie["max-age"] == ""
    assert browser.session.get_expire_at_browser_close()


@pytest.mark.parametrize("role", ["poweruser", "poweradm", "superadm"])
def test_a_teachers_or_administrators_session_outlives_the_browser(groups, role):
    person("staffer", role, path="edu.school")
    browser, cookie = log_in("staffer")
    assert cookie["max-age"] and cookie["expires"]
    assert not browser.session.get_expire_at_browser_close()


def test_the_first_administrator_keeps_a_session_too_from_the_django_admin(groups):
    get_user_model().objects.create_superuser("boss", password=PASSWORD)
    browser, cookie = log_in("boss", page="/admin/login/")
    assert cookie["max-age"] and not browser.session.get_expire_at_browser_close()


def test_after_the_idle_time_the_next_request_needs_a_new_login_and_the_login_page_says_why(groups, clock):
    person("pupil", "user")
    browser, _ = log_in("pupil")
    clock.advance(minutes=29)
    assert browser.get("/portal/", **PAGE).status_code == 200  # activity: the clock starts again
    clock.advance(minutes=29)
    assert browser.get("/portal/", **PAGE).status_code == 200
    clock.advance(minutes=31)
    response = browser.get("/portal/", **PAGE)
    assert (response.status_code, response["Location"]) == (302, "/clc/login/?next=/portal/")
    assert "_auth_user_id" not in browser.session
    login_page = browser.get(response["Location"], **PAGE).content.decode()
    assert "You were logged out after 30 minutes without activity" in login_page


def test_a_page_left_open_that_refreshes_itself_does_not_keep_the_session(groups, clock):
    person("pupil", "user")
    browser, _ = log_in("pupil")
    for _ in range(15):  # the desktops list asks every 2 s; here every 2 minutes for half an hour
        clock.advance(minutes=2)
        assert browser.get("/portal/status/", **POLL).status_code == 200
    clock.advance(minutes=1)
    assert browser.get("/portal/status/", **POLL).status_code == 302  # to the login page
    assert browser.get("/portal/", **PAGE).status_code == 302


def test_an_open_console_keeps_the_session_as_the_desktop_is_in_use(groups, clock):
    person("pupil", "user")
    browser, _ = log_in("pupil")
    for _ in range(30):
        clock.advance(minutes=2)
        assert browser.get("/portal/status/", **CONSOLE_OPEN).status_code == 200
    assert browser.get("/portal/", **PAGE).status_code == 200


def test_a_change_is_activity(groups, clock):
    person("pupil", "user")
    browser, _ = log_in("pupil")
    clock.advance(minutes=25)
    browser.post("/portal/desktops/ins-00000001/stop/", **PAGE)  # a 404, but the person did something
    clock.advance(minutes=25)
    assert browser.get("/portal/", **PAGE).status_code == 200


def test_administrators_have_the_same_idle_time(groups, clock, settings):
    settings.EDUCLOUD = replace(settings.EDUCLOUD, session_idle_minutes=90)
    person("head", "superadm", path="edu.school")
    browser, _ = log_in("head")
    clock.advance(minutes=89)
    assert browser.get("/clc/", **PAGE).status_code == 200
    clock.advance(minutes=91)
    page = browser.get("/clc/", follow=True, **PAGE).content.decode()
    assert re.search(r"logged out after 90 minutes without activity", page)


def test_activity_is_written_to_the_session_at_most_once_a_minute(groups, clock):
    person("pupil", "user")
    browser, _ = log_in("pupil")
    stamp = browser.session[sessions.ACTIVE_KEY]
    clock.advance(minutes=0.5)
    browser.get("/portal/", **PAGE)
    assert browser.session[sessions.ACTIVE_KEY] == stamp
    clock.advance(minutes=0.6)
    browser.get("/portal/", **PAGE)
    assert browser.session[sessions.ACTIVE_KEY] == stamp + 66
