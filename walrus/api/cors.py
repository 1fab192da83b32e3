"""Cross-origin access to walrus's upload calls, so that a browser on the CLC's pages can send an image's pieces to a
walrus on another host. Only origins listed in ``walrus.cors_origins`` are answered with
``Access-Control-Allow-Origin``; the calls still need their signature, session or pre-signed token as always (CORS
only lets the browser read the answers). No cookies are allowed across origins: the data calls carry their token."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpResponse, JsonResponse
from django.utils.cache import patch_vary_headers

# What the admin console's upload script sends (upload.js): a PUT with a Content-Type header.
ALLOWED_HEADERS = ("Content-Type",)
PREFLIGHT_MAX_AGE_SECONDS = 600


def allowed_origin(request) -> str | None:
    """The request's ``Origin`` if this walrus is configured to answer it, else None."""
    origin = request.META.get("HTTP_ORIGIN", "")
    return origin if origin and origin.lower() in settings.EDUCLOUD.walrus_cors_origins else None


class UploadCorsMixin:
    """For walrus's upload views: answers CORS preflights (``OPTIONS`` with ``Access-Control-Request-Method``)
    before authentication, as browsers send them without credentials, and adds ``Access-Control-Allow-Origin`` to
    every answer (errors too, so the page can show them) for a configured origin."""

    def dispatch(self, request, *args, **kwargs):
        origin = allowed_origin(request)
        if request.method == "OPTIONS" and "HTTP_ACCESS_CONTROL_REQUEST_METHOD" in request.META:
            return self.preflight(request, origin)
        response = super().dispatch(request, *args, **kwargs)
        if origin:
            response["Access-Control-Allow-Origin"] = origin
        patch_vary_headers(response, ("Origin",))
        return response

    def preflight(self, request, origin: str | None) -> HttpResponse:
        method = request.META["HTTP_ACCESS_CONTROL_REQUEST_METHOD"].strip().upper()
        methods = [allowed for allowed in self.allowed_methods if allowed != "OPTIONS"]
        asked = {name.strip().lower() for name in request.META.get("HTTP_ACCESS_CONTROL_REQUEST_HEADERS", "").split(",")
                 if name.strip()}
        if origin is None:
            response = JsonResponse({"detail": "cross-origin requests from this origin are not allowed (see the "
                                               "setting walrus.cors_origins)"}, status=403)
        elif method not in methods or not asked <= {name.lower() for name in ALLOWED_HEADERS}:
            response = JsonResponse({"detail": f"{method} with headers {sorted(asked)} is not allowed here; "
                                               f"allowed: {', '.join(methods)} with {', '.join(ALLOWED_HEADERS)}"},
                                    status=403)
        else:
            response = HttpResponse(status=204)
            response["Access-Control-Allow-Origin"] = origin
            response["Access-Control-Allow-Methods"] = ", ".join(methods)
            response["Access-Control-Allow-Headers"] = ", ".join(ALLOWED_HEADERS)
            response["Access-Control-Max-Age"] = str(PREFLIGHT_MAX_AGE_SECONDS)
        patch_vary_headers(response, ("Origin", "Access-Control-Request-Method", "Access-Control-Request-Headers"))
        return response
