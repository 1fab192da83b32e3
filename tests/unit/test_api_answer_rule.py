"""The rule the API fuzz test holds every answer to (``tests.apifuzz.answer_problem``): it must catch what it is
there to catch, or the fuzz test passes on a broken API."""

from __future__ import annotations

import pytest

from tests.apifuzz import answer_problem

JSON = "application/json"


@pytest.mark.parametrize("status, body, content_type", [
    (200, b"[]", JSON), (201, b"<html>", "text/html"), (204, b"", ""), (400, b'{"name": ["too long"]}', JSON),
    (404, b'{"detail": "no such image"}', JSON), (409, b'{"detail": "in use", "reasons": {}}', JSON),
    (502, b'{"detail": "walrus cannot be reached"}', JSON), (507, b'{"detail": "disk full", "offset": 3}', JSON)])
def test_answers_that_keep_the_rule(status, body, content_type):
    assert answer_problem(status, body, content_type) == ""


@pytest.mark.parametrize("status, body, content_type, problem", [
    (500, b'{"detail": "oops"}', JSON, "a server error"),
    (500, b"<html>Server error</html>", "text/html", "a server error"),
    (504, b'{"detail": "late"}', JSON, "a server error"),
    (502, b"<html>bad gateway</html>", "text/html", "not JSON"),
    (503, b'{"reason": ["x"]}', JSON, "without a detail"),
    (404, b"<html>Not found</html>", "text/html", "not JSON"),
    (400, b'["Null characters are not allowed."]', JSON, "not a JSON object"),
    (400, b"{}", JSON, "not a JSON object"),
    (400, b'{"name": "too long"}', JSON, "without a detail and without messages"),
    (400, b'{"name": []}', JSON, "without a detail and without messages"),
    (403, b'{"detail": ""}', JSON, "without a detail"),
    (400, b"{not json", JSON, "not JSON")])
def test_answers_that_break_it(status, body, content_type, problem):
    assert problem in answer_problem(status, body, content_type)
