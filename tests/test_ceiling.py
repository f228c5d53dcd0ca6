"""The benchmarks' figures: the ceiling share read from arrival times, never flattering our pace,
and where the CPU goes, every step named."""

from __future__ import annotations

import pytest

from benchmarks.ceiling import slot_reuse


def _batches(count: int, size: int, every: float, start: float = 1000.0) -> list[float]:
    """`count` bursts of `size` calls, one burst each `every` seconds."""
    return [start + k * every + i * 0.001 for k in range(count) for i in range(size)]


def test_a_slot_used_again_the_moment_it_frees_is_the_whole_ceiling() -> None:
    """Bursts of the limit exactly one window apart use 100% of it."""
    arrivals = _batches(5, 20, 10.0)
    figure = slot_reuse(arrivals, [(0.0, 2000.0)], 20, 10.0)
    assert figure.share == pytest.approx(1.0)
    assert figure.windows == pytest.approx(4.0)  # 80 reuses of 20 slots, each one window long


def test_our_margin_and_answer_dating_show_as_a_lower_share() -> None:
    """Each slot going again 0.5 s late over a 10 s window is 10/10.5 of the ceiling."""
    arrivals = _batches(5, 20, 10.5)
    assert slot_reuse(arrivals, [(0.0, 2000.0)], 20, 10.0).share == pytest.approx(10 / 10.5)


def test_steps_that_fit_in_one_window_and_calls_outside_steps_are_not_read() -> None:
    """No backlog, no figure; calls outside a step never pair with calls inside it."""
    quiet = _batches(1, 15, 10.0)
    assert slot_reuse(quiet, [(0.0, 2000.0)], 20, 10.0).reuses == 0
    two_days = _batches(2, 20, 10.0, start=1000.0) + _batches(2, 20, 10.0, start=5000.0)
    figure = slot_reuse(two_days, [(900.0, 1100.0), (4900.0, 5100.0)], 20, 10.0)
    assert figure.reuses == 40 and figure.share == pytest.approx(1.0)


def test_the_benchmark_names_every_step_under_ten_ms_with_its_figure() -> None:
    """The rest of a "where" report names each step (largest first) and sums the tiny ones."""
    from benchmarks.where import named_rest

    # Seconds over 10 closings: 9 ms, 3 ms and 0.2 ms a closing.
    lines = named_rest(
        {"tasks/a.small": 0.03, "tasks/b.large": 0.09, "tasks/c.tiny": 0.002}, 10, "  "
    )
    text = " ".join(line.strip() for line in lines)
    assert text == "tasks/b.large 9, tasks/a.small 3, 1 more under 1 ms: 0.2 ms in all"
    assert all(line.startswith("  ") and len(line) <= 100 for line in lines)
