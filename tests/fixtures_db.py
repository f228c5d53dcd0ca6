"""Database fixtures for any test: `engine` and `session`, each test on SQLite and on PostgreSQL.

Both fixtures depend only on pytest's own fixtures, so a test module can bind just these two
(binding, rather than importing, keeps ruff's F811 quiet when test parameters reuse the names):

    from tests import fixtures_db
    engine = fixtures_db.engine
    session = fixtures_db.session

or the root conftest can list `pytest_plugins = ["tests.fixtures_db"]` for every module.

PostgreSQL is the server at PRECLOSE_TEST_POSTGRES_URL (default
postgresql+psycopg://postgres@127.0.0.1:5432/test). Each test process creates its own database
there (preclose_test_<random>), migrates it once, empties it before every test and drops it at
the end, so parallel runs never collide. When the server cannot be reached the PostgreSQL variants
are skipped, except when CI is set, where they fail: CI can never skip them silently.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import NoReturn

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.exc import OperationalError
from sqlmodel import Session

from preclose.storage.db import all_tables, make_engine, migrate, normalize_url

__all__ = [
    "BACKENDS",
    "DEFAULT_POSTGRES_URL",
    "POSTGRES_URL_ENV",
    "engine",
    "postgres_unavailable",
    "session",
    "temporary_postgres_database",
]

POSTGRES_URL_ENV = "PRECLOSE_TEST_POSTGRES_URL"
DEFAULT_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgresql", id="postgresql", marks=pytest.mark.postgres),
]


class PostgresUnreachable(RuntimeError):
    """The test PostgreSQL server could not be reached or would not create a database."""


def postgres_unavailable(reason: str) -> NoReturn:
    """Skip the current test for lack of PostgreSQL, or fail it when running under CI."""
    message = f"PostgreSQL at {POSTGRES_URL_ENV} unavailable: {reason}"
    if os.environ.get("CI"):
        pytest.fail(f"{message} (CI is set, so this fails instead of skipping)")
    pytest.skip(message)


def _admin_engine() -> Engine:
    url = normalize_url(os.environ.get(POSTGRES_URL_ENV) or DEFAULT_POSTGRES_URL)
    return create_engine(
        url, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 3}, pool_size=1
    )


@contextmanager
def temporary_postgres_database() -> Iterator[str]:
    """A freshly created, empty PostgreSQL database (its URL), dropped afterwards."""
    admin = _admin_engine()
    name = f"preclose_test_{uuid.uuid4().hex[:12]}"
    try:
        try:
            with admin.connect() as connection:
                connection.execute(text(f'CREATE DATABASE "{name}"'))
        except OperationalError as err:
            raise PostgresUnreachable(str(err.orig).strip().splitlines()[0]) from err
        url = admin.url.set(database=name).render_as_string(hide_password=False)
        try:
            yield url
        finally:
            with admin.connect() as connection:
                # FORCE ends any connection a failed test left open.
                connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()


class _SharedPostgres:
    """One migrated database per test process, made on first use and dropped at the end."""

    def __init__(self) -> None:
        self.engine: Engine | None = None
        self.error: str | None = None

    def get(self, config: pytest.Config) -> Engine:
        """The migrated engine, creating the database on first use (skips/fails if unreachable)."""
        if self.engine is not None:
            return self.engine
        if self.error is not None:
            postgres_unavailable(self.error)
        stack = ExitStack()
        try:
            url = stack.enter_context(temporary_postgres_database())
        except PostgresUnreachable as err:
            self.error = str(err)
            postgres_unavailable(self.error)
        # Registered first so it runs last: the database is dropped after the engine is closed.
        config.add_cleanup(stack.close)
        engine = make_engine(url)
        config.add_cleanup(engine.dispose)
        config.add_cleanup(self.reset)
        migrate(engine)
        self.engine = engine
        return engine

    def reset(self) -> None:
        """Forget the engine once the session's cleanup has closed it."""
        self.engine = None


_shared_postgres = _SharedPostgres()


def _truncate_all(engine: Engine) -> None:
    tables = ", ".join(f'"{table.name}"' for table in all_tables().sorted_tables)
    with engine.begin() as connection:
        connection.execute(text(f"TRUNCATE {tables} CASCADE"))


@pytest.fixture(params=BACKENDS)
def engine(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Engine]:
    """A migrated, empty database: a SQLite file per test, or this process's PostgreSQL one."""
    if request.param == "sqlite":
        # A file, not :memory:, so WAL, locking and several threads behave as in production.
        path = tmp_path_factory.mktemp("db") / "preclose.db"
        sqlite_engine = make_engine(f"sqlite:///{path}")
        migrate(sqlite_engine)
        yield sqlite_engine
        sqlite_engine.dispose()
        return
    pg_engine = _shared_postgres.get(request.config)
    _truncate_all(pg_engine)
    yield pg_engine
    # Connections a test forgot would block the next TRUNCATE; the pool starts afresh.
    pg_engine.dispose()


@pytest.fixture
def session(engine: Engine) -> Iterator[Session]:
    """A session on `engine` whose objects stay readable after commits."""
    with Session(engine, expire_on_commit=False) as db_session:
        yield db_session
