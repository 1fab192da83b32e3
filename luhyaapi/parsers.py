"""The one JSON parser of the API: DRF's, refusing bodies nested deeper than any request of ours needs, with a 400
that says so (a deep enough body would otherwise exhaust the stack, in the parser or in the code after it)."""

from __future__ import annotations

from rest_framework import parsers
from rest_framework.exceptions import ParseError

MAX_JSON_DEPTH = 32


def json_depth(value: object) -> int:
    """How deeply ``value`` (parsed JSON) nests lists and objects: 0 for a scalar, 1 for ``[]`` or ``{}``. Without
    recursion, and it stops counting past ``MAX_JSON_DEPTH``."""
    deepest, level = 0, [(value, 1)]
    while level:
        item, depth = level.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else None
        if children is None:
            continue
        deepest = max(deepest, depth)
        if deepest > MAX_JSON_DEPTH:
            break
        level.extend((child, depth + 1) for child in children)
    return deepest


class JSONParser(parsers.JSONParser):
    """``application/json`` bodies at most ``MAX_JSON_DEPTH`` levels deep; deeper is a 400 naming the limit."""

    def parse(self, stream, media_type=None, parser_context=None):
        too_deep = ParseError(f"JSON parse error - the body nests lists and objects more than {MAX_JSON_DEPTH} "
                              f"levels deep")
        try:
            data = super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise too_deep from None
        if json_depth(data) > MAX_JSON_DEPTH:
            raise too_deep
        return data
