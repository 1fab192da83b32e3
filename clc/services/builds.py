"""The image wizard (the notes 4.3.1 and VIII): create a new image from an existing one, or modify an image, by
editing a VM of it and submitting its disk as a new version.

One task id ``srcid:dstid:insid`` ties it together (dst == src for a modify). Its phases: ``preparing`` (the image
pulled to a node and cloned), ``editing`` (the VM booted, used through its console, stopped), ``submitting`` (the
disk uploaded nc -> cc -> walrus). The wizard's VM is an instance record with ``build_tid`` set, so the same run,
stop and delete paths serve it; its submitted version is recorded when the node's ``submitting/done`` report folds.
"""

from __future__ import annotations

import logging

from django.db import transaction

from clc.services.commands import controller_client
from clc.services.images import record_version
from clc.services.instances import (
    EDITABLE_STATES,
    STOPPABLE_STATES,
    InstanceError,
    define_instance,
    delete_instance,
    instance_controller,
    run_instance,
    stop_instance,
)
from luhyaapi.client import RemoteError
from luhyaapi.ids import TaskId, new_id
from luhyadb.choices import InstanceStateChoices as State
from luhyadb.choices import UsageChoices
from luhyadb.models import Image, Instance, TaskTransaction, VMType

logger = logging.getLogger(__name__)


class BuildError(InstanceError):
    """A wizard step was refused; ``status`` is the HTTP status that says why."""


@transaction.atomic
def begin_build(source: Image, vm_type: VMType, *, new_name: str = "", user: str = "", node: str = "",
                services: tuple[int, ...] = (80,)) -> TaskTransaction:
    """Start a wizard on ``source``: a modify, or with ``new_name`` the create of a new image from it. Records the
    task (phase ``init``) and the wizard's VM (persistent, so its disk lives from step to step)."""
    if not source.current_version:
        raise BuildError(409, f"image {source.image_id} has no file yet; upload one first")
    tid = TaskId.new(source.image_id, new_id("image") if new_name else None)
    kind = "vs" if source.usage == UsageChoices.SERVER else "rvd"
    define_instance(name=f"{'Create' if new_name else 'Modify'}: {new_name or source.name}"[:100], kind=kind,
                    image=source, vm_type=vm_type, owner_group=source.owner_group, persistent=True,
                    services=list(services), pinned_node=node, instance_id=tid.ins, build_tid=str(tid))
    task = TaskTransaction.objects.create(
        tid=str(tid), src_image_id=tid.src, dst_image_id=tid.dst, instance_id=tid.ins, user=user, phase="init",
        state="init", runtime_option={"create": bool(new_name), "name": new_name, "vm_type": vm_type.name})
    logger.info("builds: %s begun (%s of %s)", tid, "create" if new_name else "modify", source.image_id)
    return task


def build_instance(task: TaskTransaction) -> Instance:
    """The wizard's VM; BuildError 404 once the task is submitted or cancelled."""
    instance = Instance.objects.select_related("image", "vm_type").filter(build_tid=task.tid).first()
    if instance is None:
        raise BuildError(404, f"task {task.tid} has no VM any more (submitted or cancelled)")
    return instance


def build_steps(instance: Instance | None) -> dict[str, bool]:
    """Which wizard steps its VM's state allows now (the page's buttons and the API's ``steps``)."""
    state = instance.state if instance else ""
    placed = bool(instance and instance.node)
    return {
        "prepare": bool(instance) and not placed and state in EDITABLE_STATES,
        "run": placed and state in (State.STOPPED, State.FAILED),
        "stop": state in STOPPABLE_STATES,
        "submit": placed and state == State.STOPPED,
        "cancel": bool(instance) and state not in (State.DELETING, State.SUBMITTING),
    }


def prepare_build(task: TaskTransaction) -> Instance:
    """Step 1: pull the image to a node and clone it (progress in the task); the VM is not started."""
    return run_instance(build_instance(task), boot=False)


def run_build(task: TaskTransaction) -> Instance:
    """Step 2: boot the wizard's VM on its node; its console is then on the instance (``console_url``)."""
    instance = build_instance(task)
    if not instance.node:
        raise BuildError(409, "prepare the image first")
    return run_instance(instance)


def stop_build(task: TaskTransaction) -> Instance:
    """Step 2, end: shut the VM down; its disk stays for the submit (or another run)."""
    return stop_instance(build_instance(task))


def submit_build(task: TaskTransaction) -> Instance:
    """Step 3: the node uploads the edited disk through its CC to walrus as a new version of the destination
    image (created when the upload is recorded, for a create). 409 while the VM has not been prepared or is
    still running, 503 when its cluster has no online CC, 502 when the CC does not take it (the VM stays stopped,
    the task failed with the reason). A submit that fails on the node comes back as the VM stopped with the
    reason (``message``), so it can be submitted again.

    Each submit is a new run number (``runs``, the command's ``seq``): the node runs a command once per task, op
    and seq, so a submit asked again after a failure must not look like a redelivery of the failed one."""
    instance = build_instance(task)
    with transaction.atomic():
        instance = Instance.objects.select_for_update().get(pk=instance.pk)
        if instance.state != State.STOPPED or not instance.node:
            raise BuildError(409, f"the VM is {instance.state}; prepare it, and stop it before submitting")
        controller = instance_controller(instance)
        # Submitting before the CC is asked: the node's answer (even a fast failure) must come after it.
        instance.runs += 1
        instance.state = State.SUBMITTING
        instance.message = ""
        instance.save(update_fields=["runs", "state", "message", "updated"])
        TaskTransaction.objects.filter(pk=task.pk).update(phase="submitting", state="init", progress=0, done=False,
                                                          failed=False, message="")
    try:
        controller_client(controller).post(f"/cc/api/1.0/instances/{instance.instance_id}/submit/",
                                           {"seq": instance.runs, "image_id": task.dst_image_id})
    except RemoteError as exc:
        message = f"the cluster controller did not take the submit: {exc.detail}"
        with transaction.atomic():
            Instance.objects.filter(pk=instance.pk, state=State.SUBMITTING).update(state=State.STOPPED,
                                                                                 message=message)
            TaskTransaction.objects.filter(pk=task.pk).update(phase="failed", failed=True, message=message)
        raise BuildError(502, message) from exc
    return instance


def cancel_build(task: TaskTransaction) -> None:
    """Give up a wizard: its VM and disk are removed from the node; the task is marked failed ("cancelled")."""
    instance = Instance.objects.filter(build_tid=task.tid).first()
    if instance is not None:
        delete_instance(instance)
    TaskTransaction.objects.filter(pk=task.pk).update(phase="failed", failed=True, message="cancelled")


@transaction.atomic
def record_submitted(tid: str, stored: dict) -> Image | None:
    """Record the version a node submitted (the task's ``submitting/done`` result): a new version of the image for
    a modify; for a create, the new image (properties of its source, the name given) with its first version.
    Idempotent: a redelivered report records nothing twice. Returns the image, None for an unknown task."""
    task = TaskTransaction.objects.select_for_update().filter(tid=tid).first()
    missing = {"version", "size", "sha256", "format"} - set(stored)
    if task is None or missing:
        logger.error("builds: submit result for task %s not recorded (%s)", tid,
                     "unknown task" if task is None else f"missing {', '.join(sorted(missing))}")
        return None
    image = Image.objects.filter(image_id=task.dst_image_id).first()
    if image is None:
        source = Image.objects.filter(image_id=task.src_image_id).first()
        if source is None:
            logger.error("builds: %s submitted, but its source image %s is gone", tid, task.src_image_id)
            return None
        image = Image.objects.create(
            image_id=task.dst_image_id, name=task.runtime_option.get("name") or f"{source.name} (copy)",
            os_type=source.os_type, arch=source.arch, usage=source.usage, owner_group=source.owner_group,
            description=f"Made with the image wizard from {source.name} ({source.image_id}).")
    if not image.versions.filter(number=stored["version"]).exists():
        record_version(image, stored)
        logger.info("builds: %s submitted %s version %s", tid, image.image_id, stored["version"])
    return image
