"""Headless Chromium driven over the DevTools protocol: open a page, read it, run axe, screenshot.

Debian's `chromium` and axe-core's `axe.min.js` (npm) are all it needs: `.ci/run` installs both.
Outside CI a missing one skips the browser tests; under CI it fails them.
"""

from __future__ import annotations

import base64
import itertools
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.sync.client import ClientConnection, connect

ROOT = Path(__file__).resolve().parents[1]
AXE_PATHS = (ROOT / ".cache" / "axe" / "node_modules" / "axe-core" / "axe.min.js",)
PHONE = {"width": 390, "height": 844, "deviceScaleFactor": 1, "mobile": True}


def _missing(what: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{what} is missing under CI: .ci/run should have installed it")
    pytest.skip(f"{what} is not installed (see .ci/run)")


def chromium_path() -> str:
    """Chromium's binary, or skip (fail under CI)."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    _missing("Chromium")
    raise AssertionError("unreachable")


def axe_source() -> str:
    """axe-core's script, or skip (fail under CI)."""
    configured = os.environ.get("AXE_JS")
    for path in ([Path(configured)] if configured else []) + list(AXE_PATHS):
        if path.is_file():
            return path.read_text(encoding="utf-8")
    _missing("axe-core (npm install --prefix .cache/axe axe-core)")
    raise AssertionError("unreachable")


class Page:
    """One browser tab over the DevTools protocol."""

    def __init__(self, socket: ClientConnection) -> None:
        self._socket = socket
        self._ids = itertools.count(1)

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        """Send one command and wait for its answer (events on the way are dropped)."""
        ident = next(self._ids)
        self._socket.send(json.dumps({"id": ident, "method": method, "params": params}))
        while True:
            message = json.loads(self._socket.recv(timeout=60))
            if message.get("id") == ident:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                result: dict[str, Any] = message.get("result", {})
                return result

    def open(self, url: str, *, headers: dict[str, str] | None = None) -> None:
        """Navigate to `url` (with extra request headers) and wait until it has loaded."""
        self.call("Network.enable")
        self.call("Network.setExtraHTTPHeaders", headers=headers or {})
        # A mark on the old document tells it apart from the new one once that has loaded.
        self.evaluate("window.__preclose_old = true")
        self.call("Page.navigate", url=url)
        deadline = time.monotonic() + 30
        loaded = "window.__preclose_old === undefined && document.readyState === 'complete'"
        while time.monotonic() < deadline:
            try:
                if self.evaluate(loaded):
                    return
            except RuntimeError:
                pass  # the old document went away mid-question: ask the new one
            time.sleep(0.05)
        raise TimeoutError(f"{url} did not load")

    def evaluate(self, expression: str, *, awaited: bool = False) -> Any:
        """The JSON value of a JavaScript expression in the page."""
        answer = self.call(
            "Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=awaited
        )
        if "exceptionDetails" in answer:
            raise RuntimeError(f"page script failed: {answer['exceptionDetails'].get('text')}")
        return answer["result"].get("value")

    def axe(self, source: str) -> list[dict[str, Any]]:
        """axe-core's violations on the current page (WCAG 2 A/AA and best practices)."""
        self.evaluate(source)
        script = (
            "axe.run(document, {resultTypes: ['violations']})"
            ".then(r => r.violations.map(v => ({id: v.id, impact: v.impact, help: v.help,"
            " nodes: v.nodes.map(n => n.target.join(' '))})))"
        )
        violations: list[dict[str, Any]] = self.evaluate(script, awaited=True)
        return violations

    def screenshot(self, path: Path) -> None:
        """A PNG of the whole page at the phone's width."""
        height = int(self.evaluate("document.documentElement.scrollHeight"))
        self.call("Emulation.setDeviceMetricsOverride", **{**PHONE, "height": min(height, 4000)})
        shot = self.call("Page.captureScreenshot", format="png", captureBeyondViewport=True)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(shot["data"]))


@contextmanager
def browser() -> Iterator[Page]:
    """A headless Chromium with one tab the size of a phone; stopped at the end."""
    binary = chromium_path()
    # Chromium's helper processes can still be writing the profile as the main one exits, and a
    # leftover file in /tmp is not a test failure.
    with tempfile.TemporaryDirectory(
        prefix="preclose-chromium-", ignore_cleanup_errors=True
    ) as profile:
        process = subprocess.Popen(  # noqa: S603 - a fixed binary and flags
            [
                binary,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--hide-scrollbars",
                "--remote-debugging-port=0",
                f"--user-data-dir={profile}",
                "about:blank",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # its own group, so the helpers stop with it
        )
        try:
            port_file = Path(profile) / "DevToolsActivePort"
            deadline = time.monotonic() + 30
            while not (port_file.exists() and port_file.read_text().strip()):
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError("Chromium did not start")
                time.sleep(0.05)
            port = port_file.read_text().split()[0]
            tabs = httpx.get(f"http://127.0.0.1:{port}/json/list").json()
            target = next(t for t in tabs if t.get("type") == "page")
            with connect(target["webSocketDebuggerUrl"], max_size=None) as socket:
                page = Page(socket)
                page.call("Page.enable")
                # The pages forbid every script; the test's own (axe) comes in through DevTools.
                page.call("Page.setBypassCSP", enabled=True)
                page.call("Emulation.setDeviceMetricsOverride", **PHONE)
                yield page
        finally:
            _stop_group(process)


def _stop_group(process: subprocess.Popen[bytes]) -> None:
    """Stop Chromium and every helper it started, waiting for the main process to go."""
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    except ProcessLookupError:
        process.wait()
