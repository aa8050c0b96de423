"""operations: fetch-run history, the admin audit log, counter totals, and the indexes the
console and /metrics count with

Revision ID: 0002_operations
Revises: 0001_initial
"""
from alembic import op
import sqlalchemy as sa
import digest.models


revision = "0002_operations"
down_revision = "0001_initial"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "fetch_runs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("source", sa.String(length=500), nullable=False),
        sa.Column("started_at", digest.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("finished_at", digest.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column("new", sa.Integer(), nullable=False),
        sa.Column("updated", sa.Integer(), nullable=False),
        sa.Column("unchanged", sa.Integer(), nullable=False),
        sa.Column("skipped", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_fetch_runs_source_started", "fetch_runs", ["source", "started_at"], unique=False)
    op.create_table(
        "audit_log",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("at", digest.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("target", sa.String(length=200), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_audit_log_at", "audit_log", ["at"], unique=False)
    op.create_table(
        "metric_totals",
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("labels", sa.String(length=500), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("name", "labels"),
    )
    # Plain CREATE INDEX: no table rewrite on either database, existing rows stay as they are.
    op.create_index("ix_deliveries_edition_status", "deliveries", ["edition", "status"], unique=False)
    op.create_index("ix_deliveries_status_created", "deliveries", ["status", "created_at"], unique=False)
    op.create_index("ix_subscribers_created_at", "subscribers", ["created_at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_subscribers_created_at", table_name="subscribers")
    op.drop_index("ix_deliveries_status_created", table_name="deliveries")
    op.drop_index("ix_deliveries_edition_status", table_name="deliveries")
    op.drop_table("metric_totals")
    op.drop_index("ix_audit_log_at", table_name="audit_log")
    op.drop_table("audit_log")
    op.drop_index("ix_fetch_runs_source_started", table_name="fetch_runs")
    op.drop_table("fetch_runs")
