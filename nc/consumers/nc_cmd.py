"""Consumer of ``cmd.<node>``: the commands for this node, run one by one in order."""

from __future__ import annotations

from luhyaapi.messages import Command, Message
from luhyaapi.wording import with_article
from nc.services.commands import StatusReporter, UnknownCommand, execute_command


class NcCommandConsumer:
    def __init__(self, reporter: StatusReporter) -> None:
        self.reporter = reporter

    def consume(self, messages: list[Message]) -> None:
        for message in messages:
            if not isinstance(message, Command):
                raise UnknownCommand(f"{with_article(message.type)} message is not a command")
            execute_command(message, self.reporter)
