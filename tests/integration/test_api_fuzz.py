"""Fuzzing of the CLC, walrus and CC APIs from their own OpenAPI documents (schemathesis), in-process through the
WSGI app, as a student, as a super administrator and signed as a node, over a small seeded world: no answer may be
a server error (a 500, or a 5xx other than the designed "another role or the disk cannot do it now" answers with a
detail: ``tests.apifuzz.DESIGNED_5XX``), every refusal is JSON naming the field, and every answer is as the document
describes it (a status it lists, its media type, a body its schema validates). The counts go to
``tests/artifacts/schemathesis.json`` and a summary line to the terminal.

Each caller tries each operation with a few valid requests first: an operation that refuses it every time (401 or
403: its view's permission turns the caller away before reading the input) is fuzzed no further as that caller;
the others get ``EDUCLOUD_FUZZ_EXAMPLES`` examples per operation and mode (default 15; a deeper run: 100), and
``EDUCLOUD_FUZZ_ONLY`` keeps the operations whose label contains it (``POST /cc/api/1.0/instances/``)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import hypothesis
import pytest
import schemathesis
from django.contrib.auth import get_user_model
from django.core.wsgi import get_wsgi_application
from django.db import connection
from drf_spectacular.generators import SchemaGenerator
from hypothesis import HealthCheck, Phase
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from luhyaapi.openapi import role_patterns
from luhyaapi.trust import own_key
from tests.apifuzz import (
    DESIGNED_5XX,
    NODE_NAME,
    SUMMARY,
    Caller,
    LoopbackOnly,
    Tally,
    World,
    seed_world,
    session_for,
)
from tests.keys import enrolled_key

pytestmark = [pytest.mark.database, pytest.mark.django_db(transaction=True)]

ROLES = ("clc", "walrus", "cc", "watch")
EXAMPLES = int(os.environ.get("EDUCLOUD_FUZZ_EXAMPLES", "15"))
# Valid requests tried first as each caller: all refused (401/403) means the view turns the caller away.
PROBE_EXAMPLES = 3
ONLY = os.environ.get("EDUCLOUD_FUZZ_ONLY", "")
ARTIFACT = Path(__file__).resolve().parents[1] / "artifacts" / "schemathesis.json"
RESULTS: dict[str, dict] = {}
# Operations with no invalid request to make (an id in the path is any string, and a string cannot be spoiled):
# Hypothesis needs a second to give up on each, so it does that once, not once per caller.
NOTHING_TO_SPOIL: set[str] = set()


def role_document(role: str) -> dict:
    """The role's OpenAPI document, as ``/<role>/api/1.0/schema/`` serves it."""
    return SchemaGenerator(patterns=role_patterns(role)).get_schema(request=None, public=True)


def loaded(role: str, world: World):
    """The role's document as schemathesis generates requests from it, reaching the world's records half the time."""
    schema = schemathesis.openapi.from_dict(role_document(role), config=schemathesis.Config.from_dict({
        "generation": {"with-security-parameters": False}}))

    @schema.hook
    def flatmap_path_parameters(context, parameters):
        """Half the time a path parameter names a record of the world, so the fuzzer gets past the 404s."""
        names = [name for name in (parameters or {}) if name in world.known]
        if not names:
            return st.just(parameters)
        real = st.fixed_dictionaries({name: st.one_of(st.none(), st.sampled_from(world.known[name]))
                                      for name in names})
        return real.map(lambda chosen: parameters | {name: value for name, value in chosen.items() if value})

    return schema


def operations(schema) -> list:
    """Every operation, deletions last so that the records stay reachable as long as possible."""
    found = [result.ok() for result in schema.get_all_operations() if ONLY in result.ok().label]
    return sorted(found, key=lambda operation: operation.method.upper() == "DELETE")


# What the document promises about each answer: a status it lists, its media type, a body its schema describes.
CONFORMANCE = [status_code_conformance, content_type_conformance, response_schema_conformance]


def conformance_problems(case, response) -> list[str]:
    """How an answer differs from what the document says of it."""
    try:
        case.validate_response(response, checks=CONFORMANCE)
    except schemathesis.errors.FailureGroup as group:
        return [failure.title for failure in group.exceptions]
    except AssertionError as failure:
        return [getattr(failure, "title", str(failure))]
    return []


def fuzz(operation, app, tally: Tally) -> int:
    """Run the operation's generated cases (valid and invalid data) through ``app``, each answer checked against the
    document; the number of cases sent. ``PROBE_EXAMPLES`` valid requests come first: when every one is refused as
    unauthenticated or forbidden, the view's permission turns this caller away before it reads any input, so the
    rest would only be the same refusal again (the callers it lets in get every case)."""
    sent = 0
    for mode, examples in ((GenerationMode.POSITIVE, PROBE_EXAMPLES), (GenerationMode.POSITIVE, EXAMPLES),
                           (GenerationMode.NEGATIVE, EXAMPLES)):
        if mode is GenerationMode.NEGATIVE and operation.label in NOTHING_TO_SPOIL:
            continue
        if examples == EXAMPLES and sent and set(tally.by_operation.get(operation.label, {})) <= {401, 403}:
            tally.turned_away += 1
            break

        @hypothesis.settings(max_examples=examples, deadline=None, database=None, derandomize=True,
                             phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
        @hypothesis.given(case=operation.as_strategy(generation_mode=mode))
        def send(case):
            nonlocal sent
            sent += 1
            response = case.call(app=app)
            for problem in conformance_problems(case, response):
                tally.add_problem(f"{operation.label} -> {response.status_code}: not as documented: {problem}\n"
                                  f"    answer: {response.content[:300]!r}")

        try:
            send()
        except hypothesis.errors.Unsatisfiable:
            assert mode is GenerationMode.NEGATIVE, f"no valid request for {operation.label}"
            NOTHING_TO_SPOIL.add(operation.label)
    return sent


@pytest.fixture
def world(live_server, cloud_at, tmp_path, monkeypatch) -> World:
    """The seeded world; the CLC's calls to its CC and walrus reach this same app through a live server."""
    cloud_at(live_server.url, data_dir=tmp_path / "data")
    LoopbackOnly(monkeypatch)
    return seed_world(live_server.url)


@pytest.fixture(scope="module", autouse=True)
def written_counts(request):
    """After the module: the counts of every run to the artifact, and one summary line for the end of the run
    (printed by ``tests/integration/conftest.py``)."""
    yield
    if not RESULTS:
        return
    total = {"operations": sum(r["operations"] for r in RESULTS.values()),
             "cases": sum(r["cases"] for r in RESULTS.values()),
             "requests": sum(r["requests"] for r in RESULTS.values()),
             "status_classes": {}, "problems": sum(len(r["problems"]) for r in RESULTS.values()),
             "designed_5xx": sum(r["designed_5xx"] for r in RESULTS.values()),
             "turned_away": sum(r["turned_away"] for r in RESULTS.values()),
             "seconds": round(sum(r["seconds"] for r in RESULTS.values()), 1)}
    for result in RESULTS.values():
        for name, count in result["status_classes"].items():
            total["status_classes"][name] = total["status_classes"].get(name, 0) + count
    # One file for both database layers of the test command: this run's counts under its database's name.
    layers = json.loads(ARTIFACT.read_text()) if ARTIFACT.exists() else {}
    layers[connection.vendor] = {"examples_per_operation_and_mode": EXAMPLES, "total": total, "runs": RESULTS}
    ARTIFACT.parent.mkdir(parents=True, exist_ok=True)
    ARTIFACT.write_text(json.dumps(layers, indent=2, sort_keys=True))
    classes = ", ".join(f"{name} {count}" for name, count in sorted(total["status_classes"].items()))
    request.config.stash[SUMMARY] = (
        f"schemathesis ({connection.vendor}): {total['operations']} operations, {total['cases']} cases, "
        f"{total['requests']} requests ({classes}; designed 5xx {total['designed_5xx']}; {total['turned_away']} "
        f"operations turned their caller away), {total['problems']} problems in {total['seconds']}s -> "
        f"{ARTIFACT.relative_to(ARTIFACT.parents[2])}")


@pytest.mark.timeout(900)
@pytest.mark.parametrize("who", ["student", "admin", "node", "host"])
def test_the_apis_answer_every_generated_request_without_a_server_error(world, who):
    """As a student and an administrator (logged in), as a node controller (signed: the few calls a node makes), and
    as the test host itself (signed: it runs every role, so every call that takes a host's signature takes it)."""
    tally = Tally()
    user = {"student": "pupil", "admin": "admin"}.get(who)
    session_key = session_for(get_user_model().objects.get(username=user)) if user else None
    key = {"node": enrolled_key(NODE_NAME, "nc"), "host": own_key()}.get(who)
    app = Caller(get_wsgi_application(), who, tally, session_key, key)
    started = time.monotonic()
    counted = {"operations": 0, "cases": 0}
    for role in ROLES:
        for operation in operations(loaded(role, world)):
            counted["operations"] += 1
            tally.operation = operation.label
            counted["cases"] += fuzz(operation, app, tally)
    RESULTS[who] = {**counted, "requests": sum(tally.requests.values()), "status_classes": tally.by_class(),
                    "statuses": {str(code): count for code, count in sorted(tally.statuses.items())},
                    "designed_5xx": sum(tally.statuses[code] for code in DESIGNED_5XX),
                    "turned_away": tally.turned_away,
                    "by_operation": {label: {str(code): count for code, count in sorted(codes.items())}
                                     for label, codes in sorted(tally.by_operation.items())},
                    "problems": tally.problems, "seconds": round(time.monotonic() - started, 1)}
    assert not tally.problems, f"{len(tally.problems)} answers broke the rule:\n" + "\n".join(tally.problems[:40])
