"""Property-based: every route of both apps answers bad (and good) input below 500.

Schemathesis reads each app's own OpenAPI and sends generated requests, valid and invalid, to
every operation; the only property held is that no answer is a server error. The preclose API
runs on SQLite and PostgreSQL with its deployments registered on Prefect's test server (so a
valid closing really starts a run), the local Offergrid in process. Examples are few and bounded
per operation so the module stays within seconds of the suite's budget.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from prefect.client.orchestration import get_client
from schemathesis import GenerationMode
from starlette.testclient import TestClient

from offergrid_sandbox.app import create_app
from offergrid_sandbox.config import HYBRID_KEY, SandboxConfig
from preclose.app.api import create_api
from preclose.app.api.auth import issue_api_key
from preclose.names import CHANGE, COORDINATE
from preclose.runtime import db_session
from preclose.settings import Settings
from preclose.storage.db import dispose_engines
from tests.fixtures_db import BACKENDS, PostgresUnreachable, postgres_unavailable
from tests.fixtures_db import temporary_postgres_database as postgres_database
from tests.fixtures_planning import closing_data

NOW = datetime(2026, 12, 1, 15, 0, tzinfo=UTC)
# Generated requests by the hundred: the whole module is for the full suite, not the fast loop.
pytestmark = pytest.mark.slow

BOUNDED = settings(
    max_examples=12,
    deadline=None,
    derandomize=True,
    database=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)


def _schema(app: FastAPI) -> Any:
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    schema.config.generation.update(modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
    return schema


async def _register(*names: str) -> None:
    async with get_client() as client:
        for name in names:
            flow_name, deployment = name.split("/")
            flow_id = await client.create_flow_from_name(flow_name)
            await client.create_deployment(flow_id=flow_id, name=deployment)


@pytest.fixture(scope="module")
def deployed(prefect_harness: None) -> None:
    """The coordinate and change deployments on Prefect's test server (no worker runs them)."""
    asyncio.run(_register(COORDINATE, CHANGE))


@pytest.fixture(params=BACKENDS)
def preclose_api(
    request: pytest.FixtureRequest, tmp_path: Path, deployed: None
) -> Iterator[tuple[FastAPI, str]]:
    """The preclose API on a fresh database of each kind, and a writing key."""
    with _database(request.param, tmp_path) as url:
        app = create_api(
            Settings(data_dir=tmp_path, database_url=url, offergrid_webhook_secret="whsec_fuzz")
        )
        app.state.now = lambda: NOW
        with db_session(app.state.settings) as session:
            key, _ = issue_api_key(session=session, name="fuzz", read_only=False)
        yield app, key
        dispose_engines()


class _database:
    """A database URL of the given kind for the block (PostgreSQL: a fresh one, dropped after)."""

    def __init__(self, kind: str, tmp_path: Path) -> None:
        self.kind = kind
        self.tmp_path = tmp_path
        self._pg: Any = None

    def __enter__(self) -> str:
        if self.kind != "postgresql":
            return f"sqlite:///{self.tmp_path / 'preclose.db'}"
        self._pg = postgres_database()
        try:
            url: str = self._pg.__enter__()
        except PostgresUnreachable as err:
            postgres_unavailable(str(err))
        return url

    def __exit__(self, *exc: object) -> None:
        if self._pg is not None:
            dispose_engines()
            self._pg.__exit__(*exc)


def _operations(app: FastAPI) -> list[Any]:
    """(method, path) of every operation in an app's OpenAPI, for parametrizing."""
    paths = app.openapi()["paths"]
    return [
        pytest.param(method.upper(), path, id=f"{method.upper()} {path}")
        for path, item in paths.items()
        for method in item
        if method in {"get", "post", "put", "patch", "delete"}
    ]


# Only the documents are read here; the apps the requests go to are built per test.
_SCHEMA_ONLY = Settings(data_dir=Path(".preclose"), database_url="sqlite://")
PRECLOSE_OPERATIONS = _operations(create_api(_SCHEMA_ONLY))
SANDBOX_OPERATIONS = _operations(create_app(SandboxConfig(clock="virtual", start_time=NOW)))


def _cases(schema: Any, method: str, path: str) -> Any:
    operation = schema[path][method]
    return st.one_of(
        operation.as_strategy(generation_mode=GenerationMode.POSITIVE),
        operation.as_strategy(generation_mode=GenerationMode.NEGATIVE),
    )


def _no_server_error(response: Any, case: Any) -> None:
    assert response.status_code < 500, (
        f"{case.method} {case.formatted_path} answered {response.status_code}: "
        f"{response.text[:300]}"
    )


@pytest.mark.parametrize(("method", "path"), PRECLOSE_OPERATIONS)
def test_preclose_api_never_answers_500(
    preclose_api: tuple[FastAPI, str], method: str, path: str
) -> None:
    """Generated requests to every preclose route, with a valid key, never get a 5xx."""
    app, key = preclose_api

    @BOUNDED
    @given(data=st.data())
    def check(data: st.DataObject) -> None:
        case = data.draw(_cases(_schema(app), method, path))
        _no_server_error(case.call(headers={**(case.headers or {}), "x-api-key": key}), case)

    check()


@pytest.mark.parametrize(("method", "path"), SANDBOX_OPERATIONS)
def test_local_offergrid_never_answers_500(method: str, path: str) -> None:
    """Generated requests to every local Offergrid route get no 5xx, only documented answers."""
    schema = _schema(create_app(SandboxConfig(clock="virtual", start_time=NOW)))

    @BOUNDED
    @given(data=st.data())
    def check(data: st.DataObject) -> None:
        case = data.draw(_cases(schema, method, path))
        headers = {**(case.headers or {}), "x-api-key": HYBRID_KEY}
        response = case.call(headers=headers)
        _no_server_error(response, case)
        # Its OpenAPI documents what it really answers: every status seen is listed.
        assert str(response.status_code) in documented, (
            f"{method} {path} answered {response.status_code}, documented {sorted(documented)}"
        )

    documented = set(schema.raw_schema["paths"][path][method.lower()]["responses"])
    check()


# The inputs found answering 500 before, each pinned on both databases ---------------------------


@pytest.mark.parametrize(
    ("time_zone", "status"),
    [("A" * 10_000, 422), ("\ud800", 422), ("America/\udfffChicago", 422), ("Etc/\x00", 422)],
    ids=["10000-chars", "lone-surrogate", "surrogate-inside", "nul"],
)
def test_hostile_time_zone_is_a_4xx(
    preclose_api: tuple[FastAPI, str], time_zone: str, status: int
) -> None:
    """A 10,000-character, lone-surrogate or NUL time_zone is refused naming the field."""
    app, key = preclose_api
    body = json.dumps(closing_data(time_zone=time_zone)).encode()  # \\ud800 escaped as JSON
    response = TestClient(app).post(
        "/closings", content=body, headers={"x-api-key": key, "content-type": "application/json"}
    )
    assert response.status_code == status, response.text
    assert "time_zone" in response.text


@pytest.mark.parametrize(
    ("method", "url", "body"),
    [
        ("GET", "/closings/CL%00-1", None),
        ("GET", "/closings?status=%00", None),
        ("PATCH", "/closings/CL%00-1", {"reason": "x"}),
        ("GET", "/closings/%ff%fe", None),
        ("POST", "/closings", closing_data(crm_closing_id="CL\x00-1")),
        ("POST", "/closings", closing_data(buyer={"full_name": "\ud83d"})),
        ("POST", "/closings", {"crm_closing_id": "x" * 60_000}),
        ("POST", "/closings", {"\ud800": 1}),
        ("POST", "/closings", json.loads("[" * 40 + "]" * 40)),
        ("PATCH", "/closings/CL-1", {"reason": "r", "n": 10**500}),
    ],
    ids=[
        "nul-path",
        "nul-query",
        "nul-patch-path",
        "not-utf8-path",
        "nul-field",
        "surrogate-field",
        "huge-string",
        "surrogate-key",
        "deep",
        "huge-int",
    ],
)
def test_hostile_text_is_a_4xx_on_both_databases(
    preclose_api: tuple[FastAPI, str], method: str, url: str, body: Any
) -> None:
    """NUL, lone surrogates, huge strings, deep JSON and huge numbers answer 4xx, never 500."""
    app, key = preclose_api
    headers = {"x-api-key": key, "content-type": "application/json"}
    content = None if body is None else _dumps(body)
    response = TestClient(app, raise_server_exceptions=False).request(
        method, url, content=content, headers=headers
    )
    assert 400 <= response.status_code < 500, response.text
    response.json()  # the answer itself is sendable JSON


@pytest.mark.parametrize(
    ("method", "url", "body"),
    [
        ("GET", "/reseller/orders/ord%00x", None),
        ("GET", "/reseller/catalog?zipCode=%00&category=internet", None),
        ("POST", "/reseller/availability", {"street": "\ud800", "zipCode": "78701"}),
        ("POST", "/reseller/orders", {"items": [{"offerId": "\x00"}], "customerInfo": {}}),
        ("GET", "/reseller/catalog?zipCode=" + "9" * 10_000, None),
        ("POST", "/reseller/orders", json.loads("[" * 40 + "]" * 40)),
        ("PATCH", "/provider/orders/it%ff/status", {"status": "accepted"}),
    ],
    ids=[
        "nul-path",
        "nul-query",
        "surrogate",
        "nul-field",
        "huge-query",
        "deep",
        "not-utf8-path",
    ],
)
def test_local_offergrid_answers_hostile_text_with_a_4xx(method: str, url: str, body: Any) -> None:
    """The local Offergrid answers NUL, surrogates, huge and deep input with a 4xx too."""
    app = create_app(SandboxConfig(clock="virtual", start_time=NOW))
    headers = {"x-api-key": HYBRID_KEY, "content-type": "application/json"}
    content = None if body is None else _dumps(body)
    response = TestClient(app, raise_server_exceptions=False).request(
        method, url, content=content, headers=headers
    )
    assert 400 <= response.status_code < 500, response.text
    response.json()


def _dumps(body: Any) -> bytes:
    # ensure_ascii keeps lone surrogates as \\udxxx escapes, as a hostile client would send them.
    return json.dumps(body, ensure_ascii=True).encode()
