"""Fixtures of the console tests about people (``pytest_plugins = ["clc.tests.people_fixtures"]``): an owner-group
tree (``edu`` with ``edu.school``, ``edu.school.class1`` and ``edu.other``) and a client logged in as a new account."""

from __future__ import annotations

import pytest

from clc.tests.people import make_person
from luhyadb.choices import ResourceTypeChoices
from luhyadb.models import Account, OwnerGroup, OwnerGroupPermission
from luhyadb.services.initial_data import seed_initial_data

ALL = {"read": True, "write": True, "execute": True, "create": True, "delete": True}


@pytest.fixture
def groups(db):
    """The root ``edu`` (full rights, from the initial data) and a school with a class and another school, each
    with full rights on every type, so that a test's refusals come from the role or the authority alone."""
    seed_initial_data()
    made = {"edu": OwnerGroup.objects.get(path="edu")}
    for path, name in (("edu.school", "School"), ("edu.school.class1", "Class 1"), ("edu.other", "Other school")):
        made[path] = OwnerGroup.objects.create(path=path, name=name)
        for resource_type in ResourceTypeChoices.values:
            OwnerGroupPermission.objects.create(owner_group=made[path], resource_type=resource_type, **ALL)
    return made


@pytest.fixture
def login(client, groups):
    """``login(username, role, path)``: a new account, with ``client`` logged in as it."""

    def log_in(username: str, role: str, path: str, **user_fields) -> Account:
        account = make_person(username, role, path, **user_fields)
        client.force_login(account.user)
        return account

    return log_in
