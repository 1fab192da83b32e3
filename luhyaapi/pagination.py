"""The one pagination of every list in the API: ``?limit=`` and ``?offset=`` as whole numbers in range, or a 400
naming the parameter (never a silent default, and never a number the database cannot take)."""

from __future__ import annotations

from rest_framework import exceptions
from rest_framework.pagination import LimitOffsetPagination

MAX_LIMIT = 1000
MAX_OFFSET = 10**9  # far past any list of this cloud, far below what a database takes (2**63 - 1)
_MAX_DIGITS = 10  # the length is checked before int(): a very long digit string is slow to convert


def whole_number(value: str | None, name: str, low: int, high: int, default: int | None) -> int | None:
    """``value`` of query parameter ``name`` as an int from ``low`` to ``high``; ``default`` when it is absent.
    Raises ValidationError (400, naming ``name``) for anything else, an empty value too."""
    if value is None:
        return default
    if not (value.isascii() and value.isdigit() and len(value) <= _MAX_DIGITS and low <= int(value) <= high):
        raise exceptions.ValidationError({name: [f"must be a whole number from {low} to {high}"]})
    return int(value)


class BoundedLimitOffsetPagination(LimitOffsetPagination):
    """DRF's limit/offset pagination (``PAGE_SIZE`` by default, ``count``/``next``/``previous``/``results``) with
    ``limit`` 1 to ``MAX_LIMIT`` and ``offset`` 0 to ``MAX_OFFSET``; anything else is a 400 naming it."""

    max_limit = MAX_LIMIT

    def get_limit(self, request) -> int | None:
        return whole_number(request.query_params.get(self.limit_query_param), self.limit_query_param, 1,
                            self.max_limit, self.default_limit)

    def get_offset(self, request) -> int:
        return whole_number(request.query_params.get(self.offset_query_param), self.offset_query_param, 0,
                            MAX_OFFSET, 0)

    def get_schema_operation_parameters(self, view) -> list[dict]:
        bounds = {self.limit_query_param: (1, self.max_limit), self.offset_query_param: (0, MAX_OFFSET)}
        parameters = super().get_schema_operation_parameters(view)
        for parameter in parameters:
            low, high = bounds[parameter["name"]]
            parameter["schema"] |= {"minimum": low, "maximum": high}
        return parameters
