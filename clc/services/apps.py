"""Published apps (RemoteApp, the notes' SeamlessRDP, sections 2.1 and 9): the applications an image's guests
publish (``ImageApp``), offered on the portal to the people who may use a desktop of that image, each as a RemoteApp
``.rdp`` file and as an rdesktop SeamlessRDP command line.

A person is offered the apps of the images of the pools they may get a desktop from (``pools.usable_pools``) and of
the desktops given to them one by one; opening one gets them their desktop of the pool (``pools.claim_desktop``:
theirs if they hold one, else a free or new one) or starts their own desktop, and the app's file is there once the
desktop runs. Who may do what is ``clc.services.authz``'s rule on the pool or the desktop (execute); nothing here is
run on this host: the command line is text for the person's own computer.
"""

from __future__ import annotations

import logging
import shlex
from dataclasses import dataclass

from clc.services import authz, pools, portal
from clc.services.instances import EDITABLE_STATES
from luhyadb.choices import InstanceKindChoices
from luhyadb.models import DesktopPool, ImageApp, Instance, OwnerGroup

logger = logging.getLogger(__name__)

# Where the notes' terminal-server tools put SeamlessRDP's shell in a Windows guest (tl-wts-tools, section 9.1).
SEAMLESS_SHELL = r"C:\Program Files\ThinLinc\WTSTools\seamlessrdpshell.exe"


class AppError(Exception):
    """A published app cannot be opened as asked: ``status`` is the HTTP status, ``field`` the field it is about."""

    def __init__(self, status: int, message: str, field: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.field = field


@dataclass(frozen=True)
class AppOffer:
    """One app as the portal offers it: from a ``pool`` (a desktop of it is got when the app opens) or from a
    ``desktop`` given to the person."""

    app: ImageApp
    pool: DesktopPool | None = None
    desktop: Instance | None = None

    @property
    def source(self) -> str:
        return self.pool.name if self.pool is not None else self.desktop.name


@dataclass(frozen=True)
class GroupApps:
    """The apps offered to a person through one owner-group (a class), by name."""

    group: OwnerGroup
    offers: tuple[AppOffer, ...]


def published_apps(actor: authz.Actor) -> list[GroupApps]:
    """The apps the person may open, by owner-group path: those of the images of the pools they may get a desktop
    from, and of the desktops they may use that are no pool's (a pool's desktop they hold comes with its pool)."""
    offers: dict[int, list[AppOffer]] = {}
    groups: dict[int, OwnerGroup] = {}
    for pool in pools.usable_pools(actor).prefetch_related("image__apps"):
        groups[pool.owner_group_id] = pool.owner_group
        offers.setdefault(pool.owner_group_id, []).extend(AppOffer(app, pool=pool) for app in pool.image.apps.all())
    desktops = authz.readable(actor, Instance.objects.filter(kind=InstanceKindChoices.RVD, pool__isnull=True)
                              .select_related("image", "owner_group").prefetch_related("image__apps"), "execute")
    for desktop in desktops:
        groups[desktop.owner_group_id] = desktop.owner_group
        offers.setdefault(desktop.owner_group_id, []).extend(AppOffer(app, desktop=desktop)
                                                             for app in desktop.image.apps.all())
    return [GroupApps(groups[key], tuple(sorted(found, key=lambda offer: (offer.app.name.lower(), offer.source))))
            for key, found in sorted(offers.items(), key=lambda item: groups[item[0]].path) if found]


def open_app(actor: authz.Actor, app: ImageApp, user, *, pool: DesktopPool | None = None,
             desktop: Instance | None = None) -> Instance:
    """The desktop the app runs on, started if it was not: the person's desktop of ``pool`` (``claim_desktop``) or
    ``desktop`` itself. ``authz.Denied`` unless the person may execute the pool or desktop; AppError 404 naming
    ``app`` when the app is not its image's, 400 naming ``pool`` unless exactly one of the two is given; the pool's
    and the run's own refusals (``PoolError``, ``InstanceError``) pass through."""
    if (pool is None) == (desktop is None):
        raise AppError(400, "say where to open the app: a pool or one of your desktops", "pool")
    image_id = pool.image_id if pool is not None else desktop.image_id
    if app.image_id != image_id:
        raise AppError(404, f"{app.name} is not an app of {(pool or desktop).name}'s image", "app")
    if pool is not None:
        desktop = pools.claim_desktop(actor, pool, user).desktop
    else:
        authz.require(actor, "execute", desktop)
        if desktop.state in EDITABLE_STATES:
            desktop = portal.start_desktop(desktop)
    logger.info("apps: %s opened on %s for %s", app.name, desktop.instance_id, user.get_username())
    return desktop


def app_of(holder: DesktopPool | Instance, app_id: int) -> ImageApp:
    """The app ``app_id`` of the image of ``holder`` (a pool or a desktop); AppError 404 naming ``app`` when that
    image publishes none such."""
    app = ImageApp.objects.filter(pk=app_id, image_id=holder.image_id).select_related("image").first()
    if app is None:
        raise AppError(404, f"{holder.name}'s image publishes no app {app_id}", "app")
    return app


def seamless_command(desktop: Instance, app: ImageApp, username: str) -> str:
    """The notes' rdesktop SeamlessRDP command line that opens the app alone from the person's computer (section
    9.2), quoted for a POSIX shell, for display only; "" until the desktop runs with its Remote Desktop forwarded."""
    endpoint = portal.rdp_endpoint(desktop)
    if endpoint is None:
        return ""
    program = app.program.removeprefix("||")  # an alias is the program's own name to SeamlessRDP's shell
    host = f"[{endpoint.host}]" if ":" in endpoint.host else endpoint.host
    return shlex.join(["rdesktop", "-A", SEAMLESS_SHELL, "-s", program, "-u", username, f"{host}:{endpoint.port}"])
