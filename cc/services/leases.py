"""Leasing the next free value of a pool (a port, an address) to an instance: the value is held by a row whose column
is unique, so no two instances get the same value, whichever process leases."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from django.db import IntegrityError, models, transaction

# A look-then-insert loses only to another process leasing at the same moment; this many losses in a row mean the
# pool is changing too fast to win, and the caller says so.
ATTEMPTS = 5

Value = TypeVar("Value", int, str)


class PoolUsedUp(LookupError):
    """Every value of the pool is leased."""


class PoolBusy(RuntimeError):
    """Every attempt lost its value to another process between the look and the insert."""


def lease_next_free(taken: models.QuerySet, field: str, next_free: Callable[[list[Value]], Value | None],
                    row: dict[str, object]) -> Value:
    """Insert a row of ``taken``'s model holding the next free value: ``next_free`` is given the ``field`` values of
    ``taken`` (the leases that count against the pool, read again on every attempt) and answers the value to take,
    or None when there is none; the row is ``row`` with ``field`` set to it. Returns the value. Raises PoolUsedUp
    when ``next_free`` finds none, PoolBusy when ``ATTEMPTS`` inserts in a row met a unique row another process
    had just made."""
    for _attempt in range(ATTEMPTS):
        value = next_free(list(taken.values_list(field, flat=True)))
        if value is None:
            raise PoolUsedUp()
        try:
            with transaction.atomic():
                taken.model.objects.create(**row, **{field: value})
        except IntegrityError:
            continue  # another process took it between our look and our insert; look again
        return value
    raise PoolBusy()
