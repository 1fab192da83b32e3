"""The classroom kiosk's page and its JSON calls, served by a PC's node controller to the person at that PC:
adapters over ``nc.services.kiosk``.

No login: whoever sits at the PC may use the desktops the PC's owner-group offers. So the kiosk is served only with
``nc.kiosk`` on, and only to the PC itself (``local_only``). Its calls that change something are POSTs under
Django's CSRF protection, so a web page the PC's browser opens cannot start or stop desktops either.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Callable
from functools import wraps

from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.http.request import split_domain_port
from django.middleware.csrf import get_token
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.csrf import csrf_exempt, csrf_protect, ensure_csrf_cookie
from django.views.decorators.http import require_GET, require_POST

from luhyaapi.ids import InvalidId
from nc.services.kiosk import KioskError, kiosk_listing, start_desktop, stop_desktop

logger = logging.getLogger("educloud.security")

LOOPBACK_NAMES = ("localhost",)


def _loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def is_from_this_pc(request: HttpRequest) -> bool:
    """Whether a request comes from this PC: its peer is a loopback address (the web server is reached directly,
    never through a proxy, which would make every request look local), and it names this PC by a loopback name or
    address, so a page of another site whose name was made to point at 127.0.0.1 (DNS rebinding) is refused."""
    host, _port = split_domain_port(request.get_host())
    host = host.removeprefix("[").removesuffix("]")
    return _loopback(request.META.get("REMOTE_ADDR", "")) and (host in LOOPBACK_NAMES or _loopback(host))


def local_only(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Serve ``view`` only with ``nc.kiosk`` on (404 otherwise, whatever the method), only to this PC (403
    otherwise), and then only past Django's CSRF check.

    The CSRF check is made here, after the other two, rather than by the middleware before the view: the
    middleware's 403 to a POST would tell anyone that a kiosk is there when it is off."""
    csrf_checked = csrf_protect(view)

    @csrf_exempt
    @wraps(view)
    def guarded(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        if not settings.EDUCLOUD.kiosk:
            raise Http404("this node controller serves no kiosk (nc.kiosk is off)")
        if not is_from_this_pc(request):
            logger.warning("kiosk: refused %s %s from %s (Host %r): not from this PC", request.method, request.path,
                           request.META.get("REMOTE_ADDR"), request.headers.get("Host"))
            return JsonResponse({"detail": "the kiosk serves only the PC it runs on"}, status=403)
        return csrf_checked(request, *args, **kwargs)

    return guarded


def _acted(action: Callable[[str], dict], insid: str) -> JsonResponse:
    try:
        return JsonResponse(action(insid), status=202)
    except InvalidId as exc:
        return JsonResponse({"insid": [str(exc)]}, status=400)
    except KioskError as exc:
        return JsonResponse({"detail": str(exc)}, status=exc.status)


@local_only
@require_GET
@ensure_csrf_cookie
def kiosk_page(request: HttpRequest) -> HttpResponse:
    """``GET /nc/kiosk/``: the page; it lists the desktops and follows them from ``desktops/``."""
    kiosk = {"desktops": reverse("nc:kiosk-desktops"), "csrf": get_token(request)}
    return render(request, "nc/kiosk/index.html", {"pc": settings.EDUCLOUD.name, "kiosk": kiosk})


@local_only
@require_GET
def desktop_list(request: HttpRequest) -> JsonResponse:
    """``GET /nc/kiosk/desktops/[?refresh=1]``: this PC, whether the cloud answers, and its desktops' states."""
    return JsonResponse(kiosk_listing(refresh=request.GET.get("refresh") == "1"))


@local_only
@require_POST
def desktop_start(request: HttpRequest, insid: str) -> JsonResponse:
    """``POST /nc/kiosk/desktops/<insid>/start/``: pull and run it (202 with its state); 400/404/409/503 say why
    not."""
    return _acted(start_desktop, insid)


@local_only
@require_POST
def desktop_stop(request: HttpRequest, insid: str) -> JsonResponse:
    """``POST /nc/kiosk/desktops/<insid>/stop/``: stop it (202 with its state); 400/404 say why not."""
    return _acted(stop_desktop, insid)
