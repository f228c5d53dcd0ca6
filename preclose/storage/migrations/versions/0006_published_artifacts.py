"""What each Prefect artifact key last showed, shared by every process.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30

A closing's plan and timeline artifacts get a new version only when the facts they show changed;
the digest of those facts was kept in each process's memory, so every worker published once more
per closing it touched. Frozen types, as in 0001: no import of models.tables.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Create the published_artifact table."""
    op.create_table(
        "published_artifact",
        sa.Column("key", sa.String(length=100), nullable=False),
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("key"),
    )


def downgrade() -> None:
    """Drop the published_artifact table."""
    op.drop_table("published_artifact")
