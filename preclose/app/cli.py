"""The `preclose` command line: run the local Offergrid, the demo, and the services."""

from __future__ import annotations

import os
import sys
from typing import Annotated, Literal

from cyclopts import App, Parameter

app = App(
    name="preclose",
    help="Pre-close services coordinator: arranges a buyer's home services before closing.",
)


@app.command
def sandbox(
    *,
    host: str = "127.0.0.1",
    port: int = 8765,
    clock: Literal["real", "virtual"] = "real",
    seed: int = 7,
    webhook_url: Annotated[str | None, Parameter(help="deliver reseller webhooks here")] = None,
) -> None:
    """Run the local Offergrid (reseller and provider API, simulated providers) on a port."""
    from offergrid_sandbox.config import SandboxConfig, WebhookConfig
    from offergrid_sandbox.server import serve
    from preclose.app.checks import check_port

    check_port(port, "--port")
    config = SandboxConfig(clock=clock, seed=seed, webhooks=WebhookConfig(url=webhook_url))
    serve(host=host, port=port, config=config)


@app.command
def demo(*, closings: int = 3, seed: int = 7) -> None:
    """Coordinate sample closings to fulfilment on the local Offergrid (virtual clock), SQLite."""
    from pathlib import Path

    from rich.console import Console

    from preclose.app.demo import closing_words, prepare_environment, run_demo

    console = Console()
    if not 1 <= closings <= 5:
        console.print("[red]--closings must be between 1 and 5 (there are five samples)[/]")
        sys.exit(2)
    data_dir = Path(os.environ.get("PRECLOSE_DATA_DIR", ".preclose")).resolve()
    from preclose.app.checks import StartupError

    try:
        prepare_environment(data_dir)
    except OSError as err:
        raise StartupError(
            f"PRECLOSE_DATA_DIR: cannot write to {data_dir} ({err.strerror}); "
            "point PRECLOSE_DATA_DIR at a directory you can write"
        ) from None
    from preclose.settings import get_settings

    get_settings.cache_clear()
    get_settings()  # a configuration mistake stops here, before any flow runs
    outcome = run_demo(closings=closings, seed=seed, console=console)
    console.print(closing_words(outcome, data_dir))
    if outcome.fulfilled < outcome.closings:
        sys.exit(1)


@app.command
def health(
    *,
    hours: Annotated[float, Parameter(help="the window: the last this many hours")] = 24,
) -> None:
    """Offergrid integration health: success, errors and latency by endpoint, order acceptance."""
    from datetime import UTC, datetime, timedelta

    from rich.console import Console

    from preclose.runtime import db_session
    from preclose.settings import SettingsError
    from preclose.storage.integration_health import health_table, integration_health

    console = Console()
    if not 0 < hours <= 24 * 90:
        console.print("[red]--hours must be more than 0 and at most 2160 (90 days)[/]")
        sys.exit(2)
    until = datetime.now(UTC)
    try:
        with db_session() as session:
            figures = integration_health(
                session=session, since=until - timedelta(hours=hours), until=until
            )
    except SettingsError as err:
        console.print(f"[red]{err}[/]")
        sys.exit(2)
    console.print(health_table(figures))


@app.command(name="page-link")
def page_link(
    crm_closing_id: str,
    *,
    audience: Annotated[
        Literal["agent", "buyer"], Parameter(name="--for", help="whose view of the page")
    ] = "agent",
) -> None:
    """Print a fresh signed link to a closing's page (the same kind the messages carry)."""
    from datetime import UTC, datetime

    from rich.console import Console

    from models.tables import Audience
    from preclose.rules.pagelinks import page_url
    from preclose.runtime import db_session
    from preclose.settings import get_settings
    from preclose.storage import repository

    console = Console()
    with db_session() as session:
        row = repository.get_closing_by_crm_id(session=session, crm_closing_id=crm_closing_id)
    if row is None:
        console.print(f"[red]crm_closing_id: no closing {crm_closing_id!r} is known[/]")
        sys.exit(2)
    print(page_url(get_settings(), row.id, Audience(audience), now=datetime.now(UTC)))


@app.command
def serve(
    *,
    sandbox: Annotated[
        bool, Parameter(help="also run the local Offergrid (real clock) on --sandbox-port")
    ] = False,
    fresh: Annotated[
        bool, Parameter(help="start the local Offergrid empty (it keeps its orders otherwise)")
    ] = False,
    api_port: Annotated[int, Parameter(help="port of the HTTP app (CRM API, webhooks)")] = 8000,
    prefect_port: Annotated[
        int, Parameter(help="port of the Prefect server started when PREFECT_API_URL is unset")
    ] = 4200,
    sandbox_port: Annotated[int, Parameter(help="port of the local Offergrid")] = 8765,
) -> None:
    """Run it for real: Prefect UI and runner, the HTTP app, and optionally the local Offergrid."""
    from rich.console import Console

    from preclose.app.checks import StartupError
    from preclose.app.serve import (
        ServeError,
        ServeOptions,
        running,
        serve_deployments,
        start_message,
    )
    from preclose.settings import SettingsError

    console = Console(highlight=False, soft_wrap=True)
    options = ServeOptions(
        sandbox=sandbox,
        fresh=fresh,
        api_port=api_port,
        prefect_port=prefect_port,
        sandbox_port=sandbox_port,
    )
    try:
        with running(options, progress=console.print) as endpoints:
            console.print(start_message(endpoints))
            serve_deployments()
    except (ServeError, SettingsError, StartupError) as err:
        console.print(f"[red]preclose serve: {err}[/]")
        sys.exit(1)
    except KeyboardInterrupt:
        pass  # Ctrl-C while starting or stopping: everything started has been stopped
    console.print("Stopped.")


def main(argv: list[str] | None = None) -> None:
    """Entry point of the `preclose` script; a configuration mistake is one line, no traceback."""
    from preclose.app.checks import StartupError
    from preclose.settings import SettingsError

    try:
        app(argv)
    except KeyboardInterrupt:
        sys.exit(130)
    except SettingsError as err:
        # The message names the environment variable and what is wrong; never the value.
        print(f"preclose: configuration error: {err}", file=sys.stderr)
        sys.exit(2)
    except StartupError as err:
        print(f"preclose: {err}", file=sys.stderr)
        sys.exit(2)


def _database_ready() -> None:
    """Data directory and database usable, or one line (StartupError) saying what to fix."""
    from preclose.app.checks import check_data_dir, check_database
    from preclose.settings import get_settings

    settings = get_settings()
    check_data_dir(settings)
    check_database(settings)


# The CRM API's caller keys --------------------------------------------------------------------

api_key_app = App(name="api-key", help="Keys for callers of the CRM API: create, list, revoke.")
app.command(api_key_app)


@api_key_app.command(name="create")
def api_key_create(
    name: Annotated[str, Parameter(help="who holds the key, e.g. the CRM's name")],
    /,
    *,
    read_only: Annotated[bool, Parameter(help="may read closings but not start or change")] = False,
) -> None:
    """Make a key for a caller of the CRM API and print it, once: only its hash is stored."""
    from rich.console import Console

    from preclose.app.api.auth import issue_api_key
    from preclose.runtime import db_session

    console = Console(highlight=False)
    _database_ready()
    try:
        with db_session() as session:
            key, row = issue_api_key(session=session, name=name, read_only=read_only)
    except ValueError as err:
        console.print(f"[red]preclose api-key create: {err}[/]")
        sys.exit(2)
    console.print(f"API key [bold]{row.name}[/] ({row.scopes}):")
    # Printed bare on its own line so it can be copied or piped; it is never shown again.
    print(key)
    console.print("Store it now: it cannot be shown again. Send it in the x-api-key header.")


@api_key_app.command(name="list")
def api_key_list() -> None:
    """List the API keys: name, first characters, scopes, when made and when revoked."""
    from rich.console import Console
    from rich.table import Table

    from preclose.runtime import db_session
    from preclose.storage import repository

    _database_ready()
    with db_session() as session:
        keys = repository.list_api_keys(session=session)
    table = Table("Name", "Key starts", "Scopes", "Created", "Revoked")
    for key in keys:
        table.add_row(
            key.name,
            f"{key.key_prefix}…",
            key.scopes,
            f"{key.created_at:%Y-%m-%d %H:%M}",
            f"{key.revoked_at:%Y-%m-%d %H:%M}" if key.revoked_at else "",
        )
    Console().print(table)


@api_key_app.command(name="revoke")
def api_key_revoke(name: Annotated[str, Parameter(help="the key's name")], /) -> None:
    """Revoke a key: its holder gets 401 from then on."""
    from rich.console import Console

    from preclose.runtime import db_session
    from preclose.storage import repository

    console = Console(highlight=False)
    _database_ready()
    with db_session() as session:
        key = repository.revoke_api_key(session=session, name=name)
    if key is None:
        console.print(f"[red]preclose api-key revoke: no API key named {name!r}[/]")
        sys.exit(2)
    console.print(f"Revoked API key {key.name}.")
