"""``manage.py init_cloud``: tables, first administrator, initial data; running it again changes nothing."""

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command

from luhyadb.choices import ResourceTypeChoices
from luhyadb.models import OwnerGroup, OwnerGroupPermission, VMType

pytestmark = [pytest.mark.database, pytest.mark.django_db]


def test_init_cloud_creates_the_administrator_and_initial_data_once(settings, tmp_path, monkeypatch, capsys):
    from dataclasses import replace

    settings.EDUCLOUD = replace(settings.EDUCLOUD, data_dir=tmp_path)
    monkeypatch.setenv("EDUCLOUD_ADMIN_PASSWORD", "first-password-123")
    call_command("init_cloud")
    first = capsys.readouterr().out
    assert "administrator 'admin' created" in first
    assert get_user_model().objects.get(username="admin").check_password("first-password-123")
    assert (tmp_path / "admin-password").read_text().strip() == "first-password-123"
    assert oct((tmp_path / "admin-password").stat().st_mode & 0o777) == "0o600"
    assert set(VMType.objects.values_list("name", flat=True)) == {"tiny", "small", "medium", "large", "xlarge"}
    root = OwnerGroup.objects.get(path="edu")
    assert all(p.is_full for p in OwnerGroupPermission.objects.filter(owner_group=root))
    assert set(OwnerGroupPermission.objects.filter(owner_group=root).values_list("resource_type", flat=True)) == set(
        ResourceTypeChoices.values)

    monkeypatch.setenv("EDUCLOUD_ADMIN_PASSWORD", "second-password-456")
    call_command("init_cloud")
    assert "already exists" in capsys.readouterr().out
    assert get_user_model().objects.get(username="admin").check_password("first-password-123")
    assert VMType.objects.count() == 5
    assert OwnerGroup.objects.count() == 1
