"""Pages of the host itself rather than of a role: the icon browsers ask every host for."""

from __future__ import annotations

from pathlib import Path

from django.http import FileResponse
from django.views.decorators.cache import cache_control
from django.views.decorators.http import require_safe

FAVICON = Path(__file__).with_name("favicon.ico")


@require_safe
@cache_control(public=True, max_age=86400)
def favicon(request):
    """``/favicon.ico``: browsers ask for it on every page of every host (the console, the portal, a kiosk); without
    it each page logs a 404."""
    return FileResponse(FAVICON.open("rb"), content_type="image/vnd.microsoft.icon")
