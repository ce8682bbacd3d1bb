"""The OpenAPI document: it names every route of the API's route table, it
is a valid OpenAPI 3.1 document, and a live node on the embedded backend
answers schemathesis's generated requests as it says (no 5xx, every answer
conforming)."""

from __future__ import annotations

import asyncio
import base64
import re
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from openapi_spec_validator import validate
from schemathesis.config import SchemathesisConfig
from schemathesis.core.result import Ok
from schemathesis.generation import GenerationMode

from ntorque import api, selection
from ntorque.openapi import Bounds, document
from tests.conftest import Backend, live_for, make_backend
from tests.inprocess import KEY_HEADER

# A value for each path parameter, so a document path can be matched with a route's pattern.
SAMPLES = {"task_id": ["1"], "schedule_id": ["1"], "name": ["mail"]}


def concrete_paths(path: str, item: dict[str, Any]) -> list[str]:
    """The document path with each parameter replaced by each sample value."""
    values = dict(SAMPLES)
    for op in item.values():
        for param in op.get("parameters", []):
            if "enum" in param["schema"]:
                values[param["name"]] = param["schema"]["enum"]
    paths = [path]
    for name, choices in values.items():
        paths = [p.replace(f"{{{name}}}", choice) for p in paths for choice in choices]
    return paths


def test_every_route_is_in_the_document() -> None:
    documented = [
        concrete for path, item in document()["paths"].items()
        for concrete in concrete_paths(path, item)
    ]  # fmt: skip
    for spec in api.routes():
        pattern = spec.regex.pattern
        assert any(re.fullmatch(pattern.rstrip("$"), path) for path in documented), (
            f"route {pattern} is missing from the OpenAPI document"
        )


def test_the_document_is_valid_openapi_3_1() -> None:
    made = document()
    assert made["openapi"].startswith("3.1")
    validate(made)


def test_every_documented_path_is_a_route() -> None:
    patterns = [spec.regex.pattern.rstrip("$") for spec in api.routes()]
    for path, item in document()["paths"].items():
        for concrete in concrete_paths(path, item):
            assert any(re.fullmatch(p, concrete) for p in patterns), f"{concrete}: no such route"


# -- schemathesis against a live node --------------------------------------------------

EXAMPLES = 8  # per operation and mode (valid data, then invalid): bounds the test's time
# Every check schemathesis has, as it sets them, but one: valid data may meet
# a 422 as the document says (an idempotency key this run already sent with
# another body).
ACCEPTED = ["2xx", "3xx", "401", "403", "404", "409", "422", "429", "5xx"]
CHECKS = SchemathesisConfig.from_dict(
    {"checks": {"positive_data_acceptance": {"expected-statuses": ACCEPTED}}}
)


def formats(now: float) -> dict[str, Any]:
    """Values for what the document names by a format because JSON Schema
    cannot say it: a url the default target policy lets through, a due time
    within bounds, a real cursor, cron expression and time zone."""
    return {
        "uri": st.from_regex(r"[a-z0-9/]{0,12}", fullmatch=True).map(
            lambda path: f"http://127.0.0.1:9/{path}"
        ),
        "due-time": st.integers(0, 86400).map(
            lambda ahead: datetime.fromtimestamp(now + 60 + ahead, UTC).isoformat()
        ),
        "date-time": st.integers(0, 2**31).map(
            lambda epoch: datetime.fromtimestamp(epoch, UTC).isoformat()
        ),
        "cursor": st.integers(1, 10**18).map(selection.cursor),
        "cron": st.sampled_from(["* * * * *", "0 9 * * 1-5", "*/5 * * * *", "0 0 1 * *"]),
        "timezone": st.sampled_from(["UTC", "Europe/Paris", "Asia/Tokyo"]),
        "printable": st.text(st.characters(min_codepoint=32, max_codepoint=126), min_size=1),
        "charset": st.sampled_from(["utf-8", "UTF-8"]),
        # A body in base64 must decode in the charset given with it: text, then.
        "byte": st.text(st.characters(codec="utf-8"), max_size=20).map(
            lambda text: base64.b64encode(text.encode()).decode()
        ),
    }


def stated_in_words(case: Any) -> bool:
    """Whether the case keeps the rules the document can only say in words
    (parameters have no `not`, items no unique field, JSON Schema's integer
    takes 2.0): delay and eta not both in the enqueue's query; a bulk
    action's filter in the query or the body, not both; a batch's
    idempotency keys each once; a whole number written without a point."""
    query = set(case.query or {})
    if {"delay", "eta"} <= query or point_written(case.body):
        return False
    if isinstance(case.body, list):  # a batch: each idempotency key once
        keys = [item.get("idempotency_key") for item in case.body if isinstance(item, dict)]
        keys = [repr(key) for key in keys if key is not None]  # invalid data: any JSON
        if len(keys) != len(set(keys)):
            return False
    return not (isinstance(case.body, dict) and query & set(case.body))


def point_written(value: Any) -> bool:
    """Whether a JSON value holds a whole number written as a float (2.0),
    which the API refuses where it wants a whole number (tests/test_fuzz.py)."""
    if isinstance(value, float):
        return value.is_integer()
    if isinstance(value, dict):
        return any(point_written(item) for item in value.values())
    if isinstance(value, list):
        return any(point_written(item) for item in value)
    return False


def has_inputs(operation: Any) -> bool:
    """Whether invalid data can be made for it (the probes take none)."""
    definition = operation.definition.raw
    return bool(definition.get("parameters") or definition.get("requestBody"))


def fuzz(base_url: str, key: str) -> tuple[int, list[str]]:
    """Every operation, with valid and invalid data, through every default
    check; (the examples run, a line per failing operation)."""
    for name, strategy in formats(time.time()).items():
        schemathesis.openapi.format(name, strategy)
    schema = schemathesis.openapi.from_dict(document(), config=CHECKS)
    failures: list[str] = []
    ran = 0
    for result in schema.get_all_operations():
        if not isinstance(result, Ok):  # an operation schemathesis cannot read is a failure
            failures.append(f"an operation is not valid: {result.err()}")
            continue
        operation = result.ok()
        modes = [GenerationMode.POSITIVE]
        if has_inputs(operation):
            modes.append(GenerationMode.NEGATIVE)
        for mode in modes:
            try:
                ran += examples(operation, mode, base_url, key)
            except (Exception, BaseExceptionGroup) as failure:  # name every failing operation
                failures.append(f"{operation.label} [{mode}]: {failure}")
    return ran, failures


def examples(operation: Any, mode: GenerationMode, base_url: str, key: str) -> int:
    """Run EXAMPLES cases of one operation (a fixed seed); how many ran."""
    ran = 0

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(mode).filter(stated_in_words))
    def check(case: Any) -> None:
        nonlocal ran
        ran += 1
        case.call_and_validate(base_url=base_url, headers={KEY_HEADER: key}, timeout=10)

    check()
    return ran


@pytest.fixture
def embedded(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    """The embedded backend (SQLite, in-process channel): what CI fuzzes."""
    return make_backend(request, "sqlite", tmp_path)


async def test_schemathesis_finds_no_server_error_and_no_nonconforming_answer(
    embedded: Backend,
) -> None:
    backend = embedded
    # Its ignored_auth check sends requests without the key on purpose: no lock-out.
    async with live_for(backend, loops=False, auth_failure_limit=0) as node:
        ran, failures = await asyncio.to_thread(fuzz, node.base_url, node.key)
    assert not failures, "\n\n".join(failures)
    assert ran >= 100, ran


async def test_the_document_is_served_without_a_key_with_the_servers_bounds(
    embedded: Backend,
) -> None:
    async with live_for(embedded, loops=False, max_retries=5, max_due_delay_s=300) as node:
        answer = await node.request("GET", "/openapi.json", None, None, "")
    assert answer.status == 200
    assert answer.headers["Content-Type"].startswith("application/json")
    served = answer.json
    assert served == document(Bounds(max_retries=5, max_timeout_s=300))
    assert served != document()  # the defaults' bounds are not this server's
