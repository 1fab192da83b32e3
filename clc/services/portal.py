"""The student portal's logic: a person's remote desktops and how far each has started, starting and stopping them,
the files of native console clients, the one-time tokens of the in-browser console, and stopping idle desktops.

Who may do what is decided by ``clc.services.authz`` alone; this module only asks it. Connecting to a console is
using the machine (keyboard and mouse), so it needs ``execute`` on the instance, as starting and stopping do: a
student has it on the desktops assigned to them, a person who may only read an instance may not type into it.
"""

from __future__ import annotations

import ipaddress
import logging
import re
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

from django.contrib.auth import get_user_model
from django.core import signing
from django.core.cache import cache
from django.db.models import QuerySet
from django.utils import timezone

from clc.services import authz
from clc.services.instances import EDITABLE_STATES, STOPPABLE_STATES, InstanceError, run_instance, stop_instance
from clc.services.rfb import viewer_file_password
from clc.services.tasks import TaskNotFound, task_status
from luhyadb.choices import InstanceKindChoices
from luhyadb.choices import InstanceStateChoices as State
from luhyadb.models import ImageApp, Instance, Volume

logger = logging.getLogger(__name__)

# A console token is good for this long and once: the page asks for one right before it connects.
CONSOLE_TOKEN_SECONDS = 60
TOKEN_SALT = "educloud.portal.console-token"
USED_TOKEN_KEY = "portal:console-token-used:{nonce}"
# How often an open console session marks its desktop as in use (well under the shortest idle time, a minute).
ACTIVITY_SECONDS = 30.0
# How often the CLC looks for idle desktops.
IDLE_CHECK_SECONDS = 60.0
# A teacher's message to a student (the class console's "message") shows on their pages this long, or until the next.
NOTICE_KEY = "portal:notice:{user_id}"
NOTICE_SECONDS = 15 * 60
# Where Debian's novnc package puts noVNC's ES modules (core/rfb.js and what it imports).
NOVNC_DIR = Path("/usr/share/novnc")
# noVNC's file names are short words of letters, digits, "_", "-" and "."; anything else (a name the file system
# refuses as too long, a NUL, "..", a hidden file) is no noVNC file and never reaches the file system.
_NOVNC_PATH_RE = re.compile(r"(?:core|vendor)(?:/[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}){1,10}")

# The consoles the portal knows: VNC (QEMU; in the browser through the proxy, or a VNC client) and RDP (VirtualBox's
# VRDE; a Remote Desktop client only, noVNC speaks VNC).
CONSOLE_SCHEMES = ("vnc", "rdp")
CONSOLE_KINDS = (InstanceKindChoices.RVD, InstanceKindChoices.VS)
_HOST_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOSTNAME_RE = re.compile(rf"{_HOST_LABEL}(?:\.{_HOST_LABEL})*")


class PortalError(Exception):
    """A portal operation was refused; ``status`` is the HTTP status that says why."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class ConsoleRefused(Exception):
    """A console token or an open console session was refused; the message says why, for the log and the browser."""


@dataclass(frozen=True)
class ConsoleEndpoint:
    """Where an instance's console answers, as reachable from the CLC: ``vnc`` or ``rdp``, a host and a port, and
    the password of its run ("" for a console that asks for none)."""

    scheme: str
    host: str
    port: int
    password: str = field(default="", repr=False)


@dataclass(frozen=True)
class ConsoleSession:
    """An admitted console session: who, which desktop (and run), and where the proxy connects."""

    user_id: int
    username: str
    instance_id: str
    runs: int
    endpoint: ConsoleEndpoint
    # Opened to watch only (a teacher looking at a student's screen, ``rfb.WatchOnly``): no input passes, and the
    # watching does not keep the desktop from being idle.
    watch: bool = False


def console_endpoint(instance: Instance) -> ConsoleEndpoint | None:
    """The console of a running instance, or None (not running, no console yet, or a console URL that is not a
    plain ``vnc://host:port`` / ``rdp://host:port``: a value reported by a node never reaches a file or a socket
    unchecked)."""
    if instance.state != State.RUNNING:
        return None
    found = _address(instance.console_url, CONSOLE_SCHEMES)
    if found is None:
        return None
    scheme, host, port = found
    return ConsoleEndpoint(scheme, host, port, _run_password(instance, scheme))


def rdp_endpoint(instance: Instance) -> ConsoleEndpoint | None:
    """Where the running guest's own Remote Desktop answers (its ``rdp`` access: the forwarded 3389 of an image
    that serves RDP, ``Image.rdp``), checked as ``console_endpoint`` checks a console; None while it does not run,
    for an image without RDP, or before the cluster reported the forward."""
    if instance.state != State.RUNNING or not instance.image.rdp or not isinstance(instance.access, dict):
        return None
    found = _address(instance.access.get("rdp", ""), ("rdp",))
    return ConsoleEndpoint(*found) if found else None


def _address(url: object, schemes: tuple[str, ...]) -> tuple[str, str, int] | None:
    """(scheme, host, port) of a plain ``scheme://host:port`` in ``schemes``, else None."""
    if not isinstance(url, str) or not url:
        return None
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        return None
    host = parts.hostname or ""
    if (parts.scheme.lower() not in schemes or not port or parts.path not in ("", "/") or parts.query
            or parts.username or not _valid_host(host)):
        return None
    return parts.scheme.lower(), host, port


def _run_password(instance: Instance, scheme: str) -> str:
    """The run's console password for a VNC console; none for RDP, which VirtualBox's VRDE authenticates."""
    return instance.console_password if scheme == "vnc" else ""


def _valid_host(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return len(host) <= 253 and bool(_HOSTNAME_RE.fullmatch(host))
    return True


def data_disks(actor: authz.Actor) -> QuerySet:
    """The person's personal data disks (``clc.services.data_disks``), with the desktop each is on now."""
    return Volume.objects.filter(personal=True, holder_id=actor.user_id).select_related("instance").order_by("cluster")


def desktops(actor: authz.Actor) -> QuerySet:
    """The remote desktops the person may read (a student: the ones assigned to them), by name."""
    return consoles(actor).filter(kind=InstanceKindChoices.RVD)


def consoles(actor: authz.Actor) -> QuerySet:
    """The instances whose console the person may reach through the portal's console page: remote desktops and
    virtual servers (an image wizard's VM is one of them) they may read. A local desktop's console is on its PC."""
    return authz.readable(actor, Instance.objects.filter(kind__in=CONSOLE_KINDS)
                          .select_related("image", "vm_type", "owner_group"))


def desktop_actions(actor: authz.Actor, instance: Instance) -> dict[str, bool]:
    """What the portal offers for the desktop now: start when settled, stop while starting or running (remote
    desktops only: a virtual server or a wizard's VM is run from the admin console), connect while running with a
    console, and the .rdp file while its guest's Remote Desktop is forwarded; each only if the person may execute
    it."""
    usable = authz.may(actor, "execute", instance)
    desktop = instance.kind == InstanceKindChoices.RVD
    return {"start": usable and desktop and instance.state in EDITABLE_STATES,
            "stop": usable and desktop and instance.state in STOPPABLE_STATES,
            "connect": usable and console_endpoint(instance) is not None,
            "rdp": usable and rdp_endpoint(instance) is not None}


def start_progress(instance: Instance) -> tuple[int | None, str]:
    """How far a start has come, for a progress bar: (percent or None when not starting, what it is doing). The
    download of the image is the long part, so the bar follows the node's download progress."""
    if instance.state == State.SCHEDULED:
        return 0, "Waiting for its computer"
    if instance.state == State.BOOTING:
        return 100, "Starting up"
    if instance.state != State.PREPARING:
        return None, ""
    try:
        task = task_status(instance.tid)
    except TaskNotFound:
        task = {}
    # A report of the previous run can still be in the cache: only a report of this phase counts.
    if task.get("phase") != "preparing" or task.get("done") or task.get("failed"):
        return 0, "Preparing"
    if task.get("state") == "cloning":
        return 99, "Preparing its disk"
    if task.get("state") == "waiting":  # in the node's boot queue: "waiting to boot, 3rd in line"
        return 99, (task.get("vmstatus") or "waiting to boot").capitalize()
    progress = int(task.get("progress") or 0)
    return progress, f"Copying its image ({progress}%)"


def desktop_status(actor: authz.Actor, instance: Instance) -> dict:
    """A desktop as the portal's pages show it and refresh it (JSON-ready)."""
    progress, step = start_progress(instance)
    endpoint = console_endpoint(instance)
    return {
        "instance_id": instance.instance_id,
        "name": instance.name,
        "kind": instance.kind,
        "state": instance.state,
        "state_label": instance.state_text,
        "progress": progress,
        "step": step,
        "message": instance.message if instance.state == State.FAILED else
        (instance.NOT_ANSWERING_HINT if instance.state == State.RUNNING and not instance.answering else ""),
        "console": endpoint.scheme if endpoint else "",
        "rdp": instance.image.rdp,
        "actions": desktop_actions(actor, instance),
        "notice": notice_for(actor.user_id),
    }


def post_notice(user_id: int, sender: str, text: str) -> None:
    """Show ``text`` from ``sender`` (a teacher) on the student's portal pages for ``NOTICE_SECONDS``."""
    cache.set(NOTICE_KEY.format(user_id=user_id), {"from": sender, "text": text}, NOTICE_SECONDS)


def notice_for(user_id: int | None) -> str:
    """The teacher's current message to this student, as the portal shows it ("" when there is none)."""
    notice = cache.get(NOTICE_KEY.format(user_id=user_id)) if user_id else None
    return f"{notice['from']}: {notice['text']}" if isinstance(notice, dict) else ""


def start_desktop(instance: Instance) -> Instance:
    """Run the desktop (``run_instance``, whose ``InstanceError`` passes through) and start its idle clock."""
    instance = run_instance(instance)
    Instance.objects.filter(pk=instance.pk).update(last_activity=timezone.now())
    instance.refresh_from_db()
    logger.info("portal: %s started", instance.instance_id)
    return instance


def stop_desktop(instance: Instance) -> Instance:
    """Stop the desktop (``stop_instance``; its ``InstanceError`` passes through)."""
    instance = stop_instance(instance)
    logger.info("portal: %s stopped from the portal", instance.instance_id)
    return instance


def client_file(instance: Instance) -> tuple[str, str, str]:
    """The file a native client opens to reach the running desktop's console: (file name, content type, text). A
    ``.vnc`` file (``[connection]`` host and port) for a VNC console, a ``.rdp`` file for an RDP one. PortalError
    409 while it is not running with a console."""
    endpoint = console_endpoint(instance)
    if endpoint is None:
        raise PortalError(409, f"{instance.name} is {State(instance.state).label.lower()}; start it and wait "
                               "until it runs")
    if endpoint.scheme == "rdp":
        address = f"[{endpoint.host}]" if ":" in endpoint.host else endpoint.host
        text = f"full address:s:{address}:{endpoint.port}\r\n"
        return f"{instance.instance_id}.rdp", "application/x-rdp", text
    text = f"[connection]\nhost={endpoint.host}\nport={endpoint.port}\n"
    if endpoint.password:
        text += f"password={viewer_file_password(endpoint.password)}\n"
    return f"{instance.instance_id}.vnc", "application/x-vnc", text


@dataclass(frozen=True)
class Screen:
    """How a Remote Desktop client shows the desktop: full screen at the client's own size, or a window of
    ``width`` x ``height``."""

    full: bool
    width: int = 0
    height: int = 0


SCREENS = {"full": Screen(full=True), **{f"{w}x{h}": Screen(False, w, h) for w, h in (
    (1920, 1080), (1600, 900), (1366, 768), (1280, 800), (1024, 768))}}
# What every .rdp file of the portal asks for besides the address, the person and the screen: the certificate of a
# guest is its own (self-signed), so a mismatch warns instead of refusing; the clipboard passes, drives and printers
# of the school's PCs do not; a dropped connection is made again.
RDP_SETTINGS = (
    "session bpp:i:32", "compression:i:1", "smart sizing:i:1", "dynamic resolution:i:1", "use multimon:i:0",
    "audiomode:i:0", "redirectclipboard:i:1", "redirectprinters:i:0", "redirectdrives:i:0",
    "redirectsmartcards:i:0", "autoreconnection enabled:i:1", "authentication level:i:2",
    "prompt for credentials:i:1", "negotiate security layer:i:1", "displayconnectionbar:i:1",
)
# A value of a .rdp line is one line: these would end it (``str.splitlines`` breaks on each).
_LINE_BREAKS = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def rdp_file(instance: Instance, username: str, screen: Screen = SCREENS["full"],
             app: ImageApp | None = None) -> tuple[str, str, str]:
    """The ``.rdp`` file of the running guest's own Remote Desktop for ``username`` (file name, content type, text):
    its forwarded address and port, the person's login, the screen, ``RDP_SETTINGS``; with ``app`` a RemoteApp file
    (``remoteapplicationmode``) that opens that program alone. PortalError 409 when the image serves no RDP (the
    browser console stays VNC) or the desktop does not run with its RDP forwarded yet; 400 for a value that would
    break a line of the file (never a validated record's)."""
    if not instance.image.rdp:
        raise PortalError(409, f"{instance.name} serves no Remote Desktop (RDP): its image's guests have VNC only; "
                               "use its console in the browser")
    endpoint = rdp_endpoint(instance)
    if endpoint is None:
        raise PortalError(409, f"{instance.name} is {instance.state_text.lower()}; its Remote Desktop file is here "
                               "once it runs")
    address = f"[{endpoint.host}]" if ":" in endpoint.host else endpoint.host
    lines = [f"full address:s:{address}:{endpoint.port}", f"server port:i:{endpoint.port}",
             f"username:s:{_rdp_value(username, 'username')}"]
    if app is None:
        lines.append(f"screen mode id:i:{2 if screen.full else 1}")
        if not screen.full:
            lines += [f"desktopwidth:i:{screen.width}", f"desktopheight:i:{screen.height}"]
        name = instance.instance_id
    else:
        lines += ["remoteapplicationmode:i:1", f"remoteapplicationprogram:s:{_rdp_value(app.program, 'program')}",
                  f"remoteapplicationname:s:{_rdp_value(app.name, 'name')}", "remoteapplicationcmdline:s:",
                  "disableremoteappcapscheck:i:1", "alternate shell:s:rdpinit.exe"]
        name = f"{instance.instance_id}-{re.sub(r'[^A-Za-z0-9_-]+', '-', app.name).strip('-') or 'app'}"
    text = "".join(f"{line}\r\n" for line in (*lines, *RDP_SETTINGS))
    return f"{name}.rdp", "application/x-rdp", text


def _rdp_value(value: str, field: str) -> str:
    if _LINE_BREAKS.search(value):
        raise PortalError(400, f"{field}: may not contain control characters or line breaks")
    return value


def console_password(actor: authz.Actor, instance: Instance) -> str:
    """The password of the instance's current run for a person who may execute it (to type into a VNC client),
    else "" (and for an RDP console, which VirtualBox's VRDE authenticates itself)."""
    if not authz.may(actor, "execute", instance):
        return ""
    # Shown from the run request on, before the console answers: the scheme of the placed console decides.
    return _run_password(instance, urlsplit(instance.console_url).scheme.lower() or "vnc")


def console_details(instance: Instance) -> dict[str, str]:
    """How a native client reaches the running instance's console: its URL, protocol and the password of this run
    ("" when it asks for none), for a caller the rule allowed to execute it. PortalError 409 unless it runs with a
    console."""
    endpoint = console_endpoint(instance)
    if endpoint is None:
        raise PortalError(409, f"{instance.name} is {State(instance.state).label.lower()}; its console answers "
                               "while it runs")
    return {"url": instance.console_url, "protocol": endpoint.scheme, "password": endpoint.password}


def issue_console_token(actor: authz.Actor, instance: Instance, *, watch: bool = False) -> str:
    """A one-time token for the in-browser console of a running VNC desktop: signed with the host's SECRET_KEY,
    it binds the person, the desktop, its run, whether it only watches, and a random nonce, and is good for
    ``CONSOLE_TOKEN_SECONDS``. ``authz.Denied`` unless the person may execute the desktop (watch: may change it, as
    its teacher); PortalError 409 unless it runs with a VNC console."""
    authz.require(actor, _console_action(watch), instance)
    endpoint = console_endpoint(instance)
    if endpoint is None or endpoint.scheme != "vnc":
        what = "an RDP console: use the .rdp file" if endpoint else f"{State(instance.state).label.lower()}"
        raise PortalError(409, f"{instance.name} has no in-browser console now: it is {what}")
    payload = {"u": actor.user_id, "i": instance.instance_id, "r": instance.runs, "w": int(watch),
               "n": secrets.token_urlsafe(16)}
    return signing.TimestampSigner(salt=TOKEN_SALT).sign_object(payload)


def _console_action(watch: bool) -> str:
    """Using a desktop's console is executing it; watching it only is for who may change it (its teacher)."""
    return "write" if watch else "execute"


def redeem_console_token(token: str) -> ConsoleSession:
    """Admit a console session (the proxy calls this once per websocket): the token's signature and age, that it
    was never used before, and then the rule again for its person now (an account changed or a desktop given to
    someone else since the token was issued is refused), and that the same run of the desktop is running with a
    VNC console. Marks the desktop active. ConsoleRefused says why."""
    try:
        payload = signing.TimestampSigner(salt=TOKEN_SALT).unsign_object(token, max_age=CONSOLE_TOKEN_SECONDS)
    except signing.SignatureExpired:
        raise ConsoleRefused("the console token has expired; open the console again") from None
    except signing.BadSignature:
        raise ConsoleRefused("not a console token of this cloud") from None
    if not isinstance(payload, dict) or not {"u", "i", "r", "n"} <= payload.keys():
        raise ConsoleRefused("not a console token of this cloud")
    # add() is atomic in the cache and keeps the mark longer than the token lives, so a copy is refused.
    if not cache.add(USED_TOKEN_KEY.format(nonce=payload["n"]), True, timeout=CONSOLE_TOKEN_SECONDS + 30):
        raise ConsoleRefused("the console token was used already; open the console again")
    user = get_user_model().objects.filter(pk=payload["u"], is_active=True).first()
    instance = Instance.objects.select_related("owner_group").filter(instance_id=payload["i"]).first()
    session = _admitted(user, instance, payload["r"], watch=bool(payload.get("w")))
    if not session.watch:
        touch_activity(session.instance_id)
    logger.info("portal: console of %s opened by %s%s", session.instance_id, session.username,
                " to watch" if session.watch else "")
    return session


def keep_console_session(session: ConsoleSession) -> None:
    """While a session is open (the proxy calls this every ``ACTIVITY_SECONDS``): the rule still allows it and the
    same run is still running, then the desktop is marked active. ConsoleRefused when the session must end."""
    user = get_user_model().objects.filter(pk=session.user_id, is_active=True).first()
    instance = Instance.objects.select_related("owner_group").filter(instance_id=session.instance_id).first()
    _admitted(user, instance, session.runs, watch=session.watch)
    if not session.watch:
        touch_activity(session.instance_id)


def _admitted(user, instance: Instance | None, runs: int, *, watch: bool = False) -> ConsoleSession:
    if user is None or instance is None or not authz.may(authz.actor_for(user), _console_action(watch), instance):
        raise ConsoleRefused("you may not use this desktop's console")
    endpoint = console_endpoint(instance)
    if endpoint is None or endpoint.scheme != "vnc" or instance.runs != runs:
        raise ConsoleRefused(f"{instance.name} is not running (any more); start it and open the console again")
    return ConsoleSession(user_id=user.pk, username=user.get_username(), instance_id=instance.instance_id,
                          runs=runs, endpoint=endpoint, watch=watch)


def touch_activity(instance_id: str) -> None:
    """Mark the desktop as in use now (its idle clock starts again)."""
    Instance.objects.filter(instance_id=instance_id).update(last_activity=timezone.now())


def stop_idle_desktops(idle_minutes: float, now: datetime | None = None) -> list[str]:
    """Stop the running remote desktops unused for ``idle_minutes`` (0: never): no console session through the
    proxy and no start for that long. A running desktop with no activity yet (started outside the portal) has its
    clock started now instead. A stop that is refused is logged and the others go on. Returns the ids stopped."""
    if idle_minutes <= 0:
        return []
    now = now or timezone.now()
    # A pool's free desktops are kept ready for people still to come: not idle (their pool stops its extras).
    running = Instance.objects.filter(kind=InstanceKindChoices.RVD, state=State.RUNNING, build_tid="").exclude(
        pool__isnull=False, assigned_to__isnull=True)
    running.filter(last_activity__isnull=True).update(last_activity=now)
    cutoff = now - timedelta(minutes=idle_minutes)
    stopped = []
    for instance in running.filter(last_activity__lt=cutoff).select_related("image"):
        if not running.filter(pk=instance.pk, last_activity__lt=cutoff).exists():
            continue  # a console session opened meanwhile
        idle = now - instance.last_activity
        try:
            stop_instance(instance)
        except InstanceError as exc:
            logger.warning("portal: idle desktop %s (%s) not stopped: %s", instance.instance_id, instance.name, exc)
            continue
        logger.info("portal: stopped %s (%s): no console session for %d minutes (idle limit %g minutes)",
                    instance.instance_id, instance.name, idle.total_seconds() // 60, idle_minutes)
        stopped.append(instance.instance_id)
    return stopped


def novnc_file(path: str) -> Path | None:
    """The noVNC module file at ``path`` (under ``core/`` or ``vendor/`` of the installed package), or None: no
    package, another part of it, a path that leaves it, or one no noVNC file could have."""
    if not _NOVNC_PATH_RE.fullmatch(path) or not novnc_installed():
        return None
    candidate = NOVNC_DIR / path
    try:
        return candidate if candidate.is_file() else None
    except OSError:  # e.g. a loop of links: still no such file, never a 500
        return None


def novnc_installed() -> bool:
    """True when Debian's novnc package (noVNC's ES modules) is on this host."""
    return (NOVNC_DIR / "core" / "rfb.js").is_file()
