"""Data migrations of the cloud's records: what each one does to rows that exist when it runs."""

from __future__ import annotations

import importlib

import pytest
from django.apps import apps
from django.db import connection

from luhyadb.models import OwnerGroup

pytestmark = [pytest.mark.database, pytest.mark.django_db]

lower_case_paths = importlib.import_module("luhyadb.migrations.0007_lower_case_owner_paths")


def test_owner_paths_written_in_upper_case_before_are_lowered():
    OwnerGroup.objects.bulk_create([OwnerGroup(path="edu", name="root"), OwnerGroup(path="edu.S1", name="S1"),
                                    OwnerGroup(path="edu.S1.Class-3", name="C3")])  # bulk_create skips validators
    lower_case_paths.lower_paths(apps, None)
    assert list(OwnerGroup.objects.values_list("path", flat=True)) == ["edu", "edu.s1", "edu.s1.class-3"]


def test_paths_that_differ_only_in_case_stop_the_migration_with_their_names():
    if connection.vendor == "mysql":
        pytest.skip("MariaDB's case-insensitive collation never let two paths differ only in case")
    OwnerGroup.objects.bulk_create([OwnerGroup(path="edu.s1", name="a"), OwnerGroup(path="edu.S1.x", name="b"),
                                    OwnerGroup(path="edu.s1.X", name="c")])
    with pytest.raises(RuntimeError, match="'edu.s1.X'"):
        lower_case_paths.lower_paths(apps, None)
    assert OwnerGroup.objects.filter(path="edu.S1.x").exists()


file_shares = importlib.import_module("luhyadb.migrations.0015_file_shares")


def test_existing_groups_get_share_permissions_from_their_instance_permissions():
    from luhyadb.models import OwnerGroupPermission

    every = dict.fromkeys(("read", "write", "execute", "create", "delete"), True)
    groups = {path: OwnerGroup.objects.create(path=path, name=path) for path in ("edu", "edu.s1", "edu.s1.c1",
                                                                                   "edu.none")}
    for path, grants in (("edu", every), ("edu.s1", {"read": True, "write": True, "execute": True}),
                         ("edu.s1.c1", {"read": True, "execute": True}), ("edu.none", {"execute": True})):
        OwnerGroupPermission.objects.create(owner_group=groups[path], resource_type="instance", **grants)
    file_shares._shares_as_instances(apps, None)
    shares = {row.owner_group.path: (row.read, row.write, row.delete)
              for row in OwnerGroupPermission.objects.filter(resource_type="share")}
    assert shares == {"edu": (True, True, True), "edu.s1": (True, True, False), "edu.s1.c1": (True, False, False)}


volumes = importlib.import_module("luhyadb.migrations.0016_volumes")


def test_existing_groups_that_make_instances_get_volume_permissions_equal_to_them():
    from luhyadb.models import OwnerGroupPermission

    every = dict.fromkeys(("read", "write", "execute", "create", "delete"), True)
    teachers = {"read": True, "write": True, "execute": True, "create": True}
    groups = {path: OwnerGroup.objects.create(path=path, name=path) for path in ("edu", "edu.s1", "edu.s1.c1")}
    for path, grants in (("edu", every), ("edu.s1", teachers), ("edu.s1.c1", {"read": True, "execute": True})):
        OwnerGroupPermission.objects.create(owner_group=groups[path], resource_type="instance", **grants)
    volumes._volumes_as_instances(apps, None)
    granted = {row.owner_group.path: (row.read, row.write, row.execute, row.create, row.delete)
               for row in OwnerGroupPermission.objects.filter(resource_type="volume")}
    assert granted == {"edu": (True,) * 5, "edu.s1": (True, True, True, True, False)}
