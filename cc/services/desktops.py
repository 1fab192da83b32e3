"""The local desktops of this cluster's classroom PCs: asked of the CLC for one PC and passed on to its node
controller (the PC reaches only its CC)."""

from __future__ import annotations

import logging

from django.conf import settings
from django.core.cache import cache

from cc.services.nodes import WrongCluster
from luhyaapi.client import RemoteError, RoleClient
from luhyaapi.trust import own_key
from luhyaapi.validators import validate_mac

logger = logging.getLogger(__name__)

PC_IMAGES_SECONDS = 60.0


class DesktopsUnavailable(Exception):
    """The CLC could not say which desktops a PC offers; ``status`` is the HTTP status to answer the PC with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def host_desktops(mac: str) -> dict:
    """The PC of ``mac`` and the local desktops its kiosk offers, as the CLC answers ``hosts/<mac>/desktops/``
    (``{"host": {...}, "desktops": [...]}``). Raises ``InvalidValue`` (``mac``) for a malformed MAC before anything
    is asked; ``WrongCluster`` if the CLC has the PC in another cluster than this controller's;
    ``DesktopsUnavailable`` 404 if the CLC does not know the PC (it has not registered), 502 if the CLC cannot be
    reached or refuses."""
    mac = validate_mac(mac, "mac")
    config = settings.EDUCLOUD
    client = RoleClient(config.clc_url, own_key())
    try:
        answer = client.get(f"/clc/api/1.0/hosts/{mac}/desktops/")
    except RemoteError as exc:
        if exc.status == 404:
            raise DesktopsUnavailable(404, f"the cloud controller does not know the PC {mac}; it is added when its "
                                           "node controller registers it") from exc
        if exc.status == 403:  # the CLC answers a CC for its own cluster's PCs only
            raise WrongCluster(f"the PC {mac} is not of this cluster controller's cluster ({exc.detail})") from exc
        logger.warning("desktops: the CLC did not list the desktops of %s: %s", mac, exc)
        raise DesktopsUnavailable(502, f"the cloud controller did not list the desktops: {exc.detail}") from exc
    cluster = answer.get("host", {}).get("cluster")
    if cluster != config.cluster:
        raise WrongCluster(f"the PC {mac} belongs to cluster {cluster!r}; this cluster controller serves "
                           f"{config.cluster!r}")
    return answer


def pc_may_fetch(mac: str, image_id: str) -> bool:
    """Whether the PC of ``mac`` may download ``image_id``: the image of a desktop its kiosk offers (the CLC's list,
    kept for ``PC_IMAGES_SECONDS`` so a download's many ranged requests ask it once)."""
    key = f"cc:pc-images:{mac}"
    images = cache.get(key)
    if images is None or image_id not in images:
        try:
            images = {desktop["image"]["image_id"] for desktop in host_desktops(mac)["desktops"]}
        except (DesktopsUnavailable, WrongCluster) as exc:
            logger.warning("desktops: cannot tell whether %s may fetch %s: %s", mac, image_id, exc)
            return False
        cache.set(key, images, PC_IMAGES_SECONDS)
    return image_id in images
