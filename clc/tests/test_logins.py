"""Login throttling on the console's and the Django admin's login pages: a user name is locked after a few failed
logins and an address after many (a school's NAT puts a whole class behind one), each lock longer than the one
before; the page says when to try again without telling whether the account exists; the failures are counted in
the database; administrators see the locks and lift them."""

from __future__ import annotations

import re
import threading
from dataclasses import replace
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import make_password
from django.db import close_old_connections, connection
from django.test import Client
from django.utils import timezone

from clc.services import logins
from luhyadb.choices import LoginThrottleKindChoices as Kind
from luhyadb.models import Account, LoginThrottle, OwnerGroup

pytestmark = [pytest.mark.database, pytest.mark.django_db]
pytest_plugins = ["clc.tests.people_fixtures"]

CONSOLE, ADMIN = "/clc/login/", "/admin/login/"
PASSWORD = "a-long-pass-phrase-9"
SCHOOL_NAT = "203.0.113.7"
LOCKED_NAME = "Too many failed logins for this user name: try again in {} minutes."
LOCKED_ADDRESS = "Too many failed logins from this address: try again in {} minutes."
DID_NOT_MATCH = "Your user name and password did not match."


@pytest.fixture(autouse=True)
def _quick_hashes(settings):
    """Hashing is slow on purpose; these tests log in hundreds of times. (Their people are made by ``person``, never
    by ``clc.tests.people``, whose password hash is made once for every test module.)"""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def clock(monkeypatch):
    """The throttle's clock, moved on by ``clock.advance(minutes=...)``."""

    class Clock:
        now = timezone.now()

        def advance(self, **delta) -> None:
            self.now += timedelta(**delta)

    moved = Clock()
    monkeypatch.setattr(logins, "clock", lambda: moved.now)
    return moved


def person(username: str, role: str = "user", path: str = "edu.school.class1", **user_fields) -> Account:
    user = get_user_model().objects.create(username=username, password=make_password(PASSWORD), **user_fields)
    return Account.objects.create(user=user, owner_group=OwnerGroup.objects.get(path=path), role=role)


def attempt(client: Client, username: str, password: str, page: str = CONSOLE, address: str = SCHOOL_NAT):
    return client.post(page, {"username": username, "password": password}, REMOTE_ADDR=address)


def shown_error(response) -> str:
    errors = re.findall(r'<p class="error(?:note|list nonfield)?">(.*?)</p>|<li>(.*?)</li>',
                        response.content.decode(), re.S)
    return " ".join(part for found in errors for part in found if part).strip()


def logged_in(response) -> bool:
    return response.status_code == 302 and "_auth_user_id" in response.wsgi_request.session


def test_a_few_wrong_passwords_lock_the_user_name_and_the_page_says_when_to_try_again(client, groups, clock):
    person("alice")
    for _ in range(4):
        assert DID_NOT_MATCH in shown_error(attempt(client, "alice", "guess"))
    fifth = attempt(client, "alice", "guess")
    assert fifth.status_code == 200 and LOCKED_NAME.format(15) in shown_error(fifth)
    refused = attempt(client, "alice", PASSWORD)  # the right password, but the user name is locked
    assert refused.status_code == 200 and not logged_in(refused)
    assert LOCKED_NAME.format(15) in shown_error(refused)
    assert not Client().login(username="alice", password=PASSWORD)  # every way in asks the same rule
    clock.advance(minutes=10)
    assert LOCKED_NAME.format(5) in shown_error(attempt(client, "alice", PASSWORD, address="198.51.100.1"))
    clock.advance(minutes=5, seconds=1)
    assert logged_in(attempt(client, "alice", PASSWORD))


def test_a_locked_user_name_looks_the_same_whether_or_not_the_account_exists(client, groups, clock):
    person("alice")
    pages = {}
    for name in ("alice", "nobody"):
        for _ in range(5):
            attempt(client, name, "guess")
        pages[name] = [attempt(client, name, password) for password in ("guess", PASSWORD)]
    for existing, missing in zip(pages["alice"], pages["nobody"], strict=True):
        assert existing.status_code == missing.status_code == 200
        assert _without_tokens(existing, "alice") == _without_tokens(missing, "nobody")


def _without_tokens(response, username: str) -> str:
    page = response.content.decode().replace(username, "NAME")
    return re.sub(r'name="csrfmiddlewaretoken" value="[^"]+"', "", page)


def test_a_class_of_thirty_behind_the_schools_nat_logs_in_at_eight_even_with_a_typo_each(groups, clock):
    pupils = [person(f"pupil{number}").user.username for number in range(30)]
    for username in pupils:
        browser = Client()
        assert DID_NOT_MATCH in shown_error(attempt(browser, username, "typo"))
        assert logged_in(attempt(browser, username, PASSWORD)), username


def test_guessing_many_user_names_from_one_address_locks_that_address_only(groups, clock, settings):
    settings.EDUCLOUD = replace(settings.EDUCLOUD, login_max_failures_per_address=20)
    person("alice")
    for number in range(20):  # one guess each: no user name reaches its own limit
        attempt(Client(), f"name{number}", "guess", address="198.51.100.66")
    refused = attempt(Client(), "alice", PASSWORD, address="198.51.100.66")
    assert not logged_in(refused) and LOCKED_ADDRESS.format(15) in shown_error(refused)
    assert logged_in(attempt(Client(), "alice", PASSWORD, address=SCHOOL_NAT))
    clock.advance(minutes=15, seconds=1)
    assert logged_in(attempt(Client(), "alice", PASSWORD, address="198.51.100.66"))


def test_an_ipv6_client_is_counted_by_its_64_network_as_it_holds_all_of_it(groups, clock, settings):
    settings.EDUCLOUD = replace(settings.EDUCLOUD, login_max_failures_per_address=3)
    person("alice")
    for host in (1, 2, 3):
        attempt(Client(), f"name{host}", "guess", address=f"2001:db8:0:7::{host}")
    assert not logged_in(attempt(Client(), "alice", PASSWORD, address="2001:db8:0:7::99"))
    assert logged_in(attempt(Client(), "alice", PASSWORD, address="2001:db8:0:8::1"))


def test_the_django_admin_login_is_throttled_by_the_same_rule(client, groups, clock):
    get_user_model().objects.create_superuser("boss", password=PASSWORD)
    for _ in range(5):
        attempt(client, "boss", "guess", page=ADMIN)
    refused = attempt(client, "boss", PASSWORD, page=ADMIN)
    assert refused.status_code == 200 and not logged_in(refused)
    assert LOCKED_NAME.format(15) in refused.content.decode()
    assert LOCKED_NAME.format(15) in shown_error(attempt(client, "boss", PASSWORD, page=CONSOLE))


def test_a_successful_login_forgets_the_failures_of_the_user_name(client, groups, clock):
    person("alice")
    for _ in range(4):
        attempt(client, "alice", "guess")
    assert logged_in(attempt(client, "alice", PASSWORD))
    for _ in range(4):
        assert DID_NOT_MATCH in shown_error(attempt(Client(), "alice", "guess"))
    assert logged_in(attempt(Client(), "alice", PASSWORD))


def test_each_new_lock_of_a_user_name_lasts_twice_as_long_and_a_quiet_day_forgets_them(client, groups, clock):
    person("alice")
    for minutes in (15, 30, 60):
        for _ in range(5):
            response = attempt(client, "alice", "guess")
        assert LOCKED_NAME.format(minutes) in shown_error(response)
        clock.advance(minutes=minutes, seconds=1)
    clock.advance(days=1)
    for _ in range(5):
        response = attempt(client, "alice", "guess")
    assert LOCKED_NAME.format(15) in shown_error(response)


def test_failures_are_counted_in_the_database_so_every_web_worker_agrees(client, groups, clock):
    """Another worker of the same host (or another web host of the same database) counted four failures."""
    person("alice")
    LoginThrottle.objects.create(kind=Kind.ACCOUNT, key="alice", failures=4, first_failure=clock.now,
                                 last_failure=clock.now)
    assert LOCKED_NAME.format(15) in shown_error(attempt(client, "alice", "guess"))
    assert LoginThrottle.objects.get(kind=Kind.ACCOUNT, key="alice").locked_until > clock.now


@pytest.mark.django_db(transaction=True)
def test_failures_at_the_same_moment_are_all_counted(groups, settings):
    if connection.vendor == "sqlite" and connection.is_in_memory_db():
        pytest.skip("the test suite's in-memory SQLite shares one cache between threads, which locks whole tables "
                    "and fails at once instead of waiting; the MariaDB run proves this (a file database, as a host "
                    "has, takes writers one at a time: IMMEDIATE transactions)")
    settings.EDUCLOUD = replace(settings.EDUCLOUD, login_max_failures=1000, login_max_failures_per_address=1000)
    errors = []

    def guess(worker: int) -> None:
        try:
            for _ in range(5):
                logins.record_failure("alice", f"198.51.100.{worker}")
        except Exception as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)
        finally:
            close_old_connections()

    threads = [threading.Thread(target=guess, args=(worker,)) for worker in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert LoginThrottle.objects.get(kind=Kind.ACCOUNT, key="alice").failures == 40


def test_user_names_and_addresses_quiet_for_a_day_are_forgotten_so_guessing_does_not_fill_the_table(client, groups,
                                                                                                    clock):
    for number in range(3):
        attempt(client, f"random{number}", "guess", address=f"198.51.100.{number}")
    for _ in range(5):
        attempt(client, "victim", "guess", address="198.51.100.9")  # locked: kept a day past the lock
    clock.advance(days=1, minutes=1)
    attempt(client, "latest", "guess")
    assert set(LoginThrottle.objects.values_list("key", flat=True)) == {"victim", "latest", SCHOOL_NAT}


def test_the_admin_lists_locked_user_names_and_addresses_and_unlocks_them(groups, clock, settings):
    settings.EDUCLOUD = replace(settings.EDUCLOUD, login_max_failures_per_address=6)
    person("alice")
    for _ in range(5):
        attempt(Client(), "alice", "guess")
    attempt(Client(), "bob", "guess")
    attempt(Client(), "carol", "guess", address="198.51.100.1")
    admin = Client()
    admin.force_login(get_user_model().objects.create_superuser("boss"))
    page = admin.get("/admin/luhyadb/loginthrottle/?locked=yes").content.decode()
    assert "alice" in page and SCHOOL_NAT in page
    assert "bob" not in page and "carol" not in page  # failures, but no lock
    locked = LoginThrottle.objects.filter(locked_until__gt=clock.now)
    response = admin.post("/admin/luhyadb/loginthrottle/", {"action": "unlock",
                                                           "_selected_action": [row.pk for row in locked]})
    assert response.status_code == 302
    assert not LoginThrottle.objects.filter(locked_until__gt=clock.now).exists()
    assert logged_in(attempt(Client(), "alice", PASSWORD))


def test_who_may_manage_an_account_sees_its_lock_on_its_page_and_lifts_it(client, groups, clock):
    person("alice")
    for _ in range(5):
        attempt(Client(), "alice", "guess")
    client.force_login(person("head", role="superadm", path="edu.school").user)
    page = client.get("/clc/accounts/alice/edit/").content.decode()
    assert "locked after failed logins" in page and 'action="/clc/accounts/alice/unlock/"' in page
    response = client.post("/clc/accounts/alice/unlock/")
    assert (response.status_code, response["Location"]) == (302, "/clc/accounts/alice/edit/")
    assert "locked after failed logins" not in client.get("/clc/accounts/alice/edit/").content.decode()
    assert logged_in(attempt(Client(), "alice", PASSWORD))


def test_a_lock_is_lifted_only_by_who_may_manage_the_account(client, groups, clock):
    person("deputy", role="superadm", path="edu.school")
    person("pupil", path="edu.other")
    for name in ("deputy", "pupil"):
        for _ in range(5):
            attempt(Client(), name, "guess")
    client.force_login(person("head", role="superadm", path="edu.school").user)
    page = client.get("/clc/accounts/deputy/edit/").content.decode()
    assert "locked after failed logins" in page and "/clc/accounts/deputy/unlock/" not in page
    response = client.post("/clc/accounts/deputy/unlock/", follow=True)
    assert "a peer of yours" in response.content.decode()
    assert client.post("/clc/accounts/pupil/unlock/").status_code == 404  # another school's account
    assert LoginThrottle.objects.filter(key__in=("deputy", "pupil"), locked_until__gt=clock.now).count() == 2


# The rule itself.

T0 = timezone.now()
LOCKOUT = timedelta(minutes=15)


def fail(tally: logins.Tally, at, limit: int = 5, window: timedelta = timedelta(days=1)) -> logins.Tally:
    return logins.after_failure(tally, at, limit=limit, window=window, lockout=LOCKOUT)


def test_the_limit_th_failure_within_the_window_starts_a_lock_and_a_new_count():
    tally = logins.Tally()
    for minute in range(4):
        tally = fail(tally, T0 + timedelta(minutes=minute))
        assert (tally.failures, tally.locked_until) == (minute + 1, None)
    tally = fail(tally, T0 + timedelta(minutes=4))
    assert (tally.failures, tally.locks, tally.locked_until) == (0, 1, T0 + timedelta(minutes=19))


def test_failures_older_than_the_window_no_longer_count():
    tally = logins.Tally()
    for minute in range(4):
        tally = fail(tally, T0 + timedelta(minutes=minute), window=timedelta(minutes=15))
    tally = fail(tally, T0 + timedelta(minutes=16), window=timedelta(minutes=15))
    assert (tally.failures, tally.locked_until) == (1, None)


def test_locks_double_up_to_a_day():
    tally = logins.Tally(locks=9, locked_until=T0, last_failure=T0 - timedelta(minutes=1))
    for _ in range(5):
        tally = fail(tally, T0 + timedelta(seconds=1))
    assert tally.locked_until == T0 + timedelta(seconds=1) + logins.LONGEST_LOCK
