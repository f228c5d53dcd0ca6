"""Screenshots of the Prefect UI for the README: the coordinate-closing form, a closing's artifact.

Starts what it needs on loopback, in a temporary directory: a Prefect server, the deployments
registered on it, and a local Offergrid on a virtual clock; coordinates one sample closing (so
its `closing-<crm id>` artifact exists); then headless Chromium (Debian's `chromium` package)
photographs

- the "Custom run" form of the `coordinate closing` deployment, and
- the closing's artifact (its plan, then its timeline),

into docs/screenshots/. Everything it started is stopped again.

    apt-get update && apt-get install -y chromium      # once
    .venv/bin/python scripts/ui_screenshots.py
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from contextlib import ExitStack
from datetime import datetime
from pathlib import Path

from offergrid_sandbox.config import RESELLER_KEY, SandboxConfig, SimulationConfig
from offergrid_sandbox.server import running_sandbox
from preclose.app.serve import ROOT, prefect_server
from preclose.settings import get_settings

# Prefect is imported inside functions: its settings are read at import, after the environment
# below is set.

OUT = ROOT / "docs" / "screenshots"
MAX_BYTES = 300_000
# The UI is a JavaScript app: give it virtual time to fetch and render before the picture.
RENDER_BUDGET_MS = 20_000
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--run-all-compositor-stages-before-draw",
    f"--virtual-time-budget={RENDER_BUDGET_MS}",
]


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def chromium() -> str:
    """The Chromium binary, or a clear exit naming the package to install."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    sys.exit("Chromium is not installed: apt-get update && apt-get install -y chromium")


def screenshot(browser: str, url: str, path: Path, *, size: str, profile: Path) -> None:
    """Photograph `url` at `size` ("WIDTHxHEIGHT") into `path`, and check it is small enough."""
    width, height = size.split("x")
    command = [
        browser,
        *CHROMIUM_FLAGS,
        f"--user-data-dir={profile}",
        f"--window-size={width},{height}",
        f"--screenshot={path}",
        url,
    ]
    subprocess.run(  # noqa: S603 - the local browser, fixed flags, a loopback URL
        command, check=True, capture_output=True, timeout=120
    )
    if not path.is_file():
        sys.exit(f"Chromium wrote no screenshot for {url}")
    if path.stat().st_size > MAX_BYTES:
        sys.exit(f"{path.name} is {path.stat().st_size} bytes, over {MAX_BYTES}")
    print(f"{path.relative_to(ROOT)}  {path.stat().st_size // 1024} KB  ({url})")


def register_deployments() -> str:
    """Apply every deployment to the server (no runner needed for a form); the coordinate ID."""
    from deployments.build import build_deployments
    from preclose.names import COORDINATE

    ids = {f"{d.flow_name}/{d.name}": d.apply() for d in build_deployments()}
    return str(ids[COORDINATE])


def coordinate_sample(as_of: datetime) -> str:
    """Coordinate one sample closing in this process; the ID of its artifact's latest version."""
    from prefect.client.orchestration import get_client

    from flows.coordinate import coordinate_closing
    from preclose.app.samples import sample_closings
    from tasks.artifacts import artifact_key

    closing = sample_closings(as_of.date())[0]
    coordinate_closing(closing, as_of=as_of)
    with get_client(sync_client=True) as client:
        artifact = client.read_latest_artifacts(limit=50)
    key = artifact_key(closing.crm_closing_id)
    for item in artifact:
        if item.key == key and item.latest_id:
            return str(item.latest_id)
    sys.exit(f"no artifact {key!r} was published")


def main() -> int:
    """Start what the pictures need, take them, stop everything."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    browser = chromium()
    args.out.mkdir(parents=True, exist_ok=True)
    with ExitStack() as stack:
        home = Path(tempfile.mkdtemp(prefix="preclose-shots-"))
        stack.callback(shutil.rmtree, home, ignore_errors=True)
        config = SandboxConfig(
            clock="virtual", seed=7, simulation=SimulationConfig(rejection_rate=0, failure_rate=0)
        )
        sandbox = stack.enter_context(running_sandbox(config))
        port = free_port()
        ui = f"http://127.0.0.1:{port}"
        os.environ.update(
            PREFECT_HOME=str(home / "prefect"),
            PREFECT_API_URL=f"{ui}/api",
            PREFECT_SERVER_ANALYTICS_ENABLED="false",
            PREFECT_LOGGING_LEVEL="WARNING",
            PRECLOSE_DATA_DIR=str(home / "preclose"),
            PRECLOSE_DATABASE_URL=f"sqlite:///{home / 'preclose' / 'preclose.db'}",
            PRECLOSE_OFFERGRID_BASE_URL=sandbox.url,
            PRECLOSE_OFFERGRID_API_KEY=RESELLER_KEY,
        )
        stack.enter_context(prefect_server(get_settings(), port, home / "server.log"))
        from preclose.storage.db import dispose_engines

        stack.callback(dispose_engines)
        coordinate_id = register_deployments()
        artifact_id = coordinate_sample(sandbox.sandbox.clock.now())
        profile = home / "chromium"
        screenshot(
            browser,
            f"{ui}/deployments/deployment/{coordinate_id}/run",
            args.out / "coordinate-closing-form.png",
            size="1280x1900",
            profile=profile,
        )
        screenshot(
            browser,
            f"{ui}/artifacts/artifact/{artifact_id}",
            args.out / "closing-artifact.png",
            size="1800x1500",
            profile=profile,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
