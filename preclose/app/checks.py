"""What `preclose serve` (and every command) needs before it starts, each problem one sentence.

Each check raises StartupError naming the setting at fault and how to fix it; none echoes a
secret (a database URL is shown with its password hidden). They run once at start so a bad URL
or key is found in a second, not 46 s and nine tracebacks into the first closing.
"""

from __future__ import annotations

import tempfile

import httpx
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from preclose.settings import Settings

__all__ = [
    "StartupError",
    "check_data_dir",
    "check_database",
    "check_offergrid",
    "check_port",
    "check_prefect_api",
    "check_webhook_secret",
    "shown_url",
]

# An order ID that cannot exist: asking for it costs one request and proves the key works.
_PROBE_PATH = "/reseller/orders/preclose-start-check"


class StartupError(RuntimeError):
    """A setting or resource is wrong; the message is one line naming it and the fix."""


def shown_url(url: str) -> str:
    """A database URL fit to print: the password hidden."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "(an unparseable URL)"


def check_port(port: int, option: str) -> int:
    """The port if it is one (1-65535); else StartupError naming the option."""
    if not 1 <= port <= 65_535:
        raise StartupError(f"{option} {port} is not a TCP port: give a number from 1 to 65535")
    return port


def check_data_dir(settings: Settings) -> None:
    """The data directory exists (made if need be) and takes a file."""
    where = settings.data_dir
    try:
        where.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=where, prefix=".write-check-"):
            pass
    except OSError as err:
        raise StartupError(
            f"PRECLOSE_DATA_DIR: cannot write to {where} ({err.strerror or type(err).__name__}); "
            "point PRECLOSE_DATA_DIR at a directory you can write"
        ) from None


def check_database(settings: Settings) -> None:
    """The database answers (and is migrated); else one line naming PRECLOSE_DATABASE_URL."""
    from preclose.storage.db import get_engine

    url = settings.database_url
    try:
        engine = get_engine(url)
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except (SQLAlchemyError, OSError) as err:
        raise StartupError(
            f"PRECLOSE_DATABASE_URL: cannot open {shown_url(url)} ({_reason(err)}); "
            "start that database server or fix the URL"
        ) from None


def _reason(err: BaseException) -> str:
    # The driver's first line says what happened (refused, unknown host, bad password) without
    # the traceback; the URL it may quote has no password in psycopg's messages.
    original = getattr(err, "orig", None) or err
    first = str(original).strip().splitlines()
    return (first[0] if first else type(original).__name__)[:200]


def check_offergrid(base_url: str, api_key: str) -> None:
    """Offergrid answers at `base_url` and accepts the reseller key (one request)."""
    try:
        response = httpx.get(f"{base_url}{_PROBE_PATH}", headers={"x-api-key": api_key}, timeout=10)
    except httpx.HTTPError as err:
        raise StartupError(
            f"PRECLOSE_OFFERGRID_BASE_URL: cannot reach Offergrid at {base_url} "
            f"({type(err).__name__}); check the URL and the network, or use --sandbox"
        ) from None
    if response.status_code == 401:
        raise StartupError(
            "PRECLOSE_OFFERGRID_API_KEY: Offergrid refused the key (401); "
            "set the reseller key from your Offergrid team settings"
        )
    if response.status_code == 403:
        raise StartupError(
            "PRECLOSE_OFFERGRID_API_KEY: the key is not a reseller key (403); "
            "use a key of a reseller or hybrid team"
        )
    if response.status_code >= 500 or response.status_code not in (200, 404, 429):
        raise StartupError(
            f"PRECLOSE_OFFERGRID_BASE_URL: {base_url} answered {response.status_code} to an "
            "Offergrid request; check that the URL is Offergrid's API"
        )


def check_prefect_api(api_url: str) -> None:
    """The Prefect server PREFECT_API_URL names answers its health check."""
    try:
        healthy = httpx.get(f"{api_url.rstrip('/')}/health", timeout=10).status_code == 200
    except httpx.HTTPError:
        healthy = False
    if not healthy:
        raise StartupError(
            f"PREFECT_API_URL: no Prefect server answers at {api_url}; start it, or unset "
            "PREFECT_API_URL and preclose serve starts its own"
        )


def check_webhook_secret(settings: Settings) -> None:
    """A webhook secret is set, so Offergrid's signed deliveries can be verified."""
    if settings.offergrid_webhook_secret is None:
        raise StartupError(
            "PRECLOSE_OFFERGRID_WEBHOOK_SECRET is not set, so every Offergrid webhook would be "
            "refused; set it to the secret Offergrid signs deliveries with"
        )
