"""Middleware of the web pages: the idle limit of sessions (``clc.services.sessions``)."""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

from clc.services.sessions import end_if_idle


class IdleSessionMiddleware:
    """Ends a logged-in person's session idle longer than ``clc.session_idle_minutes`` before the view runs, so the
    view answers as to anyone logged out (the login page, a 401 or 403); notes the activity of the others."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.user.is_authenticated:
            end_if_idle(request)
        return self.get_response(request)
