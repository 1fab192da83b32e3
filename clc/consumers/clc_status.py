"""Consumer of ``clc.status``: every status report of the cloud, folded into the cache and the database."""

from __future__ import annotations

from clc.services.status import StatusFolder
from luhyaapi.messages import Message
from luhyaapi.queues import CLC_STATUS


class ClcStatusConsumer:
    queue = CLC_STATUS

    def __init__(self, folder: StatusFolder) -> None:
        self.folder = folder

    def consume(self, messages: list[Message]) -> None:
        self.folder.fold(messages)
