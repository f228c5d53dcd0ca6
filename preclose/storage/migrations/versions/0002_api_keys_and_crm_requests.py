"""The CRM API's tables: caller keys (hashed) and the requests CRMs sent, stored before any run.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26

Frozen types, as in 0001: no import of models.tables. Runs on SQLite and PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
ENUM = sa.String(length=20)  # enums are stored as their value in a VARCHAR, not a native type


def upgrade() -> None:
    """Create api_key and crm_request."""
    op.create_table(
        "api_key",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("key_hash", sa.String(length=64), nullable=False),
        sa.Column("key_prefix", sa.String(length=16), nullable=False),
        sa.Column("scopes", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_key")),
        sa.UniqueConstraint("name", name=op.f("uq_api_key_name")),
        sa.UniqueConstraint("key_hash", name=op.f("uq_api_key_key_hash")),
    )
    op.create_table(
        "crm_request",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("closing_id", sa.Uuid(), nullable=False),
        sa.Column("kind", ENUM, nullable=False),
        sa.Column("idempotency_key", sa.String(length=200), nullable=False),
        sa.Column("body", JSON, nullable=True),
        sa.Column("flow_run_id", sa.Uuid(), nullable=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["closing_id"],
            ["closing.id"],
            name=op.f("fk_crm_request_closing_id_closing"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_crm_request")),
        sa.UniqueConstraint("idempotency_key", name=op.f("uq_crm_request_idempotency_key")),
    )
    with op.batch_alter_table("crm_request") as batch_op:
        batch_op.create_index(
            batch_op.f("ix_crm_request_closing_id_received_at"), ["closing_id", "received_at"]
        )


def downgrade() -> None:
    """Drop crm_request and api_key (their indexes go with them)."""
    op.drop_table("crm_request")
    op.drop_table("api_key")
