"""The admin console's first pages: login and system status."""

from pathlib import Path

import pytest
from django.apps import apps
from django.conf import settings
from django.contrib import admin
from django.contrib.auth import get_user_model

from luhyadb.models import Server

pytestmark = [pytest.mark.database, pytest.mark.django_db]


@pytest.fixture
def admin_client(client):
    get_user_model().objects.create_superuser("boss", password="pw-boss-12345")
    client.login(username="boss", password="pw-boss-12345")
    return client


def test_the_console_sends_visitors_to_log_in(client):
    response = client.get("/clc/")
    assert response.status_code == 302
    assert response["Location"].startswith("/clc/login/")
    assert client.get("/").status_code == 302


def test_the_login_page_logs_an_administrator_in(client):
    get_user_model().objects.create_superuser("boss", password="pw-boss-12345")
    page = client.get("/clc/login/")
    assert b"Log in to the admin console" in page.content
    response = client.post("/clc/login/", {"username": "boss", "password": "pw-boss-12345"})
    assert (response.status_code, response["Location"]) == (302, "/clc/")


def test_a_wrong_password_shows_a_message_not_an_error(client):
    response = client.post("/clc/login/", {"username": "boss", "password": "wrong"})
    assert response.status_code == 200
    assert b"did not match" in response.content


def test_system_status_lists_every_service_with_state_and_resources(admin_client):
    Server.objects.create(name="nc-1", role="nc", ip="10.0.0.2", cluster="c1", state="online", memory_mb=16384,
                          free_memory_mb=8000)
    Server.objects.create(name="store", role="walrus", ip="10.0.0.3", cluster="c1", state="offline")
    page = admin_client.get("/clc/").content.decode()
    assert "System status" in page
    for text in ("nc-1", "store", "16384 (8000)", 'class="state online"', 'class="state offline"',
                 "/clc/api/1.0/status/", "status.js"):
        assert text in page


def test_the_status_script_is_served(admin_client):
    response = admin_client.get("/static/clc/status.js")
    assert response.status_code == 200
    assert b"setInterval(refresh" in b"".join(response.streaming_content)


def test_users_who_are_not_staff_cannot_see_the_console(client):
    get_user_model().objects.create_user("pupil", password="pw-pupil-123")
    client.login(username="pupil", password="pw-pupil-123")
    assert client.get("/clc/").status_code == 403


def _project_models() -> list:
    """Every model of eduCloud's own apps (the installed apps that are folders of the checkout, not Django's or a
    library's, wherever the virtualenv lies), as the installed apps say."""
    return [model for config in apps.get_app_configs() if Path(config.path).parent == settings.BASE_DIR
            for model in config.get_models()]


def _admin_page_of(model):
    """The admin class a model is shown by: its own, or the registered admin it is an inline of."""
    if model in admin.site._registry:
        return admin.site._registry[model]
    return next((owner for owner in admin.site._registry.values()
                 if any(inline.model is model for inline in owner.inlines)), None)


@pytest.mark.parametrize("model", _project_models(), ids=lambda model: model._meta.label_lower)
def test_every_record_has_an_admin_page(admin_client, model):
    shown_by = _admin_page_of(model)
    assert shown_by is not None, f"{model._meta.label} has no admin page and is no registered admin's inline"
    opts = shown_by.model._meta
    assert admin_client.get(f"/admin/{opts.app_label}/{opts.model_name}/").status_code == 200
