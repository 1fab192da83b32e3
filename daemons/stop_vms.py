"""The choice of what a node's VMs do when its host process ends: ``--stop-vms`` of ``run_cloud``/``run_daemons``,
or ``EDUCLOUD_STOP_VMS_ON_EXIT`` (what happens then is ``nc.services.shutdown``)."""

from __future__ import annotations

import os
from collections.abc import Mapping

from django.core.management.base import CommandError

STOP_VMS_ENV = "EDUCLOUD_STOP_VMS_ON_EXIT"
HELP = (f"on exit, stop this node's VMs (else they keep running and are taken back at the next start); also "
        f"{STOP_VMS_ENV}=1")


def stop_vms_option(flag: bool, environ: Mapping[str, str] = os.environ) -> bool:
    """The flag, or else ``EDUCLOUD_STOP_VMS_ON_EXIT`` (1/true/yes/on or 0/false/no/off, empty for no).

    Raises ``CommandError`` naming the variable for any other value."""
    value = environ.get(STOP_VMS_ENV, "").strip().lower()
    if flag or value in ("1", "true", "yes", "on"):
        return True
    if value in ("", "0", "false", "no", "off"):
        return False
    raise CommandError(f"{STOP_VMS_ENV} must be 1 or 0 (true/false, yes/no, on/off), not {value!r}")
