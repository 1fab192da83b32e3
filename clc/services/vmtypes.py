"""VM types (the sizes an instance may have): checked, made, changed and deleted once no instance uses them. Who may
do so is ``clc.services.authz``'s rule (reading is open to the console's roles, changing belongs to the root)."""

from __future__ import annotations

import logging

from django.db import transaction

from luhyaapi.validators import InvalidValue, validate_name
from luhyadb.models import VMType

logger = logging.getLogger(__name__)

# What a node can give one VM: (lowest, highest) of each size.
LIMITS = {"cpus": (1, 256), "memory_mb": (64, 4 * 1024 * 1024), "disk_gb": (1, 65536)}
SHOWN_USERS = 10
NAME_MAX = VMType._meta.get_field("name").max_length


class VMTypeInUse(Exception):
    """The VM type was not deleted: instances use it (the message names them)."""


def vm_type_problems(*, name: str | None = None, cpus: int | None = None, memory_mb: int | None = None,
                     disk_gb: int | None = None, vm_type: VMType | None = None) -> list[InvalidValue]:
    """Every problem of the given values (None: not given, not checked), each naming its field: a name like other
    names of the cloud (lower-case letters, digits and '-') not taken by another type, sizes within ``LIMITS``."""
    problems = []
    if name is not None:
        try:
            validate_name(name, "name")
        except InvalidValue as exc:
            problems.append(exc)
        else:
            taken = VMType.objects.filter(name=name)
            if vm_type is not None:
                taken = taken.exclude(pk=vm_type.pk)
            if len(name) > NAME_MAX:
                problems.append(InvalidValue("name", f"must be at most {NAME_MAX} characters"))
            elif taken.exists():
                problems.append(InvalidValue("name", f"a VM type {name!r} exists already"))
    for field, value in (("cpus", cpus), ("memory_mb", memory_mb), ("disk_gb", disk_gb)):
        low, high = LIMITS[field]
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high):
            problems.append(InvalidValue(field, f"must be a whole number from {low} to {high}"))
    return problems


def validate_vm_type(*, name: str, cpus: int, memory_mb: int, disk_gb: int, vm_type: VMType | None = None) -> dict:
    """The values of a VM type, checked (``vm_type_problems``); raises the first problem (``InvalidValue``)."""
    problems = vm_type_problems(name=name, cpus=cpus, memory_mb=memory_mb, disk_gb=disk_gb, vm_type=vm_type)
    if problems:
        raise problems[0]
    return {"name": name, "cpus": cpus, "memory_mb": memory_mb, "disk_gb": disk_gb}


def create_vm_type(*, name: str, cpus: int, memory_mb: int, disk_gb: int) -> VMType:
    """Make a VM type. Raises ``InvalidValue`` naming the field for a bad or taken value."""
    values = validate_vm_type(name=name, cpus=cpus, memory_mb=memory_mb, disk_gb=disk_gb)
    vm_type = VMType.objects.create(**values)
    logger.info("vm types: %s created", vm_type)
    return vm_type


def change_vm_type(vm_type: VMType, **changes) -> VMType:
    """Change any of name, cpus, memory_mb and disk_gb (instances already running keep the size they started with).
    Raises ``InvalidValue`` naming the field for a bad or taken value."""
    current = {field: getattr(vm_type, field) for field in ("name", "cpus", "memory_mb", "disk_gb")}
    values = validate_vm_type(**(current | changes), vm_type=vm_type)
    for field, value in values.items():
        setattr(vm_type, field, value)
    vm_type.save()
    logger.info("vm types: %s changed", vm_type)
    return vm_type


def users_of(vm_type: VMType) -> list[str]:
    """The instances and desktop pools (by id) that keep the VM type from being deleted, at most ``SHOWN_USERS`` of
    each."""
    return [*vm_type.instances.values_list("instance_id", flat=True)[:SHOWN_USERS],
            *vm_type.pools.values_list("pool_id", flat=True)[:SHOWN_USERS]]


@transaction.atomic
def delete_vm_type(vm_type: VMType) -> None:
    """Delete a VM type. Raises ``VMTypeInUse`` while instances use it."""
    users = users_of(vm_type)
    if users:
        counts = {"instance": vm_type.instances.count(), "desktop pool": vm_type.pools.count()}
        more = ", ..." if sum(counts.values()) > len(users) else ""
        what = " and ".join(f"{count} {kind}{'' if count == 1 else 's'}" for kind, count in counts.items() if count)
        raise VMTypeInUse(f"VM type {vm_type.name} is used by {what} ({', '.join(users)}{more}): change or delete "
                          "them first")
    vm_type.delete()
    logger.info("vm types: %s deleted", vm_type.name)
