"""A closing's life: the states a person reads, why it needs attention, and durable intake.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29

Closing statuses are renamed to the lifecycle's (planning becomes planned, or received when no
plan line is stored yet; cancelled, never set by any code, becomes fell_through). A closing gets
the reason and time it needs attention; a CRM request gets its attempt count and when and how a
run finished it, so the reconciler can find accepted requests that no run finished.
Frozen types, as in 0001: no import of models.tables. Runs on SQLite and PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Add the attention and finish columns, and rename the old statuses."""
    with op.batch_alter_table("closing") as batch:
        batch.add_column(sa.Column("attention_reason", sa.Text(), nullable=True))
        batch.add_column(sa.Column("attention_at", sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table("crm_request") as batch:
        batch.add_column(sa.Column("attempt", sa.Integer(), nullable=False, server_default="1"))
        batch.add_column(sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("outcome", sa.String(length=200), nullable=True))
        batch.create_index(op.f("ix_crm_request_finished_at"), ["finished_at"])
    with op.batch_alter_table("crm_request") as batch:
        batch.alter_column("attempt", server_default=None)
    op.execute(
        "UPDATE closing SET status = CASE WHEN EXISTS "
        "(SELECT 1 FROM plan_line WHERE plan_line.closing_id = closing.id) "
        "THEN 'planned' ELSE 'received' END WHERE status = 'planning'"
    )
    op.execute("UPDATE closing SET status = 'fell_through' WHERE status = 'cancelled'")
    # Requests accepted before this revision: their runs are not known to be lost; leave them be.
    op.execute("UPDATE crm_request SET finished_at = received_at WHERE flow_run_id IS NOT NULL")


def downgrade() -> None:
    """Drop the new columns and map the statuses back."""
    op.execute(
        "UPDATE closing SET status = 'planning' "
        "WHERE status IN ('received', 'planned', 'ordering', 'needs_attention')"
    )
    with op.batch_alter_table("crm_request") as batch:
        batch.drop_index(op.f("ix_crm_request_finished_at"))
        batch.drop_column("outcome")
        batch.drop_column("finished_at")
        batch.drop_column("attempt")
    with op.batch_alter_table("closing") as batch:
        batch.drop_column("attention_at")
        batch.drop_column("attention_reason")
