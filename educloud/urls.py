"""URLs: the admin site plus, for each role this host runs, its pages and its API under ``/<role>/api/1.0/``."""

from django.conf import settings
from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView

from clc.forms import AdminLoginForm
from educloud.views import favicon
from luhyaapi.openapi import schema_urls
from luhyaapi.routes import api_urls

handler404 = "luhyaapi.api.not_found"
# Every host serves the admin site; its login shows the throttle's refusals like the console's (clc.services.logins).
admin.site.login_form = AdminLoginForm
urlpatterns = [path("admin/", admin.site.urls), path("favicon.ico", favicon, name="favicon")]
for role in settings.EDUCLOUD.roles:
    urlpatterns += [path(f"{role}/api/1.0/", include(api_urls(f"{role}.api.urls"))),
                    path(f"{role}/api/1.0/", include(schema_urls(role)))]
if settings.EDUCLOUD.has_role("nc"):
    urlpatterns.append(path("nc/", include("nc.urls")))  # the classroom kiosk (served only with nc.kiosk on)
if settings.EDUCLOUD.has_role("clc"):
    urlpatterns += [path("clc/", include("clc.urls")), path("portal/", include("clc.urls_portal")),
                    path("", RedirectView.as_view(url="/clc/", permanent=False))]
