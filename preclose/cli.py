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

    config = SandboxConfig(clock=clock, seed=seed, webhooks=WebhookConfig(url=webhook_url))
    serve(host=host, port=port, config=config)


@app.command
def demo(*, closings: int = 3, seed: int = 7) -> None:
    """Coordinate sample closings to fulfilment on the local Offergrid (virtual clock), SQLite."""
    from pathlib import Path

    from rich.console import Console

    from preclose.demo import closing_words, prepare_environment, run_demo

    console = Console()
    if not 1 <= closings <= 5:
        console.print("[red]--closings must be between 1 and 5 (there are five samples)[/]")
        sys.exit(2)
    data_dir = Path(os.environ.get("PRECLOSE_DATA_DIR", ".preclose")).resolve()
    prepare_environment(data_dir)
    outcome = run_demo(closings=closings, seed=seed, console=console)
    console.print(closing_words(outcome, data_dir))
    if outcome.fulfilled < outcome.closings:
        sys.exit(1)


def main() -> None:
    """Entry point of the `preclose` script."""
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
