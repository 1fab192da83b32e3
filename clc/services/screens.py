"""Thumbnails of desktops' screens for the teacher's class console, taken through the console path: the CLC logs in
to a running desktop's VNC console with its run's password (``clc.services.rfb``), as a *shared* client (the student's
own session goes on), asks for one full framebuffer update in raw 32-bit pixels, and scales it down to a PNG. A
thumbnail is kept in the cache for ``THUMBNAIL_SECONDS``, so thirty teachers' pages refreshing at once cost each
desktop one snapshot every few seconds, not one per page.
"""

from __future__ import annotations

import asyncio
import io
import logging
import struct

from django.core.cache import cache
from PIL import Image as Picture

from clc.services import rfb
from clc.services.portal import ConsoleEndpoint, console_endpoint
from luhyadb.models import Instance

logger = logging.getLogger(__name__)

THUMBNAIL_SECONDS = 5
THUMBNAIL_WIDTH = 320
SNAPSHOT_TIMEOUT = 10.0
CACHE_KEY = "class:screen:{insid}:{runs}"
# A screen larger than this is no desktop's (16384 x 16384 at 4 bytes a pixel would be a gigabyte).
MAX_SIDE = 8192
# RFB messages (RFC 6143, section 7): the client's, and the server's the snapshot reads past.
SET_PIXEL_FORMAT, SET_ENCODINGS, FRAMEBUFFER_UPDATE_REQUEST = 0, 2, 3
FRAMEBUFFER_UPDATE, SET_COLOUR_MAP_ENTRIES, BELL, SERVER_CUT_TEXT = 0, 1, 2, 3
RAW = 0
# 32 bits a pixel, depth 24, little-endian true colour with red at bit 16: each pixel's bytes are blue, green, red, x.
PIXEL_FORMAT = struct.pack(">BBBBHHHBBB3x", 32, 24, 0, 1, 255, 255, 255, 16, 8, 0)


class ScreenUnavailable(Exception):
    """No thumbnail: the desktop has no VNC console now, or its console did not give a picture; says why."""


def thumbnail(instance: Instance) -> bytes:
    """A PNG of the running desktop's screen, at most ``THUMBNAIL_SECONDS`` old. ScreenUnavailable says why not."""
    endpoint = console_endpoint(instance)
    if endpoint is None or endpoint.scheme != "vnc":
        raise ScreenUnavailable(f"{instance.name} has no VNC console now ({instance.state})")
    key = CACHE_KEY.format(insid=instance.instance_id, runs=instance.runs)
    png = cache.get(key)
    if png is None:
        try:
            png = asyncio.run(asyncio.wait_for(_snapshot(endpoint), SNAPSHOT_TIMEOUT))
        except (OSError, TimeoutError, asyncio.IncompleteReadError, rfb.HandshakeError, ValueError) as exc:
            logger.info("screens: no snapshot of %s: %s", instance.instance_id, exc or type(exc).__name__)
            raise ScreenUnavailable(f"the console of {instance.name} gave no picture: {exc or 'no answer'}") from exc
        cache.set(key, png, THUMBNAIL_SECONDS)
    return png


async def _snapshot(endpoint: ConsoleEndpoint) -> bytes:
    reader, writer = await asyncio.open_connection(endpoint.host, endpoint.port)
    try:
        async def send(data: bytes) -> None:
            writer.write(data)
            await writer.drain()

        await rfb.log_in(reader.readexactly, send, endpoint.password)
        await send(b"\x01")  # ClientInit: shared, so the student's session stays open
        width, height = struct.unpack(">HH", await reader.readexactly(4))
        await reader.readexactly(16)  # the server's pixel format: replaced by ours below
        (name_length,) = struct.unpack(">I", await reader.readexactly(4))
        await reader.readexactly(name_length)
        if not (0 < width <= MAX_SIDE and 0 < height <= MAX_SIDE):
            raise ValueError(f"a screen of {width} x {height} pixels")
        await send(struct.pack(">B3x", SET_PIXEL_FORMAT) + PIXEL_FORMAT)
        await send(struct.pack(">BxHi", SET_ENCODINGS, 1, RAW))
        await send(struct.pack(">BBHHHH", FRAMEBUFFER_UPDATE_REQUEST, 0, 0, 0, width, height))
        screen = await _framebuffer(reader, width, height)
    finally:
        writer.close()
    screen = screen.resize((THUMBNAIL_WIDTH, max(1, THUMBNAIL_WIDTH * height // width)), reducing_gap=2.0)
    out = io.BytesIO()
    screen.save(out, format="PNG", optimize=True)
    return out.getvalue()


async def _framebuffer(reader: asyncio.StreamReader, width: int, height: int) -> Picture.Image:
    """Read server messages until a framebuffer update, and paint its raw rectangles on a black screen."""
    screen = Picture.new("RGB", (width, height))
    while True:
        (kind,) = await reader.readexactly(1)
        if kind == FRAMEBUFFER_UPDATE:
            break
        if kind == BELL:
            continue
        if kind == SET_COLOUR_MAP_ENTRIES:
            _, _, count = struct.unpack(">BHH", await reader.readexactly(5))
            await reader.readexactly(6 * count)
        elif kind == SERVER_CUT_TEXT:
            (length,) = struct.unpack(">3xI", await reader.readexactly(7))
            await reader.readexactly(length)
        else:
            raise ValueError(f"the console sent message type {kind} before the picture")
    (rectangles,) = struct.unpack(">xH", await reader.readexactly(3))
    for _ in range(rectangles):
        x, y, w, h, encoding = struct.unpack(">HHHHi", await reader.readexactly(12))
        if encoding != RAW:
            raise ValueError(f"the console answered in encoding {encoding}, not raw")
        if x + w > width or y + h > height:
            raise ValueError(f"a rectangle outside the screen ({x},{y} {w} x {h})")
        pixels = await reader.readexactly(w * h * 4)
        if w and h:
            screen.paste(Picture.frombuffer("RGB", (w, h), pixels, "raw", "BGRX", 0, 1), (x, y))
    return screen
