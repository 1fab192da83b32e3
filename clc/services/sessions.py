"""How long a login lasts. A student's (role ``user``) session ends when the browser closes: classroom PCs are
shared, and the next pupil must not find the last one logged in. Everyone's session ends after
``clc.session_idle_minutes`` without activity; the next request then needs a new login.

Activity is what the person does: a page load (a GET asking for HTML), a change (any other method: a form, a
start, a token, an upload), or a page's refresh that says a console is open in it (``X-Educloud-Console: open``,
sent by the console page while it shows a desktop, which is in use then although the keyboard and mouse go to the
console proxy, not to these pages). The pages' other background refreshes (GETs asking for JSON) are not activity,
so a page left open on a shared PC still ends its session. Administrators (every other role, and superusers) use
their own computers: their sessions outlive the browser, up to Django's ``SESSION_COOKIE_AGE``, with the same idle
limit.
"""

from __future__ import annotations

import logging
import time

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import logout
from django.http import HttpRequest

from luhyadb.choices import AccountRoleChoices as Role
from luhyadb.models import Account

logger = logging.getLogger(__name__)

ACTIVE_KEY = "_educloud_active"  # the session's last activity, whole seconds since the epoch
# Activity is written to the session at most this often: the idle limit is in minutes, and a write per request
# would be a database write per page load.
WRITE_EVERY_SECONDS = 60
CONSOLE_HEADER = "X-Educloud-Console"

clock = time.time


def ends_with_browser(user) -> bool:
    """Whether ``user``'s session ends when the browser closes: a student's, or a login without an account (which
    may do nothing anyway); not a superuser's or a teacher's or administrator's."""
    if user.is_superuser:
        return False
    role = Account.objects.filter(user_id=user.pk).values_list("role", flat=True).first()
    return role in (None, Role.USER)


def start_session(sender, request: HttpRequest, user, **kwargs) -> None:
    """On every login (``user_logged_in``): a browser-session cookie for students, and the idle clock started."""
    if request is None or not hasattr(request, "session"):
        return
    if ends_with_browser(user):
        request.session.set_expiry(0)
    request.session[ACTIVE_KEY] = int(clock())


def is_activity(request: HttpRequest) -> bool:
    """Whether ``request`` is something the person did (see the module's docstring), not a page refreshing
    itself."""
    if request.method not in ("GET", "HEAD"):
        return True
    return "text/html" in request.headers.get("Accept", "") or request.headers.get(CONSOLE_HEADER) == "open"


def end_if_idle(request: HttpRequest) -> None:
    """Log the person out if their session has been idle longer than ``clc.session_idle_minutes``, with a message
    for the login page; else note the request's activity. For requests of a logged-in person."""
    now = int(clock())
    last = request.session.get(ACTIVE_KEY)
    if last is None:  # a session from before this rule: its clock starts now
        request.session[ACTIVE_KEY] = now
        return
    idle_minutes = settings.EDUCLOUD.session_idle_minutes
    if now - last > idle_minutes * 60:
        username = request.user.get_username()
        logout(request)
        messages.info(request, f"You were logged out after {idle_minutes} minutes without activity: log in again.")
        logger.info("sessions: %s logged out after %d minutes idle", username, (now - last) // 60)
    elif now - last >= WRITE_EVERY_SECONDS and is_activity(request):
        request.session[ACTIVE_KEY] = now
