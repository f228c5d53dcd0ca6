"""A state file for the local Offergrid, so a restart keeps its orders as a real service would.

`StateFile(path)` loads the file into a sandbox at start (a missing file is an empty sandbox),
then writes a fresh copy whenever the state changed, checked every `interval` seconds, and once
more at shutdown. Each write goes to a temporary file renamed over the old one, so a crash
leaves the previous complete copy, never half of one.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from pathlib import Path
from typing import Any

from offergrid_sandbox.state import Sandbox

__all__ = ["StateFile"]

log = logging.getLogger(__name__)


class StateFile:
    """Keeps one sandbox's state in a JSON file across restarts."""

    def __init__(self, path: Path, interval: float = 2.0) -> None:
        """Use `path`; look for changes every `interval` seconds once started."""
        self.path = path
        self.interval = interval
        self._digest = ""
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._sandbox: Sandbox | None = None

    def load(self, sandbox: Sandbox) -> int:
        """Restore the file's state into `sandbox`; returns the number of orders restored."""
        self._sandbox = sandbox
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return 0
        try:
            data: dict[str, Any] = json.loads(text)
            sandbox.restore(data)
        except (ValueError, KeyError, TypeError) as err:
            # Unreadable: keep it for a person to look at, and start empty rather than not at all.
            aside = self.path.with_suffix(".unreadable.json")
            os.replace(self.path, aside)
            log.warning("Local Offergrid state file unreadable (%s); moved to %s", err, aside)
            return 0
        self._digest = hashlib.sha256(text.encode()).hexdigest()
        return len(data.get("orders", {}))

    def save(self) -> bool:
        """Write the state if it changed since the last write; True if it wrote."""
        if self._sandbox is None:
            return False
        text = json.dumps(self._sandbox.snapshot(), separators=(",", ":"), sort_keys=True)
        digest = hashlib.sha256(text.encode()).hexdigest()
        if digest == self._digest:
            return False
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_suffix(".tmp")
        temporary.write_text(text, encoding="utf-8")
        os.replace(temporary, self.path)
        self._digest = digest
        return True

    def start(self) -> None:
        """Save changes in a background thread until `stop`."""
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="offergrid-state", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread and write a last copy."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        self.save()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.save()
            except OSError:
                log.exception("Could not write the local Offergrid state file %s", self.path)
