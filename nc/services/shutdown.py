"""This node's VMs when its host process ends (Ctrl-C, SIGTERM): by default they keep running, and the host says so
and how to stop them (the node takes them back at its next start); with ``run_cloud --stop-vms`` (or
``EDUCLOUD_STOP_VMS_ON_EXIT=1``) each is stopped as the console's Stop does, before the process ends."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from django.conf import settings
from django.db import connection

from luhyaapi.messages import Command
from nc.drivers.base import DriverError, VMState
from nc.models import NodeInstance
from nc.services.instances import Reporter, node_driver, stop_instance

logger = logging.getLogger(__name__)

# Beyond the guest's own shutdown time: for the forced power-off, removing the VM and reporting it.
STOP_MARGIN_SECONDS = 30.0


def running_vms() -> list[str]:
    """The instance ids of the VMs running on this node now, whatever the records say."""
    driver = node_driver()
    return [insid for insid in driver.list_vms() if driver.state(insid) is VMState.RUNNING]


def keep_running_notice(insids: list[str]) -> str:
    """What the host prints when it ends and leaves VMs running: which, why, and how to stop them."""
    return (f"{len(insids)} VM(s) of this node keep running: {', '.join(insids)}. They are taken back when this host "
            "starts again. To stop them, use Stop in the console before stopping the host, or run it with "
            "`manage.py run_cloud --stop-vms` (or EDUCLOUD_STOP_VMS_ON_EXIT=1) to stop this node's VMs when it ends.")


def stop_vms(insids: list[str], reporter: Reporter, timeout: float) -> list[str]:
    """Stop the VMs at once, each in its own thread (a class of desktops shuts down in one guest's time), as
    ``instance/stop`` does: the guest is asked to shut down, switched off after ``nc.stop_timeout_seconds``, its VM
    and temporary disk removed, and ``stopped`` reported. Returns those still running after ``timeout`` seconds.
    A VM whose stop fails is logged and left to the next start's adoption."""
    records = {record.instance_id: record for record in NodeInstance.objects.filter(instance_id__in=insids)}

    def stop_one(insid: str) -> None:
        record = records.get(insid)
        command = Command(op="instance/stop", tid=record.tid if record else "", seq=record.seq if record else 0,
                          paras={"insid": insid})
        try:
            stop_instance(command, reporter)
        except DriverError as exc:
            logger.error("shutdown: could not stop %s: %s", insid, exc)
        finally:
            connection.close()  # this thread's own database connection

    threads = [threading.Thread(target=stop_one, args=(insid,), name=f"stop-{insid}", daemon=True)
               for insid in insids]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout)
    left = set(running_vms())
    return [insid for insid in insids if insid in left]


def on_exit(reporter: Reporter, *, stop: bool, log: Callable[[str], None]) -> list[str]:
    """At the end of the host process: stop this node's running VMs (``stop``), or say that they keep running and
    how to stop them. Returns the VMs left running."""
    running = running_vms()
    if not running:
        return []
    if not stop:
        log(keep_running_notice(running))
        return running
    log(f"stopping this node's {len(running)} VM(s): {', '.join(running)}")
    left = stop_vms(running, reporter, settings.EDUCLOUD.vm_stop_timeout + STOP_MARGIN_SECONDS)
    if left:
        log(f"{len(left)} VM(s) did not stop and keep running: {', '.join(left)}")
    else:
        log(f"stopped {len(running)} VM(s)")
    return left
