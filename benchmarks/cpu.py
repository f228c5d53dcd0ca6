"""CPU seconds of a process tree, read from /proc (Linux): a benchmark's view of another process.

A process's own `utime + stime` plus `cutime + cstime` (its children already waited for), plus the
same for every live descendant: what the tree has burnt so far, whoever forked whom.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

_TICK = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None  # gone (or not Linux)
    # The command name (field 2) may hold spaces and parentheses: split after its last ")".
    return raw[raw.rindex(")") + 2 :].split()


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (fields := _stat_fields(int(entry.name))) is not None:
            tree.setdefault(int(fields[1]), []).append(int(entry.name))
    return tree


def tree_cpu_seconds(pid: int) -> float:
    """CPU seconds used so far by `pid` and all of its descendants, live or reaped."""
    tree = _children()
    total, stack = 0.0, [pid]
    while stack:
        current = stack.pop()
        fields = _stat_fields(current)
        if fields is None:
            continue
        # After ")": state ppid ... utime(11) stime(12) cutime(13) cstime(14), zero-based.
        total += sum(int(value) for value in fields[11:15]) / _TICK
        stack.extend(tree.get(current, []))
    return total


def own_cpu_seconds() -> float:
    """CPU seconds of this process (every thread), without its children."""
    times = os.times()
    return times.user + times.system


@dataclass
class CpuMeter:
    """CPU seconds a process tree used between `start()` and `stop()`."""

    pid: int
    started: float = 0.0
    used: float = 0.0

    def start(self) -> None:
        """Take the starting reading."""
        self.started = tree_cpu_seconds(self.pid)

    def stop(self) -> float:
        """Take the final reading; returns (and keeps) the seconds used in between."""
        self.used = tree_cpu_seconds(self.pid) - self.started
        return self.used
