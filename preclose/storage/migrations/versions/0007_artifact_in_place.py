"""The Prefect artifact each key keeps current, so a new milestone updates it in place.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-30

A closing's artifact got a new version per milestone: a write and two events in Prefect's server
each. Its ID is now kept beside the digest and the artifact is updated in place. Frozen types, as
in 0001: no import of models.tables.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Add published_artifact.artifact_id (empty until the key's next publish creates one)."""
    with op.batch_alter_table("published_artifact") as batch:
        batch.add_column(sa.Column("artifact_id", sa.Uuid(), nullable=True))


def downgrade() -> None:
    """Drop published_artifact.artifact_id."""
    with op.batch_alter_table("published_artifact") as batch:
        batch.drop_column("artifact_id")
