"""Consumer of ``cc.status.<cluster>``: the cluster's NC/SC reports, noted here and relayed to the CLC, and their
``metrics`` messages, relayed to the watch role's queue (``cc.services.nodes.NodeStatusRelay``)."""

from __future__ import annotations

from cc.services.nodes import NodeStatusRelay
from luhyaapi.messages import Message


class CcStatusConsumer:
    def __init__(self, relay: NodeStatusRelay) -> None:
        self.relay = relay

    def consume(self, messages: list[Message]) -> None:
        self.relay.relay(messages)
