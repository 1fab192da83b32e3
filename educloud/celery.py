"""The Celery app of every host, configured from the host's eduCloud configuration (``educloud.settings``, the
``CELERY_`` settings): commands to a node are tasks on that node's own queue of the cluster's broker
(``luhyaapi.commands``), run by the node's worker (``nc.tasks``).

A production node runs ``celery -A educloud worker -P threads -Q cmd.<node>`` (deploy/educloud-worker@.service);
``manage.py run_cloud`` runs the same worker in a thread of the host's one process."""

from __future__ import annotations

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "educloud.settings")

import luhyaapi.sqlite_broker  # noqa: E402,F401 - the embedded default's sqlite-broker:// transport

app = Celery("educloud")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
