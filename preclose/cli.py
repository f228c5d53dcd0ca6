"""The `preclose` command line: run the local Offergrid, the demo, and the services."""

from __future__ import annotations

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


def main() -> None:
    """Entry point of the `preclose` script."""
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
