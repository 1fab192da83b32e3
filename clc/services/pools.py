"""Desktop pools (``DesktopPool``): remote desktops of one image for one owner-group, handed out to its people as they
come, as a desktop broker's pool does.

- **Getting a desktop** (``claim_desktop``): the person's own desktop of the pool if they hold one; else a free one
  that runs already (the pool keeps ``min_ready`` of them), else a free one on its way up, else a free stopped one,
  started for them, else a new one while the pool has fewer than ``max_size``. The desktop is then assigned to the
  person, so every page and rule about "their desktops" applies to it.
- **Giving it back**: a desktop of a non-persistent pool is the pool's again once its run has ended (the status fold
  calls ``give_back``; ``keep_pool`` catches any other way a run ends). Its next run makes its disk again from the
  image (a non-persistent instance's clone is never kept), so the next person finds it as the image made it. A
  persistent pool's desktop stays its person's, disk and all.
- **Data disks**: a pool with ``data_disk_mb`` gives each person their personal data disk with their desktop
  (``clc.services.data_disks``: carried by the run, or attached to a desktop up already); a desktop given back
  releases it for the person's next desktop.
- **Keeping it ready** (``keep_pool``, the periodic job): free desktops are started until ``wanted_ready`` are up or
  on their way (``min_ready``, or the whole pool while one of its lessons is on: ``clc.services.lessons``); after a
  lesson the desktops nobody uses are stopped.

Who may do what is ``clc.services.authz``'s rule on the pool (type ``pool``): a person who may execute the pool
may get a desktop from it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from clc.services import authz
from clc.services.data_disks import give_data_disk
from clc.services.instances import (
    BUSY_STATES,
    EDITABLE_STATES,
    ENDED_STATES,
    InstanceError,
    define_instance,
    delete_instance,
    run_instance,
    stop_instance,
)
from clc.services.volumes import release_volumes
from luhyaapi.ids import new_id
from luhyadb.choices import InstanceKindChoices
from luhyadb.choices import InstanceStateChoices as State
from luhyadb.models import MAX_DATA_DISK_MB, MAX_POOL_SIZE, DesktopPool, Image, Instance, OwnerGroup, VMType

logger = logging.getLogger(__name__)

# A pool's desktops are named after it ("<pool> 12"), within an instance name's 100 characters.
POOL_NAME_LENGTH = 90
# A free desktop on its way up is as good as ready: the person waits less for it than for a stopped one.
STARTING_STATES = (State.SCHEDULED, State.PREPARING, State.BOOTING)
READY_STATES = (*STARTING_STATES, State.RUNNING)


class PoolError(Exception):
    """A pool operation was refused: ``status`` is the HTTP status, ``field`` the field it is about ("" for none)."""

    def __init__(self, status: int, message: str, field: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.field = field


def pool_problems(*, image: Image, image_version: int, owner_group: OwnerGroup, min_ready: int,
                  max_size: int, data_disk_mb: int = 0) -> dict[str, str]:
    """What is wrong with a pool's settings, by field ({} when nothing is): a desktop must be able to run the image
    (a version that exists, an image of the pool's group or a group above it, so a school's image serves its classes
    and no other school's), the pool must be able to keep ``min_ready`` desktops, and a personal data disk is 0
    (none) to ``MAX_DATA_DISK_MB`` MiB."""
    problems = {}
    if not 0 <= data_disk_mb <= MAX_DATA_DISK_MB:
        problems["data_disk_mb"] = f"a data disk is 0 (none) to {MAX_DATA_DISK_MB} MiB"
    if not authz.within(image.owner_group.path, owner_group.path):
        problems["image"] = (f"image {image.image_id} belongs to {image.owner_group.path}: a pool of "
                             f"{owner_group.path} may use the images of its own owner-group and of the groups above it")
    if image_version and not image.versions.filter(number=image_version).exists():
        numbers = ", ".join(str(n) for n in image.versions.values_list("number", flat=True)) or "none yet"
        problems["image_version"] = f"image {image.image_id} has no version {image_version} (it has: {numbers})"
    elif not image_version and not image.current_version:
        problems["image"] = f"image {image.image_id} has no file yet; upload one first"
    if not 1 <= max_size <= MAX_POOL_SIZE:
        problems["max_size"] = f"a pool holds 1 to {MAX_POOL_SIZE} desktops"
    if min_ready < 0 or min_ready > max_size:
        problems["min_ready"] = f"min ready ({min_ready}) must lie between 0 and the pool's size ({max_size})"
    return problems


def create_pool(*, name: str, image: Image, vm_type: VMType, owner_group: OwnerGroup, image_version: int = 0,
                min_ready: int = 0, max_size: int = 30, persistent: bool = False,
                data_disk_mb: int = 0) -> DesktopPool:
    """A new pool (PoolError 400 naming the field when its settings cannot work); its ready desktops start. With
    ``data_disk_mb``, each person it hands a desktop to gets their personal data disk of that size with it
    (``clc.services.data_disks``)."""
    refuse(pool_problems(image=image, image_version=image_version, owner_group=owner_group, min_ready=min_ready,
                          max_size=max_size, data_disk_mb=data_disk_mb))
    pool = DesktopPool.objects.create(pool_id=new_id("pool"), name=name, image=image, image_version=image_version,
                                      vm_type=vm_type, owner_group=owner_group, min_ready=min_ready,
                                      max_size=max_size, persistent=persistent, data_disk_mb=data_disk_mb)
    logger.info("pools: %s (%s) made for %s: %d to %d desktops of %s", pool.pool_id, name, owner_group.path,
                min_ready, max_size, image.image_id)
    return pool


def change_pool(pool: DesktopPool, **changes) -> DesktopPool:
    """Change a pool's settings (PoolError 400 naming the field). Its desktops take a new image, version or VM
    type at their next run; a desktop that is busy now keeps what it runs."""
    settings_after = {name: changes.get(name, getattr(pool, name))
                      for name in ("image", "image_version", "owner_group", "min_ready", "max_size", "data_disk_mb")}
    refuse(pool_problems(**settings_after))
    if "owner_group" in changes and changes["owner_group"] != pool.owner_group and pool.desktops.exists():
        raise PoolError(409, "a pool with desktops stays in its owner-group; delete its desktops first",
                        "owner_group")
    for name, value in changes.items():
        setattr(pool, name, value)
    pool.save()
    settled = pool.desktops.filter(state__in=EDITABLE_STATES)
    settled.update(image=pool.image, image_version=pool.image_version, vm_type=pool.vm_type,
                   persistent=pool.persistent, updated=timezone.now())
    logger.info("pools: %s changed", pool.pool_id)
    return pool


def delete_pool(pool: DesktopPool) -> None:
    """Delete the pool and its desktops. PoolError 409 while any desktop is busy (someone may be using it). A
    desktop that ran is removed from its node first and goes when its node reports it deleted."""
    busy = pool.desktops.filter(state__in=BUSY_STATES).exclude(state=State.DELETING).count()
    if busy:
        raise PoolError(409, f"{busy} desktop{'s' if busy != 1 else ''} of {pool.name} still run{'s' * (busy == 1)}: "
                             "stop them first (the class console's stop all)")
    for desktop in pool.desktops.all():
        try:
            delete_instance(desktop)
        except InstanceError as exc:
            raise PoolError(exc.status, f"desktop {desktop.instance_id} could not be deleted: {exc}") from exc
    # Desktops still being removed from their nodes leave the pool now; they go when their nodes say so.
    pool.desktops.update(pool=None)
    pool.delete()
    logger.info("pools: %s (%s) deleted", pool.pool_id, pool.name)


def usable_pools(actor: authz.Actor) -> QuerySet:
    """The pools the person may get a desktop from, by name."""
    return authz.readable(actor, DesktopPool.objects.select_related("image", "owner_group"), "execute")


def desktop_of(pool: DesktopPool, user) -> Instance | None:
    """The person's desktop of the pool, if they hold one."""
    return pool.desktops.filter(assigned_to=user).first()


@dataclass(frozen=True)
class Claim:
    """A desktop handed out: ``started`` when this claim asked for its run."""

    desktop: Instance
    started: bool


def claim_desktop(actor: authz.Actor, pool: DesktopPool, user) -> Claim:
    """A desktop of the pool for ``user`` (see the module's docstring for which). ``authz.Denied`` unless the actor
    may execute the pool; PoolError 409 when every desktop is someone else's; the run's own refusal
    (``InstanceError``) passes through, the desktop staying theirs to start again."""
    authz.require(actor, "execute", pool)
    with transaction.atomic():
        _lock(pool)
        desktop = desktop_of(pool, user) or _free_desktop(pool, user) or _new_desktop(pool, user)
    started = False
    if desktop.state in EDITABLE_STATES:
        try:
            desktop = run_instance(desktop)
        except InstanceError:
            # A round of the pool that chose this free desktop before the claim took it may have started it
            # meanwhile: then it is on its way up for the person all the same.
            desktop.refresh_from_db()
            if desktop.state not in READY_STATES:
                raise
        else:
            started = True
    if not started:  # a desktop up already: the person's data disk is plugged in now
        problem = give_data_disk(desktop)
        if problem:
            Instance.objects.filter(pk=desktop.pk).update(message=problem)
    Instance.objects.filter(pk=desktop.pk).update(last_activity=timezone.now())
    desktop.refresh_from_db()
    logger.info("pools: %s of %s is %s's (%s)", desktop.instance_id, pool.pool_id, user.get_username(),
                desktop.state)
    keep_pool(pool)
    return Claim(desktop, started)


def _lock(pool: DesktopPool) -> None:
    """Hold the pool's row (on SQLite: the database) until the caller's transaction ends: one claim or round of a
    pool decides at a time, so two never take the same free desktop, both add the last one, or number two new
    desktops alike."""
    DesktopPool.objects.filter(pk=pool.pk).update(updated=timezone.now())


def _free_desktop(pool: DesktopPool, user) -> Instance | None:
    free = pool.desktops.filter(assigned_to__isnull=True)
    for states in ((State.RUNNING,), STARTING_STATES, EDITABLE_STATES):
        for desktop in free.filter(state__in=states).order_by("-answering", "updated"):
            if Instance.objects.filter(pk=desktop.pk, assigned_to__isnull=True).update(assigned_to=user):
                desktop.refresh_from_db()
                return desktop
    return None


def _new_desktop(pool: DesktopPool, user) -> Instance:
    count = pool.desktops.count()
    if count >= pool.max_size:
        raise PoolError(409, f"all {pool.max_size} desktops of {pool.name} are in use; ask your teacher to make the "
                             "pool bigger, or try again when someone has finished")
    return _define(pool, count + 1, assigned_to=user)


def _define(pool: DesktopPool, number: int, assigned_to=None) -> Instance:
    return define_instance(name=f"{pool.name} {number}", kind=InstanceKindChoices.RVD, image=pool.image,
                           vm_type=pool.vm_type, owner_group=pool.owner_group, persistent=pool.persistent,
                           assigned_to=assigned_to, pool=pool, image_version=pool.image_version)


def give_back(instance_id: str) -> bool:
    """A desktop of a non-persistent pool whose run ended is the pool's again (the status fold calls this when a
    run ends). True if it was someone's."""
    return bool(_give_back(Instance.objects.filter(instance_id=instance_id)))


def _give_back(desktops) -> int:
    """``give_back`` for each of ``desktops`` at once; how many were someone's."""
    ended = desktops.filter(state__in=ENDED_STATES, pool__isnull=False, pool__persistent=False,
                            assigned_to__isnull=False)
    ids = list(ended.values_list("instance_id", flat=True))
    if not ids:
        return 0
    # The person's data disk is theirs, not the desktop's: free for their next desktop (the disk is never deleted).
    release_volumes(Instance.objects.filter(instance_id__in=ids, assigned_to__isnull=False), personal_only=True)
    given = ended.filter(instance_id__in=ids).update(assigned_to=None)
    if given:
        logger.info("pools: %s back in their pool", ", ".join(ids))
    return given


def wanted_ready(pool: DesktopPool, now: datetime) -> int:
    """How many free desktops the pool keeps up now: ``min_ready``, or every desktop the pool may have while one of
    its lessons is on or about to begin (its ``prestart_minutes``), less those its people hold."""
    from clc.services.lessons import lesson_on  # here: lessons read pools' settings

    if lesson_on(pool, now) is not None:
        return max(pool.max_size - pool.desktops.filter(assigned_to__isnull=False).count(), 0)
    return pool.min_ready


def keep_pool(pool: DesktopPool, now: datetime | None = None) -> list[str]:
    """Start free desktops until ``wanted_ready`` are up or on their way: stopped ones first, then new ones while
    the pool is under its size. Desktops of a non-persistent pool whose run ended are given back first. Returns the
    ids of the desktops it started; a refused start is logged and the pool tried again at the next round. It decides
    under the pool's lock, as claims do, so that rounds and claims at once keep the pool within ``max_size``."""
    now = now or timezone.now()
    with transaction.atomic():
        _lock(pool)
        pool.refresh_from_db()
        _give_back(pool.desktops.all())
        free = pool.desktops.filter(assigned_to__isnull=True)
        missing = wanted_ready(pool, now) - free.filter(state__in=READY_STATES).count()
        if missing <= 0:
            return []
        stopped = list(free.filter(state__in=EDITABLE_STATES).order_by("name")[:missing])
        total = pool.desktops.count()
        while len(stopped) < missing and total < pool.max_size:
            total += 1
            stopped.append(_define(pool, total))
    # The runs are asked for after the lock: placing one calls the cluster controllers.
    started = []
    for desktop in stopped:
        try:
            run_instance(desktop)
        except InstanceError as exc:
            desktop.refresh_from_db()
            if desktop.state in READY_STATES:
                continue  # a claim took it and started it meanwhile
            logger.warning("pools: %s of %s not started: %s", desktop.instance_id, pool.pool_id, exc)
            break  # the others would be refused for the same reason (no cluster, no image file)
        started.append(desktop.instance_id)
    if started:
        logger.info("pools: %s keeps %d ready: started %s", pool.pool_id, wanted_ready(pool, now), ", ".join(started))
    return started


def stop_unused(pool: DesktopPool, quiet_since: datetime) -> list[str]:
    """Stop the pool's desktops nobody uses: those whose person has had no console open since ``quiet_since`` (the
    portal's console marks its desktop in use every ``ACTIVITY_SECONDS``), and the free ones beyond ``min_ready``.
    Returns the ids stopped."""
    up = pool.desktops.filter(state__in=READY_STATES)
    quiet = up.filter(assigned_to__isnull=False).exclude(last_activity__gte=quiet_since)
    extra = up.filter(assigned_to__isnull=True).order_by("-created")
    extra_count = max(extra.count() - pool.min_ready, 0)
    stopped = []
    for desktop in [*quiet, *extra[:extra_count]]:
        try:
            stop_instance(desktop)
        except InstanceError as exc:
            logger.warning("pools: unused %s of %s not stopped: %s", desktop.instance_id, pool.pool_id, exc)
            continue
        stopped.append(desktop.instance_id)
    if stopped:
        logger.info("pools: %s stopped its unused desktops %s", pool.pool_id, ", ".join(stopped))
    return stopped


def refuse(problems: dict[str, str]) -> None:
    """PoolError 400 naming the first field of ``problems`` (pools' and lessons' settings), if there is one."""
    if problems:
        field, message = next(iter(problems.items()))
        raise PoolError(400, message, field)
