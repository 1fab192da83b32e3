"""What the host's log shows of a request that was refused: one line with the reason, never a traceback (a
prober's thousands of 403s and 400s must not bury the log); a real error (5xx) keeps its traceback."""

from __future__ import annotations

import io
import logging
import time

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from clc import views

pytest_plugins = ["clc.tests.people_fixtures"]
pytestmark = [pytest.mark.database, pytest.mark.django_db]


@pytest.fixture
def host_log():
    """What the host's configured log handler (``LOGGING``'s ``console``) writes during the test."""
    handler = next(handler for handler in logging.getLogger().handlers if handler.name == "console")
    written = io.StringIO()
    previous = handler.setStream(written)
    yield written
    handler.setStream(previous)


def _lines_about(log: io.StringIO, path: str) -> list[str]:
    return [line for line in log.getvalue().splitlines() if path in line]


def test_a_page_refused_by_the_rule_is_one_warning_line_with_the_reason(client, login, host_log):
    login("pupil", "user", "edu.school.class1")
    assert client.get("/clc/accounts/new/").status_code == 403
    assert "Traceback" not in host_log.getvalue()
    [line] = _lines_about(host_log, "/clc/accounts/new/")
    assert "WARNING django.request: Forbidden (Permission denied): /clc/accounts/new/ (you may not create account " \
           "records: your role (user) does not allow it;" in line


@pytest.mark.parametrize(("data", "reason"), [
    ({f"field{number}": "x" for number in range(1200)}, "TooManyFieldsSent"),
    ({"name": "x" * (3 * 2**20)}, "RequestDataTooBig"),
])
def test_a_request_too_large_to_read_is_a_400_and_one_warning_line_not_an_error_with_a_traceback(host_log, data,
                                                                                                  reason):
    browser = Client(enforce_csrf_checks=True, raise_request_exception=False)
    browser.force_login(get_user_model().objects.create_superuser("boss"))
    browser.cookies["csrftoken"] = "a" * 32  # so that the CSRF check reads the form, where the limits apply
    assert browser.post("/clc/images/new/", data).status_code == 400
    written = host_log.getvalue()
    assert "Traceback" not in written and " ERROR " not in written
    [line] = [line for line in written.splitlines() if f"django.security.{reason}:" in line]
    assert f" WARNING django.security.{reason}: " in line


def test_a_page_that_does_not_exist_is_one_warning_line(client, login, host_log):
    login("pupil", "user", "edu.school.class1")
    assert client.get("/portal/desktops/ins-00000001/").status_code == 404
    assert "Traceback" not in host_log.getvalue()
    [line] = _lines_about(host_log, "/portal/desktops/ins-00000001/")
    assert line.endswith("WARNING django.request: Not Found: /portal/desktops/ins-00000001/")


def test_a_real_error_keeps_its_traceback(monkeypatch, host_log):
    def broken(*_args, **_kwargs):
        raise RuntimeError("the status cache is gone")

    monkeypatch.setattr(views, "cloud_status", broken)
    browser = Client(raise_request_exception=False)
    browser.force_login(get_user_model().objects.create_superuser("boss"))
    assert browser.get("/clc/").status_code == 500
    written = host_log.getvalue()
    assert "ERROR django.request: Internal Server Error: /clc/" in written
    assert "Traceback (most recent call last)" in written and "RuntimeError: the status cache is gone" in written


def test_a_call_with_a_bad_signature_and_an_invalid_api_request_are_one_line_each(client, login, host_log):
    forged = Client().post("/cc/api/1.0/register/host/", "{}", content_type="application/json",
                           HTTP_X_EDUCLOUD_SENDER="pc-1", HTTP_X_EDUCLOUD_TIMESTAMP=str(int(time.time())),
                           HTTP_X_EDUCLOUD_NONCE="n" * 24, HTTP_X_EDUCLOUD_CONTENT_SHA256="0" * 64,
                           HTTP_X_EDUCLOUD_SIGNATURE="forged")
    assert forged.status_code == 401
    login("head", "superadm", "edu.school")
    assert client.post("/clc/api/1.0/images/", {"name": ""}, content_type="application/json").status_code == 400
    written = host_log.getvalue()
    assert "Traceback" not in written
    assert len(_lines_about(host_log, "/cc/api/1.0/register/host/")) == 2  # the refusal's reason, then the status
    [line] = _lines_about(host_log, "/clc/api/1.0/images/")
    assert line.endswith("WARNING django.request: Bad Request: /clc/api/1.0/images/")
