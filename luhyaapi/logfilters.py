"""Filters of the host's log: a refused request (4xx) is one line with its reason, never a traceback."""

from __future__ import annotations

import logging


class RefusalsOnOneLine(logging.Filter):
    """Django logs some refusals with the exception's traceback: a ``PermissionDenied`` (403) at WARNING on
    ``django.request``, a request too large or with too many fields (400, ``SuspiciousOperation``) at ERROR on
    ``django.security.<name>``. A refusal is the cloud working as meant, and a prober's thousands of them must not
    bury the log, so such a record keeps one line, the exception's message added, at WARNING at most. Records of a
    5xx response, and records without a response, are left as they are: a real error keeps its traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        status = getattr(record, "status_code", None)
        if not isinstance(status, int) or status >= 500 or not record.exc_info:
            return True
        exception = record.exc_info[1]
        # Escaped like Django's own arguments, so that a message quoting the request cannot forge log lines.
        reason = str(exception).encode("unicode_escape").decode("ascii") if exception is not None else ""
        record.msg, record.args = f"{record.getMessage()} ({reason})" if reason else record.getMessage(), ()
        record.exc_info, record.exc_text = None, None
        if record.levelno > logging.WARNING:
            record.levelno, record.levelname = logging.WARNING, logging.getLevelName(logging.WARNING)
        return True
