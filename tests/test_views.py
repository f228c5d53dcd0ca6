"""Plan renderings: the rich table for the terminal and the markdown table for artifacts."""

from __future__ import annotations

from datetime import date

from rich.console import Console

from models.plan import Plan
from preclose.rules.policy import load_policy
from preclose.rules.recommend import recommend
from preclose.rules.timing import plan_closing
from preclose.wording.views import plan_markdown, plan_rows, plan_table
from tests.fixtures_planning import at, energy, insurance, internet, make_closing, make_offer

POLICY = load_policy()


def _plan() -> Plan:
    """A plan the day before closing: internet at risk, insurance missing, names with markup."""
    offers = [
        internet("net", 1000, 59.99, provider="Pipe|Line", name="Pipe|Line Fiber [bold]1 Gig[/]"),
        energy("power", "electricity", None, provider="City Power", name="City Power Residential"),
        make_offer("alarm", "security", price=9.99, provider="HomeWatch"),
        insurance("ho6", "condo (HO-6)", 30.0),
    ]
    closing = make_closing(closing_date="2026-12-15")
    picks = recommend(closing, offers, POLICY)
    return plan_closing(closing, picks, POLICY, as_of=at(date(2026, 12, 14)))


def _render(plan: Plan) -> str:
    console = Console(width=400, record=True, color_system=None)
    console.print(plan_table(plan))
    return console.export_text()


def test_table_has_the_plan_columns_and_one_row_per_line() -> None:
    """The rich table shows service, provider, price, why, dates and status for every line."""
    plan = _plan()
    table = plan_table(plan)
    assert [column.header for column in table.columns] == [
        "Service",
        "Provider",
        "Monthly",
        "Why",
        "Service date",
        "Place by",
        "Status",
    ]
    assert table.row_count == len(plan.lines) == 5


def test_rows_say_price_status_and_missing_services_plainly() -> None:
    """Unpriced offers read "varies", late lines "At risk: ...", a missing essential its problem."""
    rows = {row[0]: row for row in plan_rows(_plan())}
    net = rows["Internet (essential)"]
    assert net[1] == "Pipe|Line (Fiber [bold]1 Gig[/])"
    assert net[2] == "$59.99"
    assert net[6] == "At risk: Closing is in 1 business day; internet installs usually need 10"
    assert rows["Energy (essential)"][2] == "varies"
    missing = rows["Insurance (essential)"]
    assert missing[1:3] == ("—", "—")
    assert (
        missing[6]
        == "At risk: No insurance offer at 78701 that fits the single-family home (HO-3 or HO-5)"
    )
    security = rows["Security (recommended)"]
    assert security[4] == "2026-12-16 to 2026-12-18"
    assert security[5] == "2026-12-14"
    assert rows["TV (optional)"][6] == "Nothing to order"


def test_rendered_table_shows_names_literally() -> None:
    """Square brackets in offer names are printed as text, never read as rich markup."""
    text = _render(_plan())
    assert "[bold]1 Gig[/]" in text
    assert "Plan for closing CL-2026-0042 on 2026-12-15" in text


def test_markdown_is_a_table_with_escaped_cells_and_problems() -> None:
    """The markdown has a header, one escaped row per line, and lists the plan's problems."""
    plan = _plan()
    markdown = plan_markdown(plan)
    lines = markdown.splitlines()
    table = [line for line in lines if line.startswith("|")]
    assert table[0] == "| Service | Provider | Monthly | Why | Service date | Place by | Status |"
    assert table[1] == "|---|---|---|---|---|---|---|"
    assert len(table) == 2 + len(plan.lines)
    assert r"Pipe\|Line (Fiber [bold]1 Gig[/])" in markdown
    # Every row has exactly seven cells once escaped pipes are discounted.
    for row in table:
        assert row.replace(r"\|", "").count("|") == 8
    assert "**Problems**" in markdown
    assert "- No insurance offer at 78701 that fits the single-family home (HO-3 or HO-5)" in lines
