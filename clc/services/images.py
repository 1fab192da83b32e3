"""Images on the CLC: their records and properties, and their file versions kept by walrus."""

from __future__ import annotations

import logging
import time

from django.db import transaction
from django.db.models import Q

from clc.services import authz
from clc.services.commands import CommandError, send_node_command
from luhyaapi.client import RemoteError, RoleClient
from luhyaapi.ids import TaskId, new_id
from luhyaapi.signing import make_upload_token
from luhyaapi.trust import own_key
from luhyadb.choices import LivenessChoices, RoleChoices
from luhyadb.models import DesktopPool, Image, ImageApp, ImageVersion, Instance, Server, TaskTransaction

logger = logging.getLogger(__name__)

# How many apps an image may publish (the portal lists them all).
MAX_IMAGE_APPS = 50
# How many of the records that keep an image from being deleted a refusal names.
SHOWN_USERS = 10

UPLOAD_TOKEN_SECONDS = 24 * 3600

# The reason of a 507 when walrus gave none (walrus's own code for it).
STORE_FULL = "disk-full"


class ImageError(Exception):
    """An image operation was refused; ``status`` is the HTTP status that says why, ``reason`` (if any) a stable code
    for programs."""

    def __init__(self, status: int, message: str, reason: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason


def walrus_client() -> RoleClient:
    """A signed client for the cloud's walrus (the most recently seen online one)."""
    walrus = (Server.objects.filter(role=RoleChoices.WALRUS, state=LivenessChoices.ONLINE).exclude(api_url="")
              .order_by("-last_seen").first())
    if walrus is None:
        raise ImageError(503, "no walrus (image store) is online; check the system status page")
    return RoleClient(walrus.api_url, own_key(), timeout=60)


def _walrus_call(method: str, path: str, payload: dict | None = None) -> dict:
    """Walrus's answer; its refusals raise ImageError with their status: 4xx as they are, 507 (the store's disk is
    full: the client must free room or wait, not retry) as 507 with walrus's ``reason``, any other failure 502."""
    try:
        return walrus_client().request(method, path, payload)
    except RemoteError as exc:
        message = f"walrus refused {method} {path}: {exc.detail}"
        if exc.status == 507:
            raise ImageError(507, message, reason=(exc.body or {}).get("reason") or STORE_FULL) from exc
        raise ImageError(exc.status if 400 <= exc.status < 500 else 502, message) from exc


def create_image(*, apps: list[dict] | None = None, **properties) -> Image:
    """Record a new image (no file yet: upload one with ``start_upload`` / ``finish_upload``) with its published
    ``apps`` (name, program, icon; validated by the caller)."""
    with transaction.atomic():
        image = Image.objects.create(image_id=new_id("image"), **properties)
        set_apps(image, apps or [])
    return image


def set_apps(image: Image, apps: list[dict]) -> None:
    """Make the image's published apps (``ImageApp``) exactly ``apps`` (each a validated name, program and icon): the
    portal offers them from then on."""
    with transaction.atomic():
        image.apps.all().delete()
        ImageApp.objects.bulk_create(ImageApp(image=image, name=app["name"], program=app["program"],
                                              icon=app.get("icon", "")) for app in apps)
    logger.info("images: %s publishes %d apps", image.image_id, len(apps))


def users_of(image: Image, actor: authz.Actor) -> list[str]:
    """What keeps an image from being deleted: its instances, desktop pools and unfinished tasks, by id where
    ``actor`` may read them, else only counted (an image shared across schools must not name one school's desktops to
    another)."""
    instances = Instance.objects.filter(image=image)
    pools = DesktopPool.objects.filter(image=image)
    tasks = TaskTransaction.objects.filter(Q(src_image_id=image.image_id) | Q(dst_image_id=image.image_id),
                                           done=False, failed=False)
    users = [f"instance {instance_id}" for instance_id in
             authz.readable(actor, instances).values_list("instance_id", flat=True)[:SHOWN_USERS]]
    users += [f"desktop pool {pool_id}" for pool_id in
              authz.readable(actor, pools).values_list("pool_id", flat=True)[:SHOWN_USERS]]
    users += [f"task {tid}" for tid in authz.readable(actor, tasks).values_list("tid", flat=True)[:SHOWN_USERS]]
    unnamed = instances.count() + pools.count() + tasks.count() - len(users)
    if unnamed > 0:
        users.append(f"{unnamed} more you may not see" if users else
                     f"{unnamed} instances, desktop pools or tasks you may not see")
    return users


def delete_image(image: Image, actor: authz.Actor) -> None:
    """Delete an image and all its files; refused (409) while an instance or an unfinished task uses it (the message
    names those ``actor`` may read)."""
    users = users_of(image, actor)
    if users:
        raise ImageError(409, f"image {image.image_id} is in use by {', '.join(users)}")
    if image.current_version:
        try:
            walrus_client().request("DELETE", f"/walrus/api/1.0/images/{image.image_id}/")
        except RemoteError as exc:
            if exc.status != 404:
                raise ImageError(502, f"walrus could not delete the files of {image.image_id}: {exc.detail}") from exc
    image.delete()
    logger.info("images: %s deleted", image.image_id)


def start_upload(image: Image, size: int, sha256: str = "") -> dict:
    """Open an upload of a new file version in walrus; returns its id and a pre-signed data URL for a browser."""
    payload = {"image_id": image.image_id, "size": size}
    if sha256:
        payload["sha256"] = sha256
    upload = _walrus_call("POST", "/walrus/api/1.0/uploads/", payload)
    expires = int(time.time()) + UPLOAD_TOKEN_SECONDS
    token = make_upload_token(own_key(), upload["upload_id"], expires)
    upload["data_url"] = (f"/walrus/api/1.0/uploads/{upload['upload_id']}/data"
                          f"?token={token}&expires={expires}")
    upload["walrus_url"] = walrus_client().base_url
    return upload


def next_label(label: str) -> str:
    """The notes' version text after a new submit: ``1.0.3`` -> ``1.0.4``."""
    parts = label.split(".")
    if not parts[-1].isdigit():
        return label + ".1"
    return ".".join(parts[:-1] + [str(int(parts[-1]) + 1)])


@transaction.atomic
def record_version(image: Image, stored: dict) -> ImageVersion:
    """Record a version walrus has stored (its answer to ``complete/``) and make it the image's current one, unless
    a newer one already is. Idempotent, keyed by walrus's version number (walrus never reuses one): a version already
    recorded (a repeated ``complete/``, a redelivered report) is returned as recorded and nothing changes, so the
    label is bumped once per stored file."""
    image = Image.objects.select_for_update().get(pk=image.pk)
    recorded = image.versions.filter(number=stored["version"]).first()
    if recorded is not None:
        recorded.image = image
        return recorded
    label = image.version if not image.versions.exists() else next_label(image.version)
    version = ImageVersion.objects.create(image=image, number=stored["version"], label=label,
                                          size_bytes=stored["size"], sha256=stored["sha256"], format=stored["format"])
    if version.number > image.current_version:
        image.current_version = version.number
        image.version = label
        image.size_bytes = version.size_bytes
        image.save(update_fields=["current_version", "version", "size_bytes"])
        logger.info("images: %s version %s (%s, %d bytes) is current", image.image_id, version.number, label,
                    version.size_bytes)
    return version


@transaction.atomic
def prepare_on_node(image: Image, node_name: str, number: int | None = None) -> TaskTransaction:
    """Start pulling an image version (default: the current one) into a node's cache: walrus -> CC -> NC. The task
    record is written first, and the command sent after the commit; progress then arrives as task status."""
    number = number or image.current_version
    version = image.versions.filter(number=number).first()
    if version is None:
        raise ImageError(409, f"image {image.image_id} has no version {number or '(no file uploaded yet)'}")
    tid = TaskId.new(image.image_id)
    task = TaskTransaction.objects.create(
        tid=str(tid), src_image_id=tid.src, dst_image_id=tid.dst, instance_id=tid.ins, phase="preparing",
        state="init", runtime_option={"node": node_name, "version": number})
    paras = {"image_id": image.image_id, "version": number, "sha256": version.sha256, "size": version.size_bytes}

    def send() -> None:
        try:
            send_node_command(node_name, "image/prepare", paras, tid=str(tid))
        except CommandError as exc:
            TaskTransaction.objects.filter(pk=task.pk).update(phase="failed", failed=True, message=str(exc))
            logger.warning("images: could not ask %s to prepare %s: %s", node_name, image.image_id, exc)

    transaction.on_commit(send)
    return task


def finish_upload(image: Image, upload_id: str) -> ImageVersion:
    """Complete a finished upload in walrus (it checks size and sha256) and record the new version."""
    stored = _walrus_call("POST", f"/walrus/api/1.0/uploads/{upload_id}/complete/", {})
    if stored.get("image_id") != image.image_id:
        raise ImageError(409, f"upload {upload_id} belongs to {stored.get('image_id')}, not {image.image_id}")
    version = record_version(image, stored)
    image.refresh_from_db()
    return version
