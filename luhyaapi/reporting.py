"""Asking a role for its status now: each running heartbeat publisher of this process registers here by role, and
``POST /<role>/api/1.0/status/report/`` (signed, from the CLC: the console's Refresh) wakes it, so the role's next
heartbeat goes out at once instead of after ``heartbeat_seconds``."""

from __future__ import annotations

import threading
from typing import Protocol

from django.conf import settings
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from luhyaapi.drf import IsSignedNode, callers


class Reporter(Protocol):
    def report_now(self, last_command: str = "") -> None:
        """Publish this role's status at once."""


_reporters: dict[str, Reporter] = {}
_lock = threading.Lock()


def register(role: str, reporter: Reporter) -> None:
    """``reporter`` publishes ``role``'s heartbeats in this process (from when it runs)."""
    with _lock:
        _reporters[role] = reporter


def unregister(role: str, reporter: Reporter) -> None:
    """``reporter`` stopped; a newer publisher of the role that registered meanwhile stays."""
    with _lock:
        if _reporters.get(role) is reporter:
            del _reporters[role]


def report_now(role: str) -> bool:
    """Wake ``role``'s heartbeat publisher of this process; False when none runs here (a web server whose daemons
    run in another process, ``manage.py run_daemons``)."""
    with _lock:
        reporter = _reporters.get(role)
    if reporter is None:
        return False
    reporter.report_now()
    return True


class StatusReportView(APIView):
    """``POST status/report/`` (signed, from the CLC): publish this role's status now (202); 409 when its heartbeat
    does not run in this process."""

    role = ""
    permission_classes = [IsSignedNode]
    signed_callers = callers("clc")

    @extend_schema(request=None, responses={202: inline_serializer("StatusReport", {
        "role": serializers.CharField(), "name": serializers.CharField()})})
    def post(self, request):
        name = settings.EDUCLOUD.name
        if not report_now(self.role):
            return Response({"detail": f"{self.role}:{name} runs no heartbeat in this process (its daemons run in "
                                       "another): it reports by itself every heartbeat_seconds"},
                            status=status.HTTP_409_CONFLICT)
        return Response({"role": self.role, "name": name}, status=status.HTTP_202_ACCEPTED)
