"""The initial data of a new cloud (notes section III): VM types, the root owner-group, the first administrator."""

from __future__ import annotations

import logging
import os
import secrets
from pathlib import Path

from django.contrib.auth import get_user_model
from django.db import transaction

from luhyadb.choices import ResourceTypeChoices
from luhyadb.models import OwnerGroup, OwnerGroupPermission, VMType

logger = logging.getLogger(__name__)

VM_TYPES = (
    ("small", 1, 1024, 20),
    ("medium", 2, 2048, 40),
    ("large", 4, 4096, 80),
    ("xlarge", 8, 8192, 160),
    ("tiny", 1, 256, 1),
)
ROOT_GROUP = ("root", "edu", "The whole cloud: every owner-group path lies below 'edu'.")


@transaction.atomic
def seed_initial_data() -> None:
    """Create the VM types and the root owner-group (full rights on every resource type); idempotent."""
    for name, cpus, memory_mb, disk_gb in VM_TYPES:
        VMType.objects.get_or_create(name=name, defaults={"cpus": cpus, "memory_mb": memory_mb, "disk_gb": disk_gb})
    name, path, description = ROOT_GROUP
    root, _ = OwnerGroup.objects.get_or_create(path=path, defaults={"name": name, "description": description})
    for resource_type in ResourceTypeChoices.values:
        OwnerGroupPermission.objects.get_or_create(
            owner_group=root, resource_type=resource_type,
            defaults={"read": True, "write": True, "execute": True, "create": True, "delete": True})


def ensure_superuser(username: str, data_dir: Path) -> str | None:
    """Create the first administrator if absent; return the new password (``EDUCLOUD_ADMIN_PASSWORD`` or a random
    one, also written to ``<data_dir>/admin-password`` readable by its owner only), or None if it existed."""
    user_model = get_user_model()
    if user_model.objects.filter(username=username).exists():
        return None
    password = os.environ.get("EDUCLOUD_ADMIN_PASSWORD") or secrets.token_urlsafe(12)
    user_model.objects.create_superuser(username=username, email="", password=password)
    data_dir.mkdir(parents=True, exist_ok=True)
    secret = data_dir / "admin-password"
    secret.write_text(password + "\n")
    secret.chmod(0o600)
    logger.info("initial data: administrator %s created", username)
    return password
