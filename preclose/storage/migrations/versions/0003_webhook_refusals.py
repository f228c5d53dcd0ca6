"""Refused webhook deliveries become counts by reason and hour; their stored bodies are dropped.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29

Frozen types, as in 0001: no import of models.tables. Runs on SQLite and PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The outcomes of deliveries refused before 0003, which were stored with their raw body.
REFUSED = ("bad signature", "stale timestamp", "malformed")


def upgrade() -> None:
    """Create webhook_refusal and empty the raw bodies of refused deliveries stored before."""
    op.create_table(
        "webhook_refusal",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("reason", sa.String(length=40), nullable=False),
        sa.Column("hour", sa.DateTime(timezone=True), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("last_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_refusal")),
        sa.UniqueConstraint("reason", "hour", name=op.f("uq_webhook_refusal_reason_hour")),
    )
    webhook_event = sa.table(
        "webhook_event",
        sa.column("raw_body", sa.Text()),
        sa.column("dedupe_key", sa.String()),
        sa.column("outcome", sa.String()),
    )
    # Their rows stay (the health figures count them) but hold nothing a sender wrote.
    op.execute(
        webhook_event.update()
        .where(webhook_event.c.dedupe_key.is_(None), webhook_event.c.outcome.in_(REFUSED))
        .values(raw_body="")
    )


def downgrade() -> None:
    """Drop webhook_refusal (the emptied bodies are not recoverable)."""
    op.drop_table("webhook_refusal")
