"""Thumbnails of a real QEMU guest's screen through its VNC console (``clc.services.screens``): the CLC logs in with
the run's password as a shared client, and what it gets is the guest's screen scaled down to a PNG, kept for a few
seconds; a console that refuses the password or does not answer is a reason, not an error."""

from __future__ import annotations

import io
import time

import pytest
from django.core.cache import cache
from PIL import Image as Picture

from clc.services import screens
from luhyadb.models import Image, Instance, OwnerGroup, VMType
from tests.integration.conftest import VM_PASSWORD
from tests.services import ARTIFACTS, free_port_block

pytestmark = [pytest.mark.database, pytest.mark.guest, pytest.mark.django_db]


def running(port: int, password: str = VM_PASSWORD) -> Instance:
    group = OwnerGroup.objects.create(name="class", path="edu.c1")
    image = Image.objects.create(image_id="img-0000abcd", name="desktop", owner_group=group, current_version=1)
    return Instance.objects.create(instance_id="ins-00000001", name="Desk 1", kind="rvd", image=image,
                                   vm_type=VMType.objects.create(name="tiny", cpus=1, memory_mb=256, disk_gb=1),
                                   owner_group=group, state="running", runs=1, mac="52:54:00:00:00:01",
                                   console_url=f"vnc://127.0.0.1:{port}", console_password=password)


@pytest.fixture(autouse=True)
def _fresh_cache():
    cache.clear()
    yield
    cache.clear()


def test_the_thumbnail_is_the_guests_screen_scaled_down_and_follows_it(qemu_vm):
    instance = running(qemu_vm)
    first = screens.thumbnail(instance)
    # QEMU shows a placeholder until the guest's firmware draws its own screen: the thumbnail must follow.
    deadline = time.monotonic() + 60
    while (png := screens.thumbnail(instance)) == first and time.monotonic() < deadline:
        cache.clear()
        time.sleep(0.5)
    picture = Picture.open(io.BytesIO(png))
    assert png != first, "the thumbnail never changed while the guest booted"
    assert picture.format == "PNG"
    assert picture.width == screens.THUMBNAIL_WIDTH and 0 < picture.height <= picture.width
    assert picture.convert("L").getextrema()[1] > 0, "the guest's screen is black"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    picture.save(ARTIFACTS / "class-console-thumbnail.png")
    # Kept for a few seconds, so that many pages refreshing cost the console one snapshot.
    assert cache.get(screens.CACHE_KEY.format(insid=instance.instance_id, runs=instance.runs)) == png


def test_a_console_refusing_the_password_gives_a_reason_not_a_picture(qemu_vm):
    with pytest.raises(screens.ScreenUnavailable, match="gave no picture: the console refused the password"):
        screens.thumbnail(running(qemu_vm, password="wrong123"))


def test_a_console_nobody_answers_on_gives_a_reason(settings):
    port, _ = free_port_block(1, low=6000, high=6999)
    with pytest.raises(screens.ScreenUnavailable, match="gave no picture"):
        screens.thumbnail(running(port))


def test_a_desktop_that_does_not_run_has_no_screen():
    instance = running(5901)
    instance.state = "stopped"
    with pytest.raises(screens.ScreenUnavailable, match="has no VNC console now"):
        screens.thumbnail(instance)
