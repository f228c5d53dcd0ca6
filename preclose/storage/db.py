"""Opening the database: engines for SQLite and PostgreSQL, migrations, and sessions."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, MetaData, create_engine, event, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.pool import StaticPool
from sqlmodel import Session, SQLModel

from preclose.settings import get_settings

__all__ = [
    "MIGRATIONS_DIR",
    "alembic_config",
    "all_tables",
    "dispose_engines",
    "get_engine",
    "make_engine",
    "migrate",
    "normalize_url",
    "open_database",
    "session_scope",
]

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
SQLITE_BUSY_TIMEOUT_MS = 15_000
# Any constant works; it only has to be the same for every process migrating the same database.
_PG_MIGRATION_LOCK = 0x70726563  # "prec"
_SQLITE_MIGRATE_ATTEMPTS = 5

_engines: dict[str, Engine] = {}
_engines_lock = threading.Lock()


def all_tables() -> MetaData:
    """The metadata of every table the migrations manage, each defining module imported."""
    # Importing the two table modules is this function's purpose: it registers their tables.
    import models.self_serve
    import models.tables  # noqa: F401

    return SQLModel.metadata


def normalize_url(url: str | URL) -> URL:
    """Parse a database URL, sending plain `postgresql://` and `postgres://` URLs to psycopg 3."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.get_backend_name() not in ("sqlite", "postgresql"):
        raise ValueError(
            f"database_url: unsupported database {parsed.get_backend_name()!r} "
            "(use sqlite:///path or postgresql://...)"
        )
    return parsed


def _is_memory(url: URL) -> bool:
    return url.database in (None, "", ":memory:") or bool(url.query.get("mode") == "memory")


def make_engine(url: str | URL, *, echo: bool = False) -> Engine:
    """An engine for `url`: SQLite with WAL, foreign keys and a busy timeout, or PostgreSQL."""
    parsed = normalize_url(url)
    if parsed.get_backend_name() == "sqlite":
        return _sqlite_engine(parsed, echo=echo)
    return create_engine(
        parsed,
        echo=echo,
        pool_pre_ping=True,
        connect_args={"connect_timeout": 10, "application_name": "preclose"},
    )


def _sqlite_engine(url: URL, *, echo: bool) -> Engine:
    memory = _is_memory(url)
    kwargs: dict[str, Any] = {
        # Prefect runs tasks in worker threads; each session still uses one connection at a time.
        "connect_args": {"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
    }
    if memory:
        # One shared connection, or every new connection would see its own empty database.
        kwargs["poolclass"] = StaticPool
    elif url.database:
        Path(url.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, echo=echo, **kwargs)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        try:
            if not memory:
                # WAL lets readers proceed while one writer commits; NORMAL is durable enough
                # in WAL mode and far faster than FULL.
                cursor.execute("PRAGMA journal_mode=WAL")
                cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        finally:
            cursor.close()

    return engine


def alembic_config(engine: Engine | None = None) -> Config:
    """An Alembic configuration for the shipped migrations, bound to `engine` when given."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("path_separator", "os")
    if engine is not None:
        # Escaped for configparser interpolation; the password is only kept in memory.
        rendered = engine.url.render_as_string(hide_password=False).replace("%", "%%")
        config.set_main_option("sqlalchemy.url", rendered)
    return config


def migrate(engine: Engine, revision: str = "head") -> None:
    """Upgrade the database behind `engine` to `revision` (the latest by default)."""
    if engine.dialect.name != "sqlite":
        _migrate_once(engine, revision)
        return
    # SQLite answers "database is locked" without waiting in a few cases (a read snapshot that
    # must become a write, a brand-new file's journal switch), so a second process opening the
    # same new file may lose the race however long its busy timeout; it then finds the winner's
    # schema on the next try.
    for attempt in range(_SQLITE_MIGRATE_ATTEMPTS):
        try:
            _migrate_once(engine, revision)
            return
        except OperationalError as err:
            if "locked" not in str(err) or attempt == _SQLITE_MIGRATE_ATTEMPTS - 1:
                raise
            time.sleep(0.5 * (attempt + 1))


def _migrate_once(engine: Engine, revision: str) -> None:
    config = alembic_config(engine)
    with engine.begin() as connection:
        if engine.dialect.name == "postgresql":
            # Two processes starting at once must not both create the tables: the second waits
            # here, then finds the database already at head.
            connection.execute(
                text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_MIGRATION_LOCK}
            )
        elif engine.dialect.name == "sqlite":
            # The same on SQLite: take the write lock up front, so the whole upgrade is one
            # transaction and a concurrent migrator waits instead of failing half-way.
            connection.exec_driver_sql("BEGIN IMMEDIATE")
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


def open_database(url: str | None = None) -> Engine:
    """An engine for `url` (default: the configured database), migrated to the latest schema."""
    engine = make_engine(url or get_settings().database_url)
    migrate(engine)
    return engine


def get_engine(url: str | None = None) -> Engine:
    """The process's migrated engine for `url` (default: the configured database), made once."""
    key = normalize_url(url or get_settings().database_url).render_as_string(hide_password=False)
    with _engines_lock:
        engine = _engines.get(key)
        if engine is None:
            engine = _engines[key] = open_database(key)
        return engine


def dispose_engines() -> None:
    """Close every engine `get_engine` made; the next call opens a fresh one."""
    with _engines_lock:
        for engine in _engines.values():
            engine.dispose()
        _engines.clear()


@contextmanager
def session_scope(engine: Engine) -> Iterator[Session]:
    """A session that commits when the block ends, rolls back on an error, and always closes."""
    session = Session(engine, expire_on_commit=False)
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()
