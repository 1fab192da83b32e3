"""People of the console tests: a login with an account of a role in an owner-group (the fixtures that build the
owner-group tree and log a client in are in ``clc.tests.people_fixtures``)."""

from __future__ import annotations

import functools

from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import make_password

from luhyadb.models import Account, OwnerGroup

PASSWORD = "a-long-pass-phrase-9"


@functools.cache
def _hashed_password() -> str:
    return make_password(PASSWORD)  # once: hashing is slow on purpose, and tests make many people


def make_person(username: str, role: str, path: str, **user_fields) -> Account:
    """A login ``username`` (password ``PASSWORD``) with an account of ``role`` in the group at ``path``."""
    user = get_user_model().objects.create(username=username, password=_hashed_password(), **user_fields)
    return Account.objects.create(user=user, owner_group=OwnerGroup.objects.get(path=path), role=role)
