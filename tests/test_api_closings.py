"""The CRM's HTTP way in: closings posted, read, changed and listed; keys, bad input, limits."""

from __future__ import annotations

import asyncio
import copy
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from prefect.client.orchestration import get_client
from prefect.settings import PREFECT_API_URL, PREFECT_CLIENT_MAX_RETRIES, temporary_settings
from sqlmodel import select
from starlette.testclient import TestClient

from models.closing import ClosingRequest
from models.tables import ClosingStatus, CrmRequest
from preclose.app.api import create_api
from preclose.app.api.app import MAX_BODY_BYTES
from preclose.app.api.auth import issue_api_key
from preclose.names import CHANGE, COORDINATE
from preclose.rules.lifecycle import Event
from preclose.runtime import db_session
from preclose.settings import Settings
from preclose.storage import repository
from preclose.storage.db import dispose_engines
from tests.fixtures_planning import closing_data
from tests.fixtures_sandbox import free_port

NOW = datetime(2026, 12, 1, 15, 0, tzinfo=UTC)
PERSONAL = ("John Doe", "john.doe@example.com", "555-4567", "5125554567", "Sam Okafor")


class Api:
    """A test client over the API with a writing and a read-only key."""

    def __init__(self, app: FastAPI, settings: Settings) -> None:
        self.app = app
        self.settings = settings
        self.http = TestClient(app, raise_server_exceptions=False)
        with db_session(settings) as session:
            self.write_key, _ = issue_api_key(session=session, name="crm", read_only=False)
            self.read_key, _ = issue_api_key(session=session, name="report", read_only=True)
        self.writer = {"x-api-key": self.write_key}
        self.reader = {"x-api-key": self.read_key}


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Api]:
    """The API on a fresh SQLite database, judging dates as of NOW."""
    settings = Settings(data_dir=tmp_path, database_url=f"sqlite:///{tmp_path / 'preclose.db'}")
    app = create_api(settings)
    app.state.now = lambda: NOW
    yield Api(app, settings)
    dispose_engines()


async def _register(*names: str) -> None:
    async with get_client() as client:
        for name in names:
            flow_name, deployment = name.split("/")
            flow_id = await client.create_flow_from_name(flow_name)
            await client.create_deployment(flow_id=flow_id, name=deployment)


@pytest.fixture
def deployed(prefect_harness: None) -> None:
    """The coordinate and change deployments registered on Prefect's test server (no worker)."""
    asyncio.run(_register(COORDINATE, CHANGE))


def _set(data: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    data = copy.deepcopy(data)
    *parents, last = path.split(".")
    target = data
    for part in parents:
        target = target.setdefault(part, {})
    target[last] = value
    return data


def _fields(response: Any) -> list[str]:
    return [item["field"] for item in response.json()["detail"]]


def _stored(api: Api) -> int:
    with db_session(api.settings) as session:
        return len(repository.list_closings(session=session))


# Keys ----------------------------------------------------------------------------------------

ROUTES = [
    ("GET", "/closings", None),
    ("GET", "/closings/CL-1", None),
    ("POST", "/closings", closing_data()),
    ("POST", "/closings", {"crm_closing_id": "bad id"}),  # a caller without a key learns nothing
    ("PATCH", "/closings/CL-1", {"fell_through": True}),
    ("GET", "/health/webhooks", None),
]


@pytest.mark.parametrize(("method", "path", "body"), ROUTES)
@pytest.mark.parametrize("key", [None, "", "pck_not-a-key"], ids=["missing", "empty", "unknown"])
def test_missing_or_unknown_key_is_401(
    api: Api, method: str, path: str, body: Any, key: str | None
) -> None:
    """Every closing and health route answers 401 without a known key, and never echoes it."""
    headers = {} if key is None else {"x-api-key": key}
    response = api.http.request(method, path, json=body, headers=headers)
    assert response.status_code == 401
    assert "x-api-key" in response.json()["detail"] or "unknown" in response.json()["detail"]
    if key:
        assert key not in response.text
    assert _stored(api) == 0


def test_revoked_key_is_401(api: Api) -> None:
    """A revoked key is refused like an unknown one."""
    assert api.http.get("/closings", headers=api.reader).status_code == 200
    with db_session(api.settings) as session:
        repository.revoke_api_key(session=session, name="report")
    assert api.http.get("/closings", headers=api.reader).status_code == 401


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/closings", closing_data()),
        ("PATCH", "/closings/CL-2026-0042", {"fell_through": True}),
    ],
)
def test_read_only_key_cannot_write(api: Api, method: str, path: str, body: Any) -> None:
    """A read-only key gets 403 on POST and PATCH, and nothing is stored."""
    response = api.http.request(method, path, json=body, headers=api.reader)
    assert response.status_code == 403
    assert "closings:write" in response.json()["detail"]
    assert _stored(api) == 0


def test_keys_are_stored_hashed(api: Api) -> None:
    """Only a SHA-256 of each key and its first characters are stored, never the key."""
    with db_session(api.settings) as session:
        keys = repository.list_api_keys(session=session)
    assert {key.name for key in keys} == {"crm", "report"}
    for key in keys:
        assert len(key.key_hash) == 64 and api.write_key not in (key.key_hash, key.key_prefix)
        assert api.write_key.startswith(key.key_prefix) or api.read_key.startswith(key.key_prefix)
    with pytest.raises(ValueError, match="name"), db_session(api.settings) as session:
        issue_api_key(session=session, name="crm", read_only=True)


def test_cli_creates_a_key_printed_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`preclose api-key create NAME --read-only` prints a key that reads but cannot write."""
    from preclose.app.cli import app as cli
    from preclose.settings import get_settings

    monkeypatch.setenv("PRECLOSE_DATA_DIR", str(tmp_path))
    get_settings.cache_clear()
    with pytest.raises(SystemExit) as done:
        cli(["api-key", "create", "Acme CRM", "--read-only"])
    assert done.value.code in (None, 0)
    key = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("pck_"))
    app = create_api()
    http = TestClient(app)
    assert http.get("/closings", headers={"x-api-key": key}).status_code == 200
    posted = http.post("/closings", json=closing_data(), headers={"x-api-key": key})
    assert posted.status_code == 403
    with pytest.raises(SystemExit) as again:
        cli(["api-key", "create", "Acme CRM"])
    assert again.value.code == 2
    assert "already exists" in capsys.readouterr().out
    dispose_engines()


# Bad input -----------------------------------------------------------------------------------

BAD_FIELDS: list[tuple[str, Any]] = [
    ("crm_closing_id", "has spaces!"),
    ("property.address.street", "x"),
    ("property.address.unit", "u" * 51),
    ("property.address.city", "A"),
    ("property.address.state", "XX"),
    ("property.address.zip_code", "7870"),
    ("property.address.country", "CA"),
    ("property.property_type", "castle"),
    ("property.size_sqft", 0),
    ("property.year_built", 1500),
    ("property.occupancy", "timeshare"),
    ("property.financed", "perhaps"),
    ("buyer.full_name", "Jo"),
    ("buyer.email", "john.doe-at-example.com"),
    ("buyer.phone", "512 555 9876"),
    ("buyer.contact_consent", "sure"),
    ("buyer.preferred_channel", "pigeon"),
    ("agent.name", "S"),
    ("agent.email", "sam.okafor@brokerage"),
    ("closing_date", "2026-02-30"),
    ("time_zone", "Mars/Olympus_Mons"),
    ("time_zone", "America/New_York"),  # 78701 is Austin, on Central time
    ("property.address.state", "CA"),  # 78701 is in Texas
    ("move_in_date", "2027-06-01"),
    ("preferences.skip_categories", ["moving"]),
    (
        "preferences.budget_caps",
        [{"category": "internet", "max_monthly": 50}, {"category": "internet", "max_monthly": 9}],
    ),
    ("preferences.preferred_providers", "Lone Star Fiber"),
    ("preferences.excluded_providers", ["Acme"]),
    ("preferences.min_internet_mbps", -5),
    ("preferences.installer_notes", "gate code 4417 " * 70),
    ("test_mode", "maybe"),
]


@pytest.mark.parametrize(("path", "value"), BAD_FIELDS, ids=[path for path, _ in BAD_FIELDS])
def test_each_bad_field_is_named_and_not_echoed(api: Api, path: str, value: Any) -> None:
    """Each field of a closing made wrong in turn: 422 naming it, no personal data echoed."""
    body = _set(closing_data(), path, value)
    if path == "preferences.excluded_providers":
        body["preferences"]["preferred_providers"] = ["Acme"]
    response = api.http.post("/closings", json=body, headers=api.writer)
    assert response.status_code == 422, response.text
    assert any(field.startswith(path) for field in _fields(response)), response.text
    for personal in (*PERSONAL, "john.doe-at-example.com", "512 555 9876", "gate code 4417"):
        assert personal not in response.text
    assert "input" not in response.json()["detail"][0]
    assert _stored(api) == 0


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({k: v for k, v in closing_data().items() if k != "buyer"}, "buyer"),
        (_set(closing_data(), "property.size_sqft", "big"), "property.size_sqft"),
        (_set(closing_data(), "closing_date", 20261215), "closing_date"),
        (_set(closing_data(), "buyer", "John Doe, john.doe@example.com"), "buyer"),
        (_set(closing_data(), "surprise", 1), "surprise"),
        ([closing_data()], "body"),
        ("not an object", "body"),
    ],
    ids=["missing", "text-for-int", "int-for-date", "text-for-object", "extra", "list", "string"],
)
def test_wrong_types_and_shapes_are_named(api: Api, body: Any, field: str) -> None:
    """Missing fields, wrong types and unknown fields get 422 naming the field."""
    response = api.http.post("/closings", json=body, headers=api.writer)
    assert response.status_code == 422
    assert field in _fields(response)
    assert not any(personal in response.text for personal in PERSONAL)


def test_malformed_json_is_422(api: Api) -> None:
    """A body that is not JSON gets 422 on the body, without echoing it."""
    response = api.http.post(
        "/closings",
        content=b'{"crm_closing_id": "CL-1", "buyer": {"email": "john.doe@example.com"',
        headers={**api.writer, "content-type": "application/json"},
    )
    assert response.status_code == 422
    assert _fields(response) == ["body"]
    assert "john.doe@example.com" not in response.text


def test_closing_date_in_the_past_is_named(api: Api) -> None:
    """A closing dated before today at the property is refused naming closing_date."""
    response = api.http.post(
        "/closings", json=closing_data(closing_date="2026-11-20"), headers=api.writer
    )
    assert response.status_code == 422
    assert _fields(response) == ["closing_date"]
    assert "in the past" in response.json()["detail"][0]["msg"]
    assert _stored(api) == 0


@pytest.mark.parametrize("chunked", [False, True], ids=["declared", "streamed"])
def test_oversize_body_is_413(api: Api, chunked: bool) -> None:
    """A body over the limit is refused with 413, whether its length is declared or streamed."""
    body = b'{"crm_closing_id": "' + b"x" * MAX_BODY_BYTES + b'"}'
    content: Any = iter([body[:1000], body[1000:]]) if chunked else body
    response = api.http.post(
        "/closings", content=content, headers={**api.writer, "content-type": "application/json"}
    )
    assert response.status_code == 413
    assert "larger than" in response.json()["detail"]


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/closings/CL-NOPE", None),
        ("PATCH", "/closings/CL-NOPE", {"fell_through": True}),
    ],
)
def test_unknown_closing_is_404(api: Api, method: str, path: str, body: Any) -> None:
    """Reading or changing a closing nobody posted answers 404 naming the ID."""
    headers = api.writer if method == "PATCH" else api.reader
    response = api.http.request(method, path, json=body, headers=headers)
    assert response.status_code == 404
    assert "CL-NOPE" in response.json()["detail"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "body"),
        ({"contact": {"email": "john.doe-at-example.com"}}, "contact.email"),
        ({"contact": {"phone": "512 555 9876"}}, "contact.phone"),
        ({"closing_date": "soon"}, "closing_date"),
        ({"fell_through": True, "reason": "r" * 501}, "reason"),
        ({"address": {"street": "1 Main St", "city": "Austin", "state": "ZZ"}}, "address.state"),
    ],
    ids=["empty", "email", "phone", "date", "reason", "address"],
)
def test_bad_change_is_named(api: Api, body: dict[str, Any], field: str) -> None:
    """A change with a bad or missing field gets 422 naming it, without echoing contact data."""
    response = api.http.patch("/closings/CL-2026-0042", json=body, headers=api.writer)
    assert response.status_code == 422
    assert field in _fields(response)
    assert "john.doe-at-example.com" not in response.text and "512 555 9876" not in response.text


def test_unexpected_failure_is_a_plain_500(tmp_path: Path) -> None:
    """A broken database answers a plain 500: no traceback, no error message, no path."""
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    settings = Settings(data_dir=tmp_path, database_url=f"sqlite:///{blocker}/preclose.db")
    http = TestClient(create_api(settings), raise_server_exceptions=False)
    response = http.get("/closings", headers={"x-api-key": "pck_anything"})
    assert response.status_code == 500
    assert response.json() == {"detail": "internal error"}
    assert "Traceback" not in response.text and str(blocker) not in response.text
    assert http.get("/health").status_code == 503


def test_docs_and_openapi_are_served(api: Api) -> None:
    """The OpenAPI document lists every route with the key scheme, and /docs serves it."""
    assert api.http.get("/docs").status_code == 200
    spec = api.http.get("/openapi.json").json()
    assert {"/closings", "/closings/{crm_id}", "/webhooks/offergrid", "/health/webhooks"} <= set(
        spec["paths"]
    )
    assert spec["components"]["securitySchemes"]["APIKeyHeader"]["name"] == "x-api-key"
    assert api.http.get("/health").json() == {"status": "ok", "database": "ok"}


# Listing ---------------------------------------------------------------------------------------


def _store(api: Api, crm_id: str, closing_date: str, status: ClosingStatus | None = None) -> None:
    closing = ClosingRequest.model_validate(
        closing_data(crm_closing_id=crm_id, closing_date=closing_date)
    )
    with db_session(api.settings) as session:
        row, _ = repository.create_or_get_closing(session=session, closing_in=closing)
        if status is not None:
            event = {
                ClosingStatus.active: Event.service_live,
                ClosingStatus.fell_through: Event.fall_through,
            }[status]
            repository.transition_closing(session=session, closing_id=row.id, event=event)


def test_list_filters_and_pages(api: Api) -> None:
    """Closings list by closing date, filtered by status and date range, a page at a time."""
    _store(api, "CL-A", "2026-12-10")
    _store(api, "CL-B", "2026-12-20", ClosingStatus.active)
    _store(api, "CL-C", "2027-01-05", ClosingStatus.fell_through)
    _store(api, "CL-D", "2027-01-20", ClosingStatus.active)

    def ids(query: str) -> list[str]:
        response = api.http.get(f"/closings?{query}", headers=api.reader)
        assert response.status_code == 200, response.text
        return [item["crm_closing_id"] for item in response.json()["items"]]

    assert ids("") == ["CL-A", "CL-B", "CL-C", "CL-D"]
    assert ids("status=active") == ["CL-B", "CL-D"]
    assert ids("status=active&status=received") == ["CL-A", "CL-B", "CL-D"]
    assert ids("closing_from=2026-12-15&closing_to=2027-01-10") == ["CL-B", "CL-C"]
    first = api.http.get("/closings?limit=3", headers=api.reader).json()
    assert first["next_offset"] == 3
    last = api.http.get("/closings?limit=3&offset=3", headers=api.reader).json()
    assert [item["crm_closing_id"] for item in last["items"]] == ["CL-D"]
    assert last["next_offset"] is None
    assert "request" not in first["items"][0]  # the stored request holds personal data


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("status=lost", "status[0]"),
        ("closing_from=someday", "closing_from"),
        ("limit=0", "limit"),
        ("limit=501", "limit"),
        ("offset=-1", "offset"),
        ("closing_from=2027-01-10&closing_to=2026-12-15", "closing_to"),
    ],
)
def test_bad_list_filters_are_named(api: Api, query: str, field: str) -> None:
    """A bad filter gets 422 naming the query parameter."""
    response = api.http.get(f"/closings?{query}", headers=api.reader)
    assert response.status_code == 422
    assert field in _fields(response)


# Through to Prefect ----------------------------------------------------------------------------


def test_post_stores_then_starts_and_a_repeat_finds_it(api: Api, deployed: None) -> None:
    """A first POST answers 202 with the run; the same closing again 200 with the same run."""
    crm_id = f"CL-{uuid.uuid4().hex[:8]}"
    body = closing_data(crm_closing_id=crm_id)
    first = api.http.post("/closings", json=body, headers=api.writer)
    assert first.status_code == 202, first.text
    assert first.headers["location"] == f"/closings/{crm_id}"
    again = api.http.post("/closings", json=body, headers=api.writer)
    assert again.status_code == 200
    assert again.json()["flow_run_id"] == first.json()["flow_run_id"]
    assert again.json()["closing"]["id"] == first.json()["closing"]["id"]
    assert not again.json()["created"]
    assert not any(personal in first.text for personal in PERSONAL)

    detail = api.http.get(f"/closings/{crm_id}", headers=api.reader).json()
    assert [r["flow_run_id"] for r in detail["requests"]] == [first.json()["flow_run_id"]]
    assert detail["closing"]["status"] == "received"


def test_repeat_with_other_details_is_409_naming_them(api: Api, deployed: None) -> None:
    """The same CRM ID with other details is 409 naming the fields, never their values."""
    crm_id = f"CL-{uuid.uuid4().hex[:8]}"
    body = closing_data(crm_closing_id=crm_id)
    assert api.http.post("/closings", json=body, headers=api.writer).status_code == 202
    other = _set(_set(body, "closing_date", "2026-12-18"), "buyer.phone", "+1 512 555 0001")
    response = api.http.post("/closings", json=other, headers=api.writer)
    assert response.status_code == 409
    assert response.json()["fields"] == ["buyer.phone", "closing_date"]
    assert "PATCH" in response.json()["detail"]
    assert "555 0001" not in response.text and "5125550001" not in response.text


def test_patch_records_the_change_and_a_resend_finds_it(api: Api, deployed: None) -> None:
    """A change answers 202 with its run; resent, 200 with the same run; a new one, a new run."""
    crm_id = f"CL-{uuid.uuid4().hex[:8]}"
    assert (
        api.http.post(
            "/closings", json=closing_data(crm_closing_id=crm_id), headers=api.writer
        ).status_code
        == 202
    )
    change = {"closing_date": "2026-12-22", "reason": "lender delay"}
    first = api.http.patch(f"/closings/{crm_id}", json=change, headers=api.writer)
    assert first.status_code == 202, first.text
    again = api.http.patch(f"/closings/{crm_id}", json=change, headers=api.writer)
    assert again.status_code == 200 and again.json()["flow_run_id"] == first.json()["flow_run_id"]
    other = api.http.patch(f"/closings/{crm_id}", json={"fell_through": True}, headers=api.writer)
    assert other.status_code == 202 and other.json()["flow_run_id"] != first.json()["flow_run_id"]

    past = api.http.patch(
        f"/closings/{crm_id}", json={"closing_date": "2026-11-02"}, headers=api.writer
    )
    assert past.status_code == 422 and _fields(past) == ["closing_date"]


def test_patch_of_a_closing_that_fell_through_is_409(api: Api, deployed: None) -> None:
    """A closing that fell through takes no new change (but its last change may be resent)."""
    crm_id = f"CL-{uuid.uuid4().hex[:8]}"
    api.http.post("/closings", json=closing_data(crm_closing_id=crm_id), headers=api.writer)
    gone = api.http.patch(f"/closings/{crm_id}", json={"fell_through": True}, headers=api.writer)
    assert gone.status_code == 202
    with db_session(api.settings) as session:
        row = repository.get_closing_by_crm_id(session=session, crm_closing_id=crm_id)
        assert row is not None
        repository.transition_closing(session=session, closing_id=row.id, event=Event.fall_through)
    resent = api.http.patch(f"/closings/{crm_id}", json={"fell_through": True}, headers=api.writer)
    assert resent.status_code == 200
    moved = api.http.patch(
        f"/closings/{crm_id}", json={"closing_date": "2026-12-30"}, headers=api.writer
    )
    assert moved.status_code == 409 and "fell through" in moved.json()["detail"]


def test_prefect_down_keeps_the_request_and_a_resend_starts_it(api: Api, deployed: None) -> None:
    """With Prefect unreachable the closing is stored and 503 says resend; the resend starts it."""
    crm_id = f"CL-{uuid.uuid4().hex[:8]}"
    body = closing_data(crm_closing_id=crm_id)
    down = {PREFECT_API_URL: f"http://127.0.0.1:{free_port()}/api", PREFECT_CLIENT_MAX_RETRIES: 0}
    with temporary_settings(updates=down):
        response = api.http.post("/closings", json=body, headers=api.writer)
    assert response.status_code == 503
    assert response.headers["retry-after"] == "30"
    with db_session(api.settings) as session:
        [stored] = session.exec(select(CrmRequest)).all()
    assert stored.flow_run_id is None and stored.last_error == "ConnectError"

    resent = api.http.post("/closings", json=body, headers=api.writer)
    assert resent.status_code == 200
    with db_session(api.settings) as session:
        [started] = session.exec(select(CrmRequest)).all()
    assert str(started.flow_run_id) == resent.json()["flow_run_id"]
    assert started.last_error is None


def test_closing_detail_of_a_new_closing(api: Api, deployed: None) -> None:
    """A closing read back before planning shows its facts, an empty plan and its closing day."""
    crm_id = f"CL-{uuid.uuid4().hex[:8]}"
    api.http.post("/closings", json=closing_data(crm_closing_id=crm_id), headers=api.writer)
    detail = api.http.get(f"/closings/{crm_id}", headers=api.reader).json()
    assert detail["closing"]["closing_date"] == date(2026, 12, 15).isoformat()
    assert detail["lines"] == [] and detail["risks"] == []
    assert detail["timeline"][0]["text"] == "Closing"
    assert not any(personal in str(detail) for personal in PERSONAL)
