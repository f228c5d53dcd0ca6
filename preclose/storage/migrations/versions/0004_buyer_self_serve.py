"""The buyer's Offergrid link, customer record, and the orders they placed through the link.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29

Frozen types, as in 0001: no import of models. Runs on SQLite and PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def _closing_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["closing_id"],
        ["closing.id"],
        name=op.f(f"fk_{table}_closing_id_closing"),
        ondelete="CASCADE",
    )


def upgrade() -> None:
    """Create buyer_link, buyer_customer and self_serve_item."""
    op.create_table(
        "buyer_link",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("closing_id", sa.Uuid(), nullable=False),
        sa.Column("offergrid_link_id", sa.String(length=100), nullable=True),
        sa.Column("url", sa.String(length=500), nullable=True),
        sa.Column("move_in_date", sa.Date(), nullable=True),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        _closing_fk("buyer_link"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_buyer_link")),
        sa.UniqueConstraint("closing_id", name=op.f("uq_buyer_link_closing_id")),
    )
    op.create_table(
        "buyer_customer",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("buyer_key", sa.String(length=64), nullable=False),
        sa.Column("closing_id", sa.Uuid(), nullable=False),
        sa.Column("offergrid_customer_id", sa.String(length=100), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        _closing_fk("buyer_customer"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_buyer_customer")),
        sa.UniqueConstraint("buyer_key", name=op.f("uq_buyer_customer_buyer_key")),
    )
    with op.batch_alter_table("buyer_customer") as batch_op:
        batch_op.create_index(batch_op.f("ix_buyer_customer_closing_id"), ["closing_id"])
    op.create_table(
        "self_serve_item",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("closing_id", sa.Uuid(), nullable=False),
        sa.Column("offergrid_order_id", sa.String(length=100), nullable=False),
        sa.Column("offergrid_item_id", sa.String(length=100), nullable=False),
        sa.Column("category", sa.String(length=32), nullable=True),
        sa.Column("offer_name", sa.String(length=200), nullable=True),
        sa.Column("provider_name", sa.String(length=200), nullable=True),
        sa.Column("status", sa.String(length=40), nullable=True),
        sa.Column("scheduled_for", sa.DateTime(timezone=True), nullable=True),
        sa.Column("account_number", sa.String(length=100), nullable=True),
        sa.Column("history", JSON, nullable=False),
        sa.Column("ordered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        _closing_fk("self_serve_item"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_self_serve_item")),
        sa.UniqueConstraint("offergrid_item_id", name=op.f("uq_self_serve_item_offergrid_item_id")),
    )
    with op.batch_alter_table("self_serve_item") as batch_op:
        batch_op.create_index(batch_op.f("ix_self_serve_item_closing_id"), ["closing_id"])


def downgrade() -> None:
    """Drop the three tables."""
    op.drop_table("self_serve_item")
    op.drop_table("buyer_customer")
    op.drop_table("buyer_link")
