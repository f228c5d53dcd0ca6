"""Storage: engines, the migration, and every repository function, on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, TypeVar

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, inspect, text
from sqlmodel import Session, select

from models.closing import ClosingRequest
from models.plan import OfferChoice, OfferSnapshot, Plan, PlanLine
from models.tables import (
    ApiCall,
    Audience,
    Closing,
    ClosingPublic,
    ClosingStatus,
    ItemStatusHistory,
    OrderItem,
    PlacementState,
    PlanLinePublic,
    PlanLineRow,
    StatusSource,
    WebhookEvent,
)
from preclose.rules.lifecycle import Event, TransitionRefused
from preclose.storage import repository as repo
from preclose.storage.db import (
    alembic_config,
    all_tables,
    dispose_engines,
    get_engine,
    make_engine,
    migrate,
    normalize_url,
    open_database,
    session_scope,
)
from preclose.storage.repository import PlacedItem, PlacementConflictError
from tests import fixtures_db
from tests.fixtures_db import (
    BACKENDS,
    PostgresUnreachable,
    postgres_unavailable,
    temporary_postgres_database,
)

# The shared fixtures, bound here so pytest finds them in this module.
engine = fixtures_db.engine
session = fixtures_db.session

T = TypeVar("T")
CLOSING_DAY = date(2026, 6, 15)
T0 = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)


# Builders -------------------------------------------------------------------------------------


def _history(session: Session, order_item_id: uuid.UUID) -> list[ItemStatusHistory]:
    """Every recorded status of an item, oldest event first, read straight from its table."""
    statement = (
        select(ItemStatusHistory)
        .where(ItemStatusHistory.order_item_id == order_item_id)
        .order_by(ItemStatusHistory.at, ItemStatusHistory.recorded_at)  # type: ignore[arg-type]
    )
    return list(session.exec(statement).all())


def closing_request(
    crm_id: str = "CL-1",
    *,
    closing_date: date = CLOSING_DAY,
    move_in: date | None = None,
    test_mode: bool = False,
    zip_code: str = "78701",
) -> ClosingRequest:
    """A valid closing request with the given key facts."""
    return ClosingRequest.model_validate(
        {
            "crm_closing_id": crm_id,
            "property": {
                "address": {
                    "street": "1208 Elm Street",
                    "city": "Austin",
                    "state": "TX",
                    "zip_code": zip_code,
                },
                "property_type": "condo",
                "size_sqft": 1200,
            },
            "buyer": {
                "full_name": "Jordan Rivera",
                "email": "jordan@example.com",
                "phone": "+1 512 555 0147",
            },
            "agent": {"name": "Sam Okafor", "email": "sam@brokerage.example"},
            "closing_date": closing_date.isoformat(),
            "move_in_date": move_in.isoformat() if move_in else None,
            "test_mode": test_mode,
        }
    )


def choice(offer_id: str, price: float = 50.0) -> OfferChoice:
    """An offer choice named after its ID."""
    return OfferChoice(
        offer_id=offer_id,
        offer_name=f"Offer {offer_id}",
        provider_name="Lone Star Fiber",
        monthly_price=price,
        first_year_cost=price * 12 + 99,
        snapshot=OfferSnapshot(name=f"Offer {offer_id}", monthly_price=price, key_features=["x"]),
    )


def line(
    category: str,
    offer_id: str | None,
    *,
    placement: date = date(2026, 6, 1),
    service: date = CLOSING_DAY,
    runners_up: tuple[str, ...] = (),
) -> PlanLine:
    """A plan line for `category`; no offer when `offer_id` is None."""
    return PlanLine.model_validate(
        {
            "category": category,
            "importance": "essential",
            "choice": choice(offer_id) if offer_id else None,
            "reason": f"best {category}",
            "runners_up": [choice(r) for r in runners_up],
            "problem": None if offer_id else "nothing serves this ZIP",
            "service_date": service,
            "service_window_end": service,
            "placement_date": placement,
            "lead_business_days": 5,
        }
    )


def plan(crm_id: str, *lines: PlanLine) -> Plan:
    """A plan for the closing `crm_id` made of `lines`."""
    return Plan(
        closing_id=crm_id,
        closing_date=CLOSING_DAY,
        move_in_date=CLOSING_DAY,
        time_zone="America/Chicago",
        as_of_date=date(2026, 5, 1),
        lines=list(lines),
        generated_at=T0,
    )


def new_closing(session: Session, crm_id: str = "CL-1", **kwargs: Any) -> Closing:
    """A stored closing."""
    closing, _ = repo.create_or_get_closing(
        session=session, closing_in=closing_request(crm_id, **kwargs)
    )
    return closing


def lines_by_category(session: Session, closing: Closing) -> dict[str, PlanLineRow]:
    """The closing's current plan lines keyed by category."""
    return {
        row.category: row for row in repo.list_plan_lines(session=session, closing_id=closing.id)
    }


def placed_closing(
    session: Session, offers: dict[str, str], crm_id: str = "CL-1"
) -> tuple[Closing, dict[str, OrderItem]]:
    """A closing whose lines (category -> offer) are ordered as one placement, items item-<cat>."""
    closing = new_closing(session, crm_id)
    rows = repo.save_plan(
        session=session,
        closing_id=closing.id,
        plan=plan(crm_id, *(line(c, o) for c, o in offers.items())),
    )
    placement = repo.create_placement_intent(
        session=session,
        closing_id=closing.id,
        plan_line_ids=[row.id for row in rows],
        due_date=date(2026, 6, 1),
    )
    repo.mark_placement_placed(
        session=session,
        placement_id=placement.id,
        offergrid_order_id=f"ord-{crm_id}",
        items=[PlacedItem(o, f"item-{crm_id}-{c}") for c, o in offers.items()],
        placed_at=T0,
    )
    items = {
        c: repo.get_item_by_offergrid_id(session=session, offergrid_item_id=f"item-{crm_id}-{c}")
        for c in offers
    }
    return closing, {c: item for c, item in items.items() if item is not None}


def in_two_threads(engine: Engine, work: Callable[[Session], T]) -> list[T]:
    """Run `work` in two threads at once, each with its own session; their results."""
    barrier = threading.Barrier(2)
    results: list[T] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            with Session(engine, expire_on_commit=False) as own:
                barrier.wait(timeout=10)
                results.append(work(own))
        except BaseException as err:  # reported in the main thread
            errors.append(err)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    if errors:
        raise errors[0]
    return results


# Engines and migration ------------------------------------------------------------------------


@pytest.fixture(params=BACKENDS)
def empty_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The URL of a database with no tables at all."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'empty.db'}"
        return
    try:
        with temporary_postgres_database() as url:
            yield url
    except PostgresUnreachable as err:
        postgres_unavailable(str(err))


def test_migration_creates_exactly_the_models_from_empty(empty_database_url: str) -> None:
    """Upgrading an empty database to head creates every table exactly as the models declare."""
    db = make_engine(empty_database_url)
    try:
        migrate(db)
        with db.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            assert compare_metadata(context, all_tables()) == []
            head = ScriptDirectory.from_config(alembic_config()).get_current_head()
            assert context.get_current_revision() == head
        assert set(inspect(db).get_table_names()) >= set(all_tables().tables)
    finally:
        db.dispose()


def test_migration_is_idempotent_and_reversible(empty_database_url: str) -> None:
    """Migrating twice is a no-op, and downgrading to base drops every table again."""
    db = make_engine(empty_database_url)
    try:
        migrate(db)
        migrate(db)
        config = alembic_config(db)
        with db.begin() as connection:
            config.attributes["connection"] = connection
            command.downgrade(config, "base")
        assert set(inspect(db).get_table_names()) <= {"alembic_version"}
        migrate(db)
        assert set(inspect(db).get_table_names()) >= set(all_tables().tables)
    finally:
        db.dispose()


def test_lifecycle_migration_renames_statuses_and_leaves_old_requests_be(
    empty_database_url: str,
) -> None:
    """0005 turns `planning` into `planned` (a plan is stored) or `received` (none yet), and
    takes requests whose run was started before it as finished, for the reconciler to leave."""
    db = make_engine(empty_database_url)
    try:
        migrate(db, "0004")
        now = datetime(2026, 11, 1, tzinfo=UTC)
        typed = {name: sa.bindparam(name, type_=sa.Uuid()) for name in ("id", "closing", "run")} | {
            "now": sa.bindparam("now", type_=sa.DateTime(timezone=True))
        }

        def sql(statement: str) -> Any:
            wanted = [typed[name] for name in typed if f":{name}" in statement]
            return text(statement).bindparams(*wanted)

        ids = {name: uuid.uuid4() for name in ("planned", "received", "line", "request")}
        with db.begin() as connection:
            for name in ("planned", "received"):
                connection.execute(
                    sql(
                        "INSERT INTO closing (id, crm_closing_id, status, property_type, "
                        "occupancy, zip_code, state, time_zone, closing_date, move_in_date, "
                        "test_mode, request, created_at, updated_at, version) VALUES (:id, :crm, "
                        "'planning', 'single_family', 'primary', '78701', 'TX', "
                        "'America/Chicago', '2027-01-01', '2027-01-01', false, '{}', :now, :now, 1)"
                    ),
                    {"id": ids[name], "crm": f"MIG-{name}", "now": now},
                )
            connection.execute(
                sql(
                    "INSERT INTO plan_line (id, closing_id, category, importance, reason, "
                    "service_date, placement_date, state, at_risk, attempt, runners_up, "
                    "created_at, updated_at) VALUES (:id, :closing, 'internet', 'essential', "
                    "'', '2027-01-01', '2026-12-01', 'planned', false, 1, '[]', :now, :now)"
                ),
                {"id": ids["line"], "closing": ids["planned"], "now": now},
            )
            connection.execute(
                sql(
                    "INSERT INTO crm_request (id, closing_id, kind, idempotency_key, "
                    "flow_run_id, received_at) VALUES (:id, :closing, 'start', 'start:x', "
                    ":run, :now)"
                ),
                {"id": ids["request"], "closing": ids["planned"], "run": uuid.uuid4(), "now": now},
            )
        migrate(db)
        with db.connect() as connection:
            rows = connection.execute(text("SELECT crm_closing_id, status FROM closing")).all()
            statuses = {crm_id: status for crm_id, status in rows}
            attempt, finished = connection.execute(
                sql("SELECT attempt, finished_at FROM crm_request")
            ).one()
        assert statuses == {"MIG-planned": "planned", "MIG-received": "received"}
        assert attempt == 1 and finished is not None
    finally:
        db.dispose()


def test_concurrent_migrations_both_succeed(empty_database_url: str) -> None:
    """Two processes opening a new database at once both end at head (one waits for the other)."""
    engines = [make_engine(empty_database_url) for _ in range(2)]
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def run(db: Engine) -> None:
        try:
            barrier.wait(timeout=10)
            migrate(db)
        except BaseException as err:
            errors.append(err)

    threads = [threading.Thread(target=run, args=(db,)) for db in engines]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    try:
        assert errors == []
        assert set(inspect(engines[0]).get_table_names()) >= set(all_tables().tables)
    finally:
        for db in engines:
            db.dispose()


@pytest.mark.parametrize(
    ("url", "driver"),
    [
        ("postgresql://u@h/db", "postgresql+psycopg"),
        ("postgres://u@h/db", "postgresql+psycopg"),
        ("postgresql+psycopg://u@h/db", "postgresql+psycopg"),
        ("sqlite:///x.db", "sqlite"),
    ],
)
def test_normalize_url_sends_postgres_to_psycopg(url: str, driver: str) -> None:
    """Plain postgresql:// and postgres:// URLs are rewritten to the psycopg 3 driver."""
    assert normalize_url(url).drivername == driver


def test_normalize_url_rejects_other_databases() -> None:
    """An unsupported database is a clear error naming database_url."""
    with pytest.raises(ValueError, match="database_url"):
        normalize_url("mysql://u@h/db")


def test_sqlite_engine_uses_wal_foreign_keys_and_busy_timeout(tmp_path: Path) -> None:
    """A SQLite file engine turns on WAL, foreign keys and a busy timeout, and makes its folder."""
    db = make_engine(f"sqlite:///{tmp_path / 'nested' / 'x.db'}")
    try:
        with db.connect() as connection:
            assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            assert connection.exec_driver_sql("PRAGMA busy_timeout").scalar_one() >= 1000
    finally:
        db.dispose()


def test_in_memory_sqlite_is_one_shared_database() -> None:
    """An in-memory SQLite engine keeps one database across connections, so it can be migrated."""
    db = open_database("sqlite://")
    try:
        with Session(db) as own:
            assert own.exec(select(Closing)).all() == []
    finally:
        db.dispose()


def test_get_engine_opens_each_database_once(tmp_path: Path) -> None:
    """get_engine migrates and caches one engine per URL until dispose_engines."""
    url = f"sqlite:///{tmp_path / 'cached.db'}"
    try:
        first = get_engine(url)
        assert get_engine(url) is first
        assert "closing" in inspect(first).get_table_names()
    finally:
        dispose_engines()
    assert get_engine(url) is not first
    dispose_engines()


def test_session_scope_commits_or_rolls_back(engine: Engine) -> None:
    """session_scope commits a block that ends normally and rolls back one that raises."""
    with session_scope(engine) as own:
        own.add(ApiCall(endpoint="/a", method="GET", status_code=200, latency_ms=1.0))
    with pytest.raises(RuntimeError), session_scope(engine) as own:
        own.add(ApiCall(endpoint="/b", method="GET", status_code=200, latency_ms=1.0))
        own.flush()
        raise RuntimeError("boom")
    with Session(engine) as own:
        assert [call.endpoint for call in own.exec(select(ApiCall)).all()] == ["/a"]


def test_timestamps_come_back_aware_utc(session: Session) -> None:
    """A timestamp stored with any offset comes back as the same instant, timezone-aware UTC."""
    at = datetime(2026, 5, 1, 9, 30, 15, 123456, tzinfo=timezone(timedelta(hours=-5)))
    call = repo.record_api_call(
        session=session, endpoint="/x", method="get", status_code=None, latency_ms=3.5, at=at
    )
    session.expunge_all()
    stored = session.get(ApiCall, call.id)
    assert stored is not None
    assert stored.at == at
    assert stored.at.tzinfo is not None and stored.at.utcoffset() == timedelta(0)
    assert stored.method == "GET"


def test_naive_timestamps_are_refused(session: Session) -> None:
    """A naive datetime is refused with an error naming the argument."""
    with pytest.raises(ValueError, match="at: must be timezone-aware"):
        repo.record_api_call(
            session=session,
            endpoint="/x",
            method="GET",
            status_code=200,
            latency_ms=1,
            at=datetime(2026, 5, 1, 9, 30),
        )


# Closings -------------------------------------------------------------------------------------


def test_create_or_get_closing_is_idempotent(session: Session) -> None:
    """A second create for the same CRM ID returns the stored closing and says it was not new."""
    request = closing_request("CL-7", move_in=date(2026, 6, 20), test_mode=True)
    first, created = repo.create_or_get_closing(session=session, closing_in=request)
    again, created_again = repo.create_or_get_closing(session=session, closing_in=request)
    assert (created, created_again) == (True, False)
    assert again.id == first.id
    assert first.status == ClosingStatus.received and first.version == 1
    assert (first.zip_code, first.state, first.property_type) == ("78701", "TX", "condo")
    assert (first.move_in_date, first.test_mode) == (date(2026, 6, 20), True)
    assert first.closing_request() == request
    public = ClosingPublic.model_validate(first)
    assert "request" not in public.model_dump()


def test_closing_move_in_defaults_to_closing_date(session: Session) -> None:
    """Without a move-in date the stored move-in is the closing date."""
    assert new_closing(session).move_in_date == CLOSING_DAY


def test_create_or_get_closing_under_two_threads(engine: Engine) -> None:
    """Two callers creating the same closing at once get one closing; exactly one created it."""
    for round_number in range(3):
        request = closing_request(f"CL-race-{round_number}")

        def create(own: Session, request: ClosingRequest = request) -> tuple[Closing, bool]:
            return repo.create_or_get_closing(session=own, closing_in=request)

        results = in_two_threads(engine, create)
        assert sorted(created for _, created in results) == [False, True]
        assert len({closing.id for closing, _ in results}) == 1
    with Session(engine) as own:
        assert len(own.exec(select(Closing)).all()) == 3


def test_closing_lookups(session: Session) -> None:
    """Closings are found by ID and by CRM ID, and a missing one is None."""
    closing = new_closing(session, "CL-9")
    assert repo.get_closing(session=session, closing_id=closing.id) == closing
    assert repo.get_closing_by_crm_id(session=session, crm_closing_id="CL-9") == closing
    assert repo.get_closing(session=session, closing_id=uuid.uuid4()) is None
    assert repo.get_closing_by_crm_id(session=session, crm_closing_id="nope") is None


def test_list_closings_filters(session: Session) -> None:
    """list_closings filters by status, closing-date range and test mode, ordered by date."""
    early = new_closing(session, "CL-A", closing_date=date(2026, 6, 1))
    late = new_closing(session, "CL-B", closing_date=date(2026, 7, 1), test_mode=True)
    done = new_closing(session, "CL-C", closing_date=date(2026, 6, 10))
    repo.transition_closing(session=session, closing_id=done.id, event=Event.fall_through)

    def crm_ids(**filters: Any) -> list[str]:
        return [c.crm_closing_id for c in repo.list_closings(session=session, **filters)]

    assert crm_ids() == ["CL-A", "CL-C", "CL-B"]
    assert crm_ids(statuses=[ClosingStatus.received]) == [early.crm_closing_id, late.crm_closing_id]
    assert crm_ids(closing_from=date(2026, 6, 5), closing_to=date(2026, 6, 30)) == ["CL-C"]
    assert crm_ids(test_mode=True) == ["CL-B"]
    assert crm_ids(limit=1, offset=1) == ["CL-C"]


def test_transition_closing_asks_the_lifecycle_under_the_lock(session: Session) -> None:
    """A failure sets needs attention with its reason and time; a retry clears them; a refused
    step names the current state and changes nothing."""
    closing = new_closing(session)
    failed = repo.transition_closing(
        session=session, closing_id=closing.id, event=Event.fail, reason="Offergrid is down."
    )
    assert (failed.status, failed.version) == ("needs_attention", 2)
    assert failed.attention_reason == "Offergrid is down." and failed.attention_at is not None
    with pytest.raises(
        TransitionRefused, match="is needs attention; it cannot take the step 'plan'"
    ):
        repo.save_plan(
            session=session, closing_id=closing.id, plan=_empty_plan(closing), first=True
        )
    retried = repo.transition_closing(session=session, closing_id=closing.id, event=Event.retry)
    assert (retried.status, retried.attention_reason, retried.attention_at) == (
        "received",
        None,
        None,
    )
    repo.transition_closing(session=session, closing_id=closing.id, event=Event.fall_through)
    with pytest.raises(TransitionRefused, match="'CL-1' is fell through"):
        repo.transition_closing(session=session, closing_id=closing.id, event=Event.retry)
    assert repo.get_closing(session=session, closing_id=closing.id).status == "fell_through"  # type: ignore[union-attr]


def _empty_plan(closing: Closing) -> Plan:
    return Plan(
        closing_id=closing.crm_closing_id,
        closing_date=closing.closing_date,
        move_in_date=closing.move_in_date,
        time_zone=closing.time_zone,
        as_of_date=closing.closing_date,
        generated_at=datetime.now(UTC),
    )


def test_update_closing_request_moves_the_dates(session: Session) -> None:
    """Updating the request rewrites the copied columns and bumps the version."""
    closing = new_closing(session)
    moved = closing_request("CL-1", closing_date=date(2026, 7, 1))
    updated = repo.update_closing_request(
        session=session, closing_id=closing.id, closing_in=moved, expected_version=1
    )
    assert updated is not None
    assert (updated.closing_date, updated.move_in_date, updated.version) == (
        date(2026, 7, 1),
        date(2026, 7, 1),
        2,
    )
    same = repo.update_closing_request(session=session, closing_id=closing.id, closing_in=moved)
    assert same is not None and same.version == 2  # nothing changed, no new version
    with pytest.raises(ValueError, match="crm_closing_id"):
        repo.update_closing_request(
            session=session, closing_id=closing.id, closing_in=closing_request("CL-2")
        )


# Plans ----------------------------------------------------------------------------------------


def test_save_plan_stores_every_line(session: Session) -> None:
    """Saving a plan stores each line with its pick, dates and runners-up; no pick is skipped."""
    closing = new_closing(session)
    rows = repo.save_plan(
        session=session,
        closing_id=closing.id,
        plan=plan(
            "CL-1",
            line("internet", "off-net", runners_up=("off-net2",)),
            line("security", None),
        ),
    )
    by_category = {row.category: row for row in rows}
    internet, security = by_category["internet"], by_category["security"]
    assert (internet.state, internet.attempt, internet.offer_id) == ("planned", 1, "off-net")
    assert internet.monthly_price == 50.0 and internet.first_year_cost == 699.0
    assert internet.offer_choice() == choice("off-net")
    assert internet.runner_up_choices() == [choice("off-net2")]
    assert (security.state, security.offer_id, security.problem) == (
        "skipped",
        None,
        "nothing serves this ZIP",
    )
    assert security.offer_choice() is None
    public = PlanLinePublic.model_validate(internet)
    assert public.offer_snapshot is not None and public.offer_snapshot["name"] == "Offer off-net"


def test_save_plan_replaces_planned_lines_only(session: Session) -> None:
    """A new plan replaces planned lines and drops planned categories it lacks, but never touches
    a line already sent to Offergrid."""
    closing = new_closing(session)
    first = repo.save_plan(
        session=session,
        closing_id=closing.id,
        plan=plan(
            "CL-1", line("internet", "off-1"), line("energy", "off-2"), line("television", "off-3")
        ),
    )
    internet = next(row for row in first if row.category == "internet")
    repo.create_placement_intent(
        session=session, closing_id=closing.id, plan_line_ids=[internet.id], due_date=CLOSING_DAY
    )
    repo.save_plan(
        session=session,
        closing_id=closing.id,
        plan=plan("CL-1", line("internet", "off-9"), line("energy", "off-8")),
    )
    rows = lines_by_category(session, closing)
    assert set(rows) == {"internet", "energy"}
    assert (rows["internet"].offer_id, rows["internet"].state) == ("off-1", "placing")
    assert (rows["energy"].offer_id, rows["energy"].attempt) == ("off-8", 1)


def test_save_plan_starts_a_new_attempt_after_a_failure(session: Session) -> None:
    """After an order fails, the next plan adds attempt 2 and keeps attempt 1 as history."""
    closing = new_closing(session)
    rows = repo.save_plan(
        session=session, closing_id=closing.id, plan=plan("CL-1", line("internet", "off-1"))
    )
    placement = repo.create_placement_intent(
        session=session, closing_id=closing.id, plan_line_ids=[rows[0].id], due_date=CLOSING_DAY
    )
    repo.mark_placement_failed(session=session, placement_id=placement.id, error="400 bad offer")
    repo.save_plan(
        session=session, closing_id=closing.id, plan=plan("CL-1", line("internet", "off-2"))
    )
    current = lines_by_category(session, closing)["internet"]
    assert (current.attempt, current.offer_id, current.state) == (2, "off-2", "planned")
    history = repo.list_plan_lines(session=session, closing_id=closing.id, current_only=False)
    assert [(row.attempt, row.state) for row in history] == [(1, "failed"), (2, "planned")]


@pytest.mark.parametrize(
    ("bad_plan", "message"),
    [
        (plan("CL-other", line("internet", "off-1")), "plan.closing_id"),
        (plan("CL-1", line("internet", "off-1"), line("internet", "off-2")), "plan.lines"),
    ],
    ids=["other-closing", "duplicate-category"],
)
def test_save_plan_rejects_bad_plans(session: Session, bad_plan: Plan, message: str) -> None:
    """A plan for another closing or with two lines per category is refused, naming the field."""
    closing = new_closing(session)
    with pytest.raises(ValueError, match=message):
        repo.save_plan(session=session, closing_id=closing.id, plan=bad_plan)
    assert repo.list_plan_lines(session=session, closing_id=closing.id) == []


def test_save_plan_for_a_missing_closing(session: Session) -> None:
    """Saving a plan for an unknown closing is a LookupError naming closing_id."""
    with pytest.raises(LookupError, match="closing_id"):
        repo.save_plan(session=session, closing_id=uuid.uuid4(), plan=plan("CL-1"))


def test_list_due_plan_lines(session: Session) -> None:
    """Due lines are planned, have an offer, are due by the date, and belong to live closings."""
    one = new_closing(session, "CL-1")
    two = new_closing(session, "CL-2")
    gone = new_closing(session, "CL-3")
    repo.save_plan(
        session=session,
        closing_id=one.id,
        plan=plan(
            "CL-1",
            line("internet", "off-1", placement=date(2026, 5, 20)),
            line("energy", "off-2", placement=date(2026, 6, 5)),
            line("security", None, placement=date(2026, 5, 1)),
        ),
    )
    repo.save_plan(
        session=session,
        closing_id=two.id,
        plan=plan("CL-2", line("insurance", "off-3", placement=date(2026, 5, 25))),
    )
    repo.save_plan(
        session=session,
        closing_id=gone.id,
        plan=plan("CL-3", line("insurance", "off-4", placement=date(2026, 5, 1))),
    )
    repo.transition_closing(session=session, closing_id=gone.id, event=Event.fall_through)

    def due(as_of: date, closing_id: uuid.UUID | None = None) -> set[str | None]:
        rows = repo.list_due_plan_lines(session=session, as_of_date=as_of, closing_id=closing_id)
        return {row.offer_id for row in rows}

    assert due(date(2026, 5, 19)) == set()
    assert due(date(2026, 5, 25)) == {"off-1", "off-3"}
    assert due(date(2026, 6, 30), one.id) == {"off-1", "off-2"}


def test_cancel_unplaced_lines(session: Session) -> None:
    """Cancelling a closing's unplaced lines leaves the ones already sent to Offergrid."""
    closing, _ = placed_closing(session, {"internet": "off-1"})
    repo.save_plan(
        session=session,
        closing_id=closing.id,
        plan=plan("CL-1", line("internet", "off-1"), line("energy", "off-2")),
    )
    assert repo.cancel_unplaced_lines(session=session, closing_id=closing.id) == 1
    states = {c: row.state for c, row in lines_by_category(session, closing).items()}
    assert states == {"internet": "placed", "energy": "cancelled"}


# Placements -----------------------------------------------------------------------------------


def test_intent_keys_are_stable() -> None:
    """The same closing, due date and lines give the same key; any difference gives another."""
    closing_id = uuid.UUID(int=1)
    due = date(2026, 6, 1)

    def key_for(*lines: tuple[str, int]) -> str:
        return repo.intent_key_for(closing_id=closing_id, due_date=due, lines=lines)

    key = key_for(("internet", 1), ("energy", 1))
    assert key == key_for(("energy", 1), ("internet", 1))
    assert key.startswith(f"preclose-{closing_id.hex}-20260601-") and len(key) <= 120
    others = {
        key_for(("internet", 2), ("energy", 1)),
        key_for(("internet", 1)),
        repo.intent_key_for(
            closing_id=closing_id, due_date=date(2026, 6, 2), lines=[("internet", 1), ("energy", 1)]
        ),
        repo.intent_key_for(
            closing_id=uuid.UUID(int=2), due_date=date(2026, 6, 1), lines=[("internet", 1)]
        ),
    }
    assert key not in others and len(others) == 4


def test_placement_intent_is_recorded_once(session: Session) -> None:
    """The intent is stored before any call, its lines become placing, and asking again for the
    same lines (a second coordinator run) returns the same placement and key."""
    closing = new_closing(session)
    rows = repo.save_plan(
        session=session,
        closing_id=closing.id,
        plan=plan("CL-1", line("internet", "off-1"), line("energy", "off-2")),
    )
    ids = [row.id for row in rows]
    placement = repo.create_placement_intent(
        session=session, closing_id=closing.id, plan_line_ids=ids, due_date=date(2026, 6, 1)
    )
    assert placement.state == PlacementState.intent and placement.offergrid_order_id is None
    assert placement.intent_key == repo.intent_key_for(
        closing_id=closing.id, due_date=date(2026, 6, 1), lines=[("internet", 1), ("energy", 1)]
    )
    assert {row.state for row in lines_by_category(session, closing).values()} == {"placing"}
    items = repo.list_placement_items(session=session, placement_id=placement.id)
    assert sorted(item.offer_id for item in items) == ["off-1", "off-2"]
    assert all(item.status is None and item.offergrid_item_id is None for item in items)

    again = repo.create_placement_intent(
        session=session,
        closing_id=closing.id,
        plan_line_ids=list(reversed(ids)),
        due_date=date(2026, 6, 1),
    )
    assert (again.id, again.intent_key) == (placement.id, placement.intent_key)
    found = repo.find_placement_by_intent_key(session=session, intent_key=placement.intent_key)
    assert found is not None and found.id == placement.id
    assert repo.find_placement_by_intent_key(session=session, intent_key="nope") is None
    assert repo.get_placement(session=session, placement_id=placement.id) == placement
    assert repo.list_placements(session=session, states=[PlacementState.intent]) == [placement]


def test_placement_intent_under_two_threads(engine: Engine) -> None:
    """Two coordinators recording the intent for the same lines at once get one placement."""
    with Session(engine, expire_on_commit=False) as own:
        closing = new_closing(own)
        rows = repo.save_plan(
            session=own, closing_id=closing.id, plan=plan("CL-1", line("internet", "off-1"))
        )
    results = in_two_threads(
        engine,
        lambda s: repo.create_placement_intent(
            session=s, closing_id=closing.id, plan_line_ids=[rows[0].id], due_date=CLOSING_DAY
        ),
    )
    assert len({placement.id for placement in results}) == 1


def test_placement_intent_refuses_bad_lines(session: Session) -> None:
    """Lines of another placement, of another closing, without an offer or unknown are refused."""
    closing = new_closing(session)
    other = new_closing(session, "CL-2")
    rows = {
        row.category: row
        for row in repo.save_plan(
            session=session,
            closing_id=closing.id,
            plan=plan(
                "CL-1", line("internet", "off-1"), line("energy", "off-2"), line("television", None)
            ),
        )
    }
    repo.create_placement_intent(
        session=session,
        closing_id=closing.id,
        plan_line_ids=[rows["internet"].id],
        due_date=CLOSING_DAY,
    )

    def intent(closing_id: uuid.UUID, *ids: uuid.UUID) -> None:
        repo.create_placement_intent(
            session=session, closing_id=closing_id, plan_line_ids=list(ids), due_date=CLOSING_DAY
        )

    with pytest.raises(PlacementConflictError, match="another placement"):
        intent(closing.id, rows["internet"].id, rows["energy"].id)
    with pytest.raises(ValueError, match="without an offer"):
        intent(closing.id, rows["television"].id)
    with pytest.raises(ValueError, match="another closing"):
        intent(other.id, rows["energy"].id)
    with pytest.raises(LookupError, match="plan_line_ids"):
        intent(closing.id, uuid.uuid4())
    with pytest.raises(ValueError, match="at least one"):
        intent(closing.id)
    assert lines_by_category(session, closing)["energy"].state == "planned"


def test_mark_placement_placed_records_items(session: Session) -> None:
    """Placing stores the order and item IDs, the first status and its history; repeating the
    same order is a no-op and a different order ID is a conflict."""
    closing, items = placed_closing(session, {"internet": "off-1", "energy": "off-2"})
    placement = repo.list_placements(session=session, closing_id=closing.id)[0]
    assert (placement.state, placement.offergrid_order_id) == ("placed", "ord-CL-1")
    assert placement.placed_at == T0
    assert {item.status for item in items.values()} == {"pending"}
    assert items["internet"].status_at == T0
    history = _history(session, items["internet"].id)
    assert [(h.status, h.source) for h in history] == [("pending", StatusSource.placement)]
    assert {row.state for row in lines_by_category(session, closing).values()} == {"placed"}

    same = repo.mark_placement_placed(
        session=session,
        placement_id=placement.id,
        offergrid_order_id="ord-CL-1",
        items=[],
    )
    assert same.offergrid_order_id == "ord-CL-1"
    with pytest.raises(PlacementConflictError, match="already order"):
        repo.mark_placement_placed(
            session=session, placement_id=placement.id, offergrid_order_id="ord-x", items=[]
        )


def test_mark_placement_placed_needs_matching_items(session: Session) -> None:
    """Items must match the placement's offers exactly, or nothing is recorded."""
    closing = new_closing(session)
    rows = repo.save_plan(
        session=session,
        closing_id=closing.id,
        plan=plan("CL-1", line("internet", "off-1"), line("energy", "off-2")),
    )
    placement = repo.create_placement_intent(
        session=session,
        closing_id=closing.id,
        plan_line_ids=[row.id for row in rows],
        due_date=CLOSING_DAY,
    )

    def place(*items: PlacedItem) -> None:
        repo.mark_placement_placed(
            session=session, placement_id=placement.id, offergrid_order_id="ord-1", items=items
        )

    with pytest.raises(ValueError, match="off-9"):
        place(PlacedItem("off-1", "item-1"), PlacedItem("off-9", "item-9"))
    with pytest.raises(ValueError, match="no Offergrid item given for offer off-2"):
        place(PlacedItem("off-1", "item-1"))
    stored = repo.get_placement(session=session, placement_id=placement.id)
    assert stored is not None and stored.state == "intent"
    assert repo.get_item_by_offergrid_id(session=session, offergrid_item_id="item-1") is None


def test_unknown_outcome_then_placed(session: Session) -> None:
    """An unknown outcome keeps the intent for a retry; a later success replaces it, and an
    unknown outcome never downgrades a placed order."""
    closing = new_closing(session)
    rows = repo.save_plan(
        session=session, closing_id=closing.id, plan=plan("CL-1", line("internet", "off-1"))
    )
    placement = repo.create_placement_intent(
        session=session, closing_id=closing.id, plan_line_ids=[rows[0].id], due_date=CLOSING_DAY
    )
    unknown = repo.mark_placement_unknown(
        session=session, placement_id=placement.id, error="ReadTimeout"
    )
    assert (unknown.state, unknown.last_error) == ("unknown", "ReadTimeout")
    assert repo.list_placements(session=session, states=[PlacementState.unknown]) == [unknown]
    repo.mark_placement_placed(
        session=session,
        placement_id=placement.id,
        offergrid_order_id="ord-1",
        items=[PlacedItem("off-1", "item-1")],
    )
    after = repo.mark_placement_unknown(session=session, placement_id=placement.id, error="late")
    assert (after.state, after.last_error) == ("placed", None)
    with pytest.raises(PlacementConflictError):
        repo.mark_placement_failed(session=session, placement_id=placement.id, error="x")
    with pytest.raises(LookupError, match="placement_id"):
        repo.mark_placement_unknown(session=session, placement_id=uuid.uuid4(), error="x")


def test_failed_placement_cannot_become_an_order(session: Session) -> None:
    """A placement refused for good cannot later be marked placed."""
    closing = new_closing(session)
    rows = repo.save_plan(
        session=session, closing_id=closing.id, plan=plan("CL-1", line("internet", "off-1"))
    )
    placement = repo.create_placement_intent(
        session=session, closing_id=closing.id, plan_line_ids=[rows[0].id], due_date=CLOSING_DAY
    )
    failed = repo.mark_placement_failed(session=session, placement_id=placement.id, error="400")
    assert failed.state == "failed"
    with pytest.raises(PlacementConflictError, match="failed"):
        repo.mark_placement_placed(
            session=session,
            placement_id=placement.id,
            offergrid_order_id="ord-1",
            items=[PlacedItem("off-1", "item-1")],
        )


# Item statuses --------------------------------------------------------------------------------

# (events applied in order as (status, minutes after T0), expected results, final status)
STATUS_CASES = [
    pytest.param([("accepted", 10), ("scheduled", 20)], [True, True], "scheduled", id="in-order"),
    pytest.param(
        [("scheduled", 20), ("accepted", 10)], [True, False], "scheduled", id="older-ignored"
    ),
    pytest.param(
        [("accepted", 10), ("accepted", 10)], [True, False], "accepted", id="replay-ignored"
    ),
    pytest.param(
        [("accepted", 10), ("scheduled", 10)], [True, True], "scheduled", id="same-time-further"
    ),
    pytest.param(
        [("scheduled", 10), ("accepted", 10)], [True, False], "scheduled", id="same-time-back"
    ),
    pytest.param([("pending", -5)], [False], "pending", id="older-than-placement"),
    pytest.param(
        [("on_hold", 10), ("scheduled", 5)], [True, False], "on_hold", id="unknown-status-kept"
    ),
    pytest.param(
        [("cancelled", 10), ("scheduled", 5)], [True, False], "cancelled", id="no-revival"
    ),
]


@pytest.mark.parametrize(("events", "applied", "final"), STATUS_CASES)
def test_older_events_never_move_an_item_back(
    session: Session, events: list[tuple[str, int]], applied: list[bool], final: str
) -> None:
    """Events apply only when newer than the item's status; older ones and replays are ignored."""
    _, items = placed_closing(session, {"internet": "off-1"})
    results = [
        repo.upsert_item_status(
            session=session,
            offergrid_item_id="item-CL-1-internet",
            status=status,
            at=T0 + timedelta(minutes=minutes),
            source=StatusSource.webhook,
        )
        for status, minutes in events
    ]
    assert results == applied
    item = repo.get_item_by_offergrid_id(session=session, offergrid_item_id="item-CL-1-internet")
    assert item is not None and item.status == final
    history = _history(session, items["internet"].id)
    assert len(history) == 1 + sum(applied)


def test_item_status_details_and_line_state(session: Session) -> None:
    """A status event stores its schedule, account and notes, and moves the plan line along."""
    closing, _ = placed_closing(session, {"internet": "off-1", "energy": "off-2"})
    when = datetime(2026, 6, 10, 15, 0, tzinfo=UTC)
    assert repo.upsert_item_status(
        session=session,
        offergrid_item_id="item-CL-1-internet",
        status="scheduled",
        at=T0 + timedelta(hours=1),
        source=StatusSource.sync,
        scheduled_for=when,
        notes="tech arrives 2-4pm",
    )
    assert repo.upsert_item_status(
        session=session,
        offergrid_item_id="item-CL-1-energy",
        status="active",
        at=T0 + timedelta(hours=2),
        source=StatusSource.webhook,
        account_number="ACCT-42",
    )
    internet = repo.get_item_by_offergrid_id(
        session=session, offergrid_item_id="item-CL-1-internet"
    )
    energy = repo.get_item_by_offergrid_id(session=session, offergrid_item_id="item-CL-1-energy")
    assert internet is not None and energy is not None
    assert (internet.scheduled_for, internet.provider_notes) == (when, "tech arrives 2-4pm")
    assert (energy.status, energy.account_number) == ("active", "ACCT-42")
    states = {c: row.state for c, row in lines_by_category(session, closing).items()}
    assert states == {"internet": "placed", "energy": "fulfilled"}
    history = _history(session, internet.id)
    assert [(h.status, h.source, h.notes) for h in history] == [
        ("pending", "placement", None),
        ("scheduled", "sync", "tech arrives 2-4pm"),
    ]


def test_item_status_for_unknown_items_and_naive_times(session: Session) -> None:
    """An event for an item we never placed is not applied; a naive time is an error."""
    placed_closing(session, {"internet": "off-1"})
    assert not repo.upsert_item_status(
        session=session,
        offergrid_item_id="item-elsewhere",
        status="accepted",
        at=T0,
        source=StatusSource.webhook,
    )
    with pytest.raises(ValueError, match="at: must be timezone-aware"):
        repo.upsert_item_status(
            session=session,
            offergrid_item_id="item-CL-1-internet",
            status="accepted",
            at=datetime(2026, 5, 2),
            source=StatusSource.webhook,
        )


def test_concurrent_status_events_keep_the_newest(engine: Engine) -> None:
    """A newer and an older event racing for one item leave the newer status, whatever the order."""
    with Session(engine, expire_on_commit=False) as own:
        placed_closing(own, {"internet": "off-1"})
    for round_number in range(3):
        newer = T0 + timedelta(hours=10 * (round_number + 1))
        events = iter([("in_progress", newer), ("accepted", newer - timedelta(hours=5))])
        lock = threading.Lock()

        def apply(s: Session, lock: threading.Lock = lock, events: Iterator[Any] = events) -> bool:
            with lock:
                status, at = next(events)
            return repo.upsert_item_status(
                session=s,
                offergrid_item_id="item-CL-1-internet",
                status=status,
                at=at,
                source=StatusSource.webhook,
            )

        in_two_threads(engine, apply)
        with Session(engine) as own:
            item = repo.get_item_by_offergrid_id(
                session=own, offergrid_item_id="item-CL-1-internet"
            )
            assert item is not None and (item.status, item.status_at) == ("in_progress", newer)


def test_fulfilled_closings(session: Session) -> None:
    """A closing is fulfilled when every current line that was to be ordered is fulfilled;
    skipped lines do not count, and a rejected first attempt counts once its retry succeeds."""
    closing, _ = placed_closing(session, {"internet": "off-1", "energy": "off-2"})
    repo.save_plan(
        session=session,
        closing_id=closing.id,
        plan=plan(
            "CL-1", line("internet", "off-1"), line("energy", "off-2"), line("television", None)
        ),
    )
    placed_closing(session, {"insurance": "off-3"}, crm_id="CL-2")

    def fulfilled() -> list[str]:
        return [c.crm_closing_id for c in repo.list_fulfilled_closings(session=session)]

    def event(item_id: str, status: str, hours: int) -> None:
        repo.upsert_item_status(
            session=session,
            offergrid_item_id=item_id,
            status=status,
            at=T0 + timedelta(hours=hours),
            source=StatusSource.webhook,
        )

    assert fulfilled() == []
    event("item-CL-1-internet", "active", 1)
    event("item-CL-1-energy", "rejected", 1)
    assert fulfilled() == []

    repo.save_plan(
        session=session,
        closing_id=closing.id,
        plan=plan(
            "CL-1", line("internet", "off-1"), line("energy", "off-5"), line("television", None)
        ),
    )
    retry = lines_by_category(session, closing)["energy"]
    assert retry.attempt == 2
    placement = repo.create_placement_intent(
        session=session, closing_id=closing.id, plan_line_ids=[retry.id], due_date=CLOSING_DAY
    )
    repo.mark_placement_placed(
        session=session,
        placement_id=placement.id,
        offergrid_order_id="ord-retry",
        items=[PlacedItem("off-5", "item-retry")],
        placed_at=T0 + timedelta(hours=2),
    )
    assert fulfilled() == []
    event("item-retry", "completed", 3)
    assert fulfilled() == ["CL-1"]  # and not CL-2, whose insurance is still under way
    repo.transition_closing(session=session, closing_id=closing.id, event=Event.all_live)
    assert fulfilled() == []  # already marked: no longer a live closing to finish


# Webhooks, API calls, notifications -----------------------------------------------------------


def test_webhook_events_are_deduplicated(session: Session) -> None:
    """A verified delivery is stored once; a repeat returns None; processing is recorded."""
    first = repo.record_webhook_event(
        session=session,
        dedupe_key="evt-1",
        raw_body='{"event":"order.scheduled"}',
        signature_ok=True,
        event_type="order.scheduled",
        offergrid_order_id="ord-1",
        offergrid_item_id="item-1",
    )
    assert first is not None and first.dedupe_key == "evt-1"
    repeat = repo.record_webhook_event(
        session=session, dedupe_key="evt-1", raw_body="{}", signature_ok=True
    )
    assert repeat is None
    assert repo.finish_webhook_event(session=session, event_id=first.id, outcome="applied")
    done = session.get(WebhookEvent, first.id)
    assert done is not None and done.outcome == "applied" and done.processed_at is not None
    assert not repo.finish_webhook_event(session=session, event_id=first.id, outcome="again")
    assert not repo.finish_webhook_event(session=session, event_id=uuid.uuid4(), outcome="x")


def test_forged_webhook_does_not_claim_the_key(session: Session) -> None:
    """An unverified delivery is kept for the record but cannot make the genuine one a repeat."""
    forged = repo.record_webhook_event(
        session=session, dedupe_key="evt-2", raw_body="forged", signature_ok=False
    )
    assert forged is not None and forged.dedupe_key is None
    again = repo.record_webhook_event(
        session=session, dedupe_key="evt-2", raw_body="forged", signature_ok=False
    )
    assert again is not None
    genuine = repo.record_webhook_event(
        session=session, dedupe_key="evt-2", raw_body="{}", signature_ok=True
    )
    assert genuine is not None and genuine.dedupe_key == "evt-2"


def test_webhook_dedupe_under_two_threads(engine: Engine) -> None:
    """Two deliveries of one event handled at once store it once."""
    results = in_two_threads(
        engine,
        lambda s: repo.record_webhook_event(
            session=s, dedupe_key="evt-race", raw_body="{}", signature_ok=True
        ),
    )
    assert sorted(result is None for result in results) == [False, True]


def test_record_api_call(session: Session) -> None:
    """An API call is stored with its endpoint, status and latency."""
    call = repo.record_api_call(
        session=session,
        endpoint="/reseller/orders",
        method="post",
        status_code=429,
        latency_ms=12.5,
        error_type="RateLimitError",
    )
    stored = session.exec(select(ApiCall)).one()
    assert stored.id == call.id
    assert (stored.method, stored.status_code, stored.error_type) == ("POST", 429, "RateLimitError")


def test_notifications_are_told_once(session: Session) -> None:
    """A milestone is claimed once per audience; a repeat returns None; sending is recorded."""
    closing = new_closing(session)
    buyer = repo.record_notification(
        session=session,
        closing_id=closing.id,
        audience=Audience.buyer,
        milestone="internet.scheduled",
        channel="email",
        body="Your internet is scheduled.",
    )
    assert buyer is not None and buyer.sent_at is None
    repeat = repo.record_notification(
        session=session,
        closing_id=closing.id,
        audience=Audience.buyer,
        milestone="internet.scheduled",
        channel="sms",
        body="again",
    )
    assert repeat is None
    agent = repo.record_notification(
        session=session,
        closing_id=closing.id,
        audience=Audience.agent,
        milestone="internet.scheduled",
        channel="email",
        body="Buyer's internet is scheduled.",
        sent_at=T0,
    )
    assert agent is not None and agent.sent_at == T0
    sent = repo.mark_notification_sent(session=session, notification_id=buyer.id, sent_at=T0)
    assert sent is not None and sent.sent_at == T0
    assert repo.mark_notification_sent(session=session, notification_id=uuid.uuid4()) is None


def test_foreign_keys_are_enforced(session: Session) -> None:
    """A plan line for a closing that does not exist is refused by the database."""
    from sqlalchemy.exc import IntegrityError

    session.add(
        PlanLineRow(
            closing_id=uuid.uuid4(),
            category="internet",
            importance="essential",
            service_date=CLOSING_DAY,
            placement_date=CLOSING_DAY,
        )
    )
    with pytest.raises(IntegrityError):
        session.commit()
    session.rollback()
    assert session.exec(text("SELECT count(*) FROM plan_line")).one()[0] == 0  # type: ignore[call-overload]
