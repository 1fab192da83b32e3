"""waitress's HTTP channel with one change: a request refused by its headers (a body over the limit) is answered at
once with a JSON 413, and a client that sent ``Expect: 100-continue`` is never told to send the body first."""

from __future__ import annotations

import json

from waitress.channel import HTTPChannel
from waitress.parser import HTTPRequestParser
from waitress.utilities import RequestEntityTooLarge

from walrus.constants import PUT_TOO_LARGE


class BodyTooLarge(RequestEntityTooLarge):
    """waitress's 413, said in JSON as every API error is, naming ``Content-Length`` when that was the cause."""

    def __init__(self, field: str) -> None:
        super().__init__(PUT_TOO_LARGE)
        self.field = field

    def to_response(self, ident=None):
        answer = {self.field: [self.body]} if self.field else {"detail": self.body}
        return (f"{self.code} {self.reason}", [("Content-Type", "application/json")],
                json.dumps(answer).encode())


class RefusingParser(HTTPRequestParser):
    """waitress's request parser; a request it has refused no longer expects ``100 Continue``. waitress's channel
    sends that to any request that expects it once its headers are in, and then goes on to read the body of the
    request it had already refused: up to the whole limit, for nothing, before it answers."""

    def received(self, data: bytes) -> int:
        consumed = super().received(data)
        if self.error is not None:
            self.expect_continue = False
            if type(self.error) is RequestEntityTooLarge:
                self.error = BodyTooLarge("" if self.chunked else "Content-Length")
        return consumed


class RefusingChannel(HTTPChannel):
    parser_class = RefusingParser
