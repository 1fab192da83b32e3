"""The API's URL routes and encoded slashes: an id with a ``%2F`` is a 400 naming its parameter, whatever route the
decoded path happens to match (none, its own, or another one).

The web server decodes ``%2F`` to '/' before routing, so ``instances/ins-1%2Fstop/`` would be routed as
``instances/ins-1/stop/`` and ``images/a%2Fb/`` would match no route; only the raw URL (``REQUEST_URI``, which
waitress and werkzeug pass on) shows what the client sent. No API path has an encoded slash on purpose."""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from importlib import import_module
from urllib.parse import unquote

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import Resolver404, URLPattern, URLResolver, resolve

_ENCODED_SLASH = re.compile("%2f", re.IGNORECASE)
_SLASH_STAND_IN = "0encodedslash0"  # lower-case letters and digits: every id pattern of a route takes them
MESSAGE = "may not contain '/' (%2F)"


def encoded_slash_fields(request: HttpRequest) -> list[str] | None:
    """None when the raw path has no ``%2F`` (or the server does not pass the raw URL on); else the path parameters
    that hold one, found by routing the raw path with a stand-in for each ``%2F`` (empty if that matches no route,
    or the ``%2F`` is not inside a parameter)."""
    raw = request.META.get("REQUEST_URI", "").split("?", 1)[0]
    if not _ENCODED_SLASH.search(raw):
        return None
    try:
        match = resolve(unquote(_ENCODED_SLASH.sub(_SLASH_STAND_IN, raw)))
    except Resolver404:
        return []
    return [name for name, value in match.kwargs.items() if _SLASH_STAND_IN in str(value)]


def encoded_slash_refusal(request: HttpRequest, *, routed: bool) -> HttpResponse | None:
    """The 400 for a request whose raw path has a ``%2F``, naming the parameters that hold one; None if it has none.
    A ``%2F`` outside any parameter is refused too when the decoded path was ``routed`` (it reached a view it
    should not have); for a path that matched no route it stays a 404 (``routed=False``), as any unknown URL."""
    fields = encoded_slash_fields(request)
    if fields is None or not (fields or routed):
        return None
    if not fields:
        return JsonResponse({"detail": f"the path {MESSAGE}"}, status=400)
    return JsonResponse({field: [MESSAGE] for field in fields}, status=400)


def _refusing_encoded_slashes(view: Callable) -> Callable:
    @functools.wraps(view)
    def checked(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        return encoded_slash_refusal(request, routed=True) or view(request, *args, **kwargs)

    return checked


def _checked(pattern: URLPattern | URLResolver) -> URLPattern | URLResolver:
    if isinstance(pattern, URLResolver):
        return URLResolver(pattern.pattern, [_checked(inner) for inner in pattern.url_patterns],
                           pattern.default_kwargs, pattern.app_name, pattern.namespace)
    return URLPattern(pattern.pattern, _refusing_encoded_slashes(pattern.callback), pattern.default_args,
                      pattern.name)


def api_urls(module: str) -> tuple[list[URLPattern | URLResolver], str]:
    """A role's API URLconf (``<role>.api.urls``) for ``include()``, every view refusing an encoded slash in the
    raw path before it runs (before authentication, too: the answer depends on the URL alone)."""
    urlconf = import_module(module)
    return [_checked(pattern) for pattern in urlconf.urlpatterns], urlconf.app_name
