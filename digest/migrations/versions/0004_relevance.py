"""relevance: readers' marks on papers, and their two choices about learning from them

Revision ID: 0004_relevance
Revises: 0003_link_secrets

- feedback: one row per reader and paper, "More like this" (liked) or "Less like this", from an
  email's link or the settings page's "Papers you like"; erased with the reader (cascade).
- subscribers.learn_from_feedback, subscribers.suggest_beyond_topics: both on for every reader,
  old and new, as the settings page says.
- subscribers.feedback_version: bumped on every change of a reader's marks; a reader's model is
  refitted only when it moved.
"""
from alembic import op
import sqlalchemy as sa

import digest.models


revision = "0004_relevance"
down_revision = "0003_link_secrets"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "feedback",
        sa.Column("subscriber_id", sa.Integer(), sa.ForeignKey("subscribers.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("paper_id", sa.String(32), sa.ForeignKey("papers.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("liked", sa.Boolean(), nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("created_at", digest.models.UTCDateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_feedback_paper_id", "feedback", ["paper_id"])
    # ADD COLUMN, not a batch copy: SQLite's copy of the table would drop its AUTOINCREMENT.
    op.add_column("subscribers", sa.Column("learn_from_feedback", sa.Boolean(), nullable=False, server_default=sa.true()))
    op.add_column("subscribers", sa.Column("suggest_beyond_topics", sa.Boolean(), nullable=False, server_default=sa.true()))
    op.add_column("subscribers", sa.Column("feedback_version", sa.Integer(), nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("subscribers", table_kwargs={"sqlite_autoincrement": True}) as batch:
        batch.drop_column("feedback_version")
        batch.drop_column("suggest_beyond_topics")
        batch.drop_column("learn_from_feedback")
    op.drop_index("ix_feedback_paper_id", table_name="feedback")
    op.drop_table("feedback")
