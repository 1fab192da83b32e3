"""WSGI entry point: Django, with the storage controller's WebDAV shares mounted at /sc/dav/ on an SC host."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "educloud.settings")

from sc.dav.app import host_application  # noqa: E402 - needs the settings module chosen above

application = host_application(get_wsgi_application())
