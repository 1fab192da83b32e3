"""Login throttling: failed logins counted per user name and per client address in the database, and the locks
they earn (``clc.login_max_failures``, ``clc.login_max_failures_per_address``, ``clc.login_lockout_minutes``).

The rule is enforced in an authentication backend, ``ThrottledModelBackend`` (Django's ``ModelBackend`` with the
throttle around it), rather than in the login views: every way in calls ``django.contrib.auth.authenticate`` — the
console's login page, the Django admin's, ``Client.login`` in tests, any later login path — and the backend is the
one place that sees both the attempt before the password is checked (a locked user name or address is refused
without checking it) and the result after (a failure counted, a success forgetting the user name's failures).
The login forms only show the refusal the backend left on the request (``refusal_of``).

- A **user name** (as typed, case-folded, whether or not an account has it, so a refusal never tells whether the
  account exists) is locked after ``login_max_failures`` failures within a day without a successful login between.
- An **address** (``REMOTE_ADDR``; an IPv6 client by its /64, which it holds whole) is locked after
  ``login_max_failures_per_address`` failures within ``login_lockout_minutes``: generous, as a school's NAT puts a
  whole class behind one address.
- A lock lasts ``login_lockout_minutes``, each further lock of the same key twice the one before (at most a day);
  a key quiet for a day starts again. Attempts during a lock are refused and not counted.
- The counts live in ``luhyadb.models.LoginThrottle`` and change under a row lock, so every web worker and web host
  of one database agrees. Administrators lift locks (``unlock``): the Django admin's page of failed logins, and the
  console's account page for who may manage the account (``clc.services.accounts.unlock_login``).
"""

from __future__ import annotations

import ipaddress
import logging
import math
from dataclasses import dataclass, fields, replace
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.backends import ModelBackend
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import Q, QuerySet
from django.http import HttpRequest
from django.utils import timezone

from luhyadb.choices import LoginThrottleKindChoices as Kind
from luhyadb.models import LoginThrottle

logger = logging.getLogger("educloud.security")

# How long failures of a user name count, and how long a key must stay quiet before its locks are forgotten.
DAY = timedelta(days=1)
LONGEST_LOCK = timedelta(days=1)
KEY_LENGTH = 150
FORGET_BATCH = 500
_REFUSAL = "_educloud_login_refused"

clock = timezone.now


@dataclass(frozen=True)
class Tally:
    """One key's failed logins: how many since ``first_failure``, the last one, its lock and how many locks in a
    row."""

    failures: int = 0
    first_failure: datetime | None = None
    last_failure: datetime | None = None
    locked_until: datetime | None = None
    locks: int = 0


TALLY_FIELDS = [field.name for field in fields(Tally)]


def after_failure(tally: Tally, now: datetime, *, limit: int, window: timedelta, lockout: timedelta) -> Tally:
    """The tally after one more failure at ``now``: counted with those since the first within ``window`` (older
    ones are forgotten); the ``limit``-th starts a lock of ``lockout`` times 2 for each lock before it (at most
    ``LONGEST_LOCK``) and a new count. A key quiet for a day (since its last failure or lock) forgets its locks."""
    quiet_since = max(filter(None, (tally.last_failure, tally.locked_until)), default=None)
    if quiet_since is not None and now - quiet_since > DAY:
        tally = Tally()
    if tally.first_failure is None or now - tally.first_failure > window:
        tally = replace(tally, failures=0, first_failure=now)
    tally = replace(tally, failures=tally.failures + 1, last_failure=now)
    if tally.failures < limit:
        return tally
    locks = tally.locks + 1
    length = min(lockout * 2 ** min(locks - 1, 20), LONGEST_LOCK)  # 2**20 minutes is past a day already
    return Tally(failures=0, first_failure=None, last_failure=now, locked_until=now + length, locks=locks)


class LoginRefused(Exception):
    """A login refused without checking the password: the user name or the address is locked until ``until``.
    The message says which and when to try again, and nothing about the account."""

    def __init__(self, kind: str, until: datetime, now: datetime) -> None:
        minutes = max(1, math.ceil((until - now).total_seconds() / 60))
        source = "for this user name" if kind == Kind.ACCOUNT else "from this address"
        super().__init__(f"Too many failed logins {source}: try again in {minutes} minute{'s' * (minutes != 1)}.")
        self.kind = kind
        self.until = until


def account_key(username: str) -> str:
    """The key of a user name: case-folded, so that changing the case of a name does not start a new count."""
    return username.strip().casefold()[:KEY_LENGTH]


def address_key(address: str) -> str:
    """The key of a client address: the address, an IPv6 one as its /64; "" for none (no request)."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return ""
    if ip.version == 6:
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


def client_address(request: HttpRequest | None) -> str:
    """The address a request came from: its peer (``REMOTE_ADDR``). Headers such as X-Forwarded-For are not
    trusted: anyone can send them, and a guesser would name a new address with each attempt."""
    return request.META.get("REMOTE_ADDR", "") if request is not None else ""


def _keys(username: str, address: str) -> list[tuple[str, str]]:
    keys = [(Kind.ACCOUNT, account_key(username))]
    if address_key(address):
        keys.append((Kind.ADDRESS, address_key(address)))
    return keys


def check_login(username: str, address: str) -> None:
    """Raise ``LoginRefused`` when the user name or the address is locked (the user name's lock first)."""
    now = clock()
    either = Q()
    for kind, key in _keys(username, address):
        either |= Q(kind=kind, key=key)
    # "account" sorts before "address": a locked user name is named first.
    row = LoginThrottle.objects.filter(either, locked_until__gt=now).order_by("kind").first()
    if row is not None:
        logger.warning("login: refused %r from %s: %s %s locked until %s", username, address or "-", row.kind,
                       row.key, row.locked_until.isoformat(timespec="seconds"))
        raise LoginRefused(row.kind, row.locked_until, now)


def record_failure(username: str, address: str) -> LoginRefused | None:
    """Count a failed login against the user name and the address; return the lock it started (the user name's
    first), if any."""
    config = settings.EDUCLOUD
    lockout = timedelta(minutes=config.login_lockout_minutes)
    limits = {Kind.ACCOUNT: (config.login_max_failures, DAY),
              Kind.ADDRESS: (config.login_max_failures_per_address, lockout)}
    now = clock()
    started = None
    for kind, key in _keys(username, address):
        limit, window = limits[kind]
        tally = _count(kind, key, now, limit=limit, window=window, lockout=lockout)
        if tally.failures == 0:  # only the failure that starts a lock leaves none counted
            logger.warning("login: %s %s locked until %s after %d failed logins (lock %d in a row)", kind, key,
                           tally.locked_until.isoformat(timespec="seconds"), limit, tally.locks)
            started = started or LoginRefused(kind, tally.locked_until, now)
    logger.info("login: failed for %r from %s", username, address or "-")
    _forget_quiet(now)
    return started


def _count(kind: str, key: str, now: datetime, **rule) -> Tally:
    while True:
        # Made outside the locking transaction and locked by its primary key: a lookup that locks a row not yet
        # there would take a gap lock on MariaDB, and two first failures of one key would then deadlock.
        row_id = LoginThrottle.objects.get_or_create(kind=kind, key=key)[0].pk
        with transaction.atomic():
            row = LoginThrottle.objects.select_for_update().filter(pk=row_id).first()
            if row is None:
                continue  # unlocked (deleted) meanwhile: count on a new row
            tally = after_failure(Tally(**{name: getattr(row, name) for name in TALLY_FIELDS}), now, **rule)
            for name in TALLY_FIELDS:
                setattr(row, name, getattr(tally, name))
            row.save(update_fields=TALLY_FIELDS)
            return tally


def _forget_quiet(now: datetime) -> None:
    """Delete the rows of keys quiet for a day (their failures and locks no longer count), so that guessing
    random user names does not fill the table."""
    quiet = Q(last_failure__lt=now - DAY) & (Q(locked_until__isnull=True) | Q(locked_until__lt=now - DAY))
    # Found by a plain read, then deleted by primary key: a DELETE by a range of last_failure would lock that range
    # on MariaDB against the failures other workers are writing, and deadlock with them.
    found = list(LoginThrottle.objects.filter(quiet).values_list("pk", flat=True)[:FORGET_BATCH])
    if found:
        LoginThrottle.objects.filter(quiet, pk__in=found).delete()


def record_success(username: str) -> None:
    """A successful login forgets the user name's failures and locks (not while a lock runs: one may have started
    since the check). The address's failures stay: one good account must not wipe out a guesser's record."""
    LoginThrottle.objects.filter(kind=Kind.ACCOUNT, key=account_key(username)).filter(
        Q(locked_until__isnull=True) | Q(locked_until__lte=clock())).delete()


def locked(queryset: QuerySet | None = None) -> QuerySet:
    """The rows (of ``queryset``) whose lock runs now."""
    return (LoginThrottle.objects.all() if queryset is None else queryset).filter(locked_until__gt=clock())


def lock_of_account(username: str) -> LoginThrottle | None:
    """The running lock of a user name, or None."""
    return locked().filter(kind=Kind.ACCOUNT, key=account_key(username)).first()


def unlock(rows: QuerySet, by: str) -> int:
    """Lift the locks of ``rows`` and forget their failures; return how many keys were unlocked."""
    names = [f"{row.kind} {row.key}" for row in rows]
    rows.delete()
    for name in names:
        logger.warning("login: %s unlocked by %s", name, by)
    return len(names)


def unlock_account(username: str, by: str) -> int:
    """Lift the lock of a user name and forget its failures (the account's page; the caller checked who may)."""
    return unlock(LoginThrottle.objects.filter(kind=Kind.ACCOUNT, key=account_key(username)), by)


def refusal_of(request: HttpRequest | None) -> LoginRefused | None:
    """The lock that refused (or was started by) the last login attempt of ``request``, for the login page."""
    return getattr(request, _REFUSAL, None)


class ThrottledModelBackend(ModelBackend):
    """Django's user-name-and-password backend behind the throttle (see the module's docstring for why here)."""

    def authenticate(self, request, username=None, password=None, **kwargs):
        if username is None:
            username = kwargs.get(get_user_model().USERNAME_FIELD)
        if username is None or password is None:
            return None
        address = client_address(request)
        try:
            check_login(username, address)
        except LoginRefused as refused:
            if request is not None:
                setattr(request, _REFUSAL, refused)
            raise PermissionDenied(str(refused)) from None  # no other backend is asked either
        user = super().authenticate(request, username=username, password=password, **kwargs)
        if user is None:
            started = record_failure(username, address)
            if started is not None and request is not None:
                setattr(request, _REFUSAL, started)
        else:
            record_success(username)
        return user
