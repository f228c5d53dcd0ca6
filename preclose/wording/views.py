"""A plan rendered as a rich table for the terminal and as markdown for a Prefect artifact."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text

from models.plan import Plan, PlanLine

__all__ = ["plan_markdown", "plan_rows", "plan_table"]

_HEADERS = ("Service", "Provider", "Monthly", "Why", "Service date", "Place by", "Status")


def _money(amount: float | None) -> str:
    return "varies" if amount is None else f"${amount:,.2f}"


def _service(line: PlanLine) -> str:
    name = "TV" if line.category == "television" else line.category.value.capitalize()
    return f"{name} ({line.importance.value})"


def _status(line: PlanLine) -> str:
    if line.choice is None:
        return f"At risk: {line.risk_reason}" if line.at_risk else "Nothing to order"
    if line.at_risk:
        return f"At risk: {line.risk_reason}"
    return "Due now" if line.due_now else "On track"


def _service_date(line: PlanLine) -> str:
    if line.service_window_end != line.service_date:
        return f"{line.service_date.isoformat()} to {line.service_window_end.isoformat()}"
    return line.service_date.isoformat()


def plan_rows(plan: Plan) -> list[tuple[str, ...]]:
    """The plan as plain text rows in the column order of `plan_table`."""
    rows: list[tuple[str, ...]] = []
    for line in plan.lines:
        choice = line.choice
        provider = "—"
        if choice is not None and choice.provider_name:
            # Offer names usually start with the provider's name; say it once.
            rest = choice.offer_name.removeprefix(choice.provider_name).strip(" -:")
            provider = f"{choice.provider_name} ({rest})" if rest else choice.provider_name
        elif choice is not None:
            provider = choice.offer_name
        rows.append(
            (
                _service(line),
                provider,
                _money(choice.monthly_price) if choice else "—",
                line.reason,
                _service_date(line),
                line.placement_date.isoformat(),
                _status(line),
            )
        )
    return rows


def plan_table(plan: Plan) -> Table:
    """The plan as a rich table: service, provider, price, why, dates and status."""
    table = Table(
        title=f"Plan for closing {plan.closing_id} on {plan.closing_date.isoformat()}",
        caption=(
            f"Move-in {plan.move_in_date.isoformat()}; dates in {plan.time_zone}; "
            f"planned {plan.as_of_date.isoformat()}"
        ),
    )
    for header in _HEADERS:
        table.add_column(header, overflow="fold", no_wrap=header in {"Service date", "Place by"})
    for line, row in zip(plan.lines, plan_rows(plan), strict=True):
        style = "bold red" if line.at_risk else ("yellow" if line.due_now else "green")
        # Text objects, so that brackets in offer names are never read as rich markup.
        table.add_row(*(Text(cell) for cell in row[:-1]), Text(row[-1], style=style))
    return table


def _cell(text: str) -> str:
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def plan_markdown(plan: Plan) -> str:
    """The plan as a markdown table with a heading and its problems, for a Prefect artifact."""
    out = [
        f"### Plan for closing {_cell(plan.closing_id)} on {plan.closing_date.isoformat()}",
        "",
        f"Move-in {plan.move_in_date.isoformat()}; dates in {plan.time_zone}; "
        f"planned {plan.as_of_date.isoformat()}.",
        "",
        "| " + " | ".join(_HEADERS) + " |",
        "|" + "---|" * len(_HEADERS),
    ]
    out += ["| " + " | ".join(_cell(cell) for cell in row) + " |" for row in plan_rows(plan)]
    if plan.problems:
        out += ["", "**Problems**", ""]
        out += [f"- {_cell(problem)}" for problem in plan.problems]
    if plan.notes:
        out += ["", "**Notes**", ""]
        out += [f"- {_cell(note)}" for note in plan.notes]
    return "\n".join(out) + "\n"
