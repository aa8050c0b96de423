"""link secrets: every link names its row's secret; ids are never reused

Revision ID: 0003_link_secrets
Revises: 0002_operations

- subscribers.link_secret: 64 random bits per row (16 hex digits), in every token (digest/tokens.py). Existing
  rows get a fresh one here, so the links sent before this revision stop working, except one kind:
- subscribers.legacy_token_version: the row's token_version at this upgrade. An unsubscribe link
  sent before it (payload [id, version, "unsubscribe"]) still unsubscribes while it matches,
  because the law and mail providers expect the unsubscribe link of every email sent to keep
  working; settings, view and confirm links from before answer 400 (the next email has new ones).
- On SQLite, subscribers and deliveries become AUTOINCREMENT tables: SQLite otherwise gives the
  next row the largest id again once that row is deleted, and a deleted subscriber's links then
  pointed at whoever subscribed next. PostgreSQL sequences never reuse ids: nothing to do there.
  (env.py turns SQLite's foreign keys off while tables are copied, or dropping the old table
  would cascade to the topics.)
"""
from alembic import op
import sqlalchemy as sa


revision = "0003_link_secrets"
down_revision = "0002_operations"
branch_labels = None
depends_on = None

FRESH_SECRET = {
    "postgresql": "substr(md5(gen_random_uuid()::text), 1, 16)",  # gen_random_uuid: PostgreSQL 13+
    "sqlite": "lower(hex(randomblob(8)))",
}


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    with op.batch_alter_table("subscribers") as batch_op:
        batch_op.add_column(sa.Column("link_secret", sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column("legacy_token_version", sa.Integer(), nullable=True))
    op.execute(
        f"UPDATE subscribers SET link_secret = {FRESH_SECRET[dialect]}, legacy_token_version = token_version"
    )
    # On SQLite this copies the table (the one way to make it AUTOINCREMENT), keeping every row and id.
    with op.batch_alter_table("subscribers", table_kwargs={"sqlite_autoincrement": True}) as batch_op:
        batch_op.alter_column("link_secret", existing_type=sa.String(length=32), nullable=False)
    if dialect == "sqlite":
        with op.batch_alter_table("deliveries", recreate="always", table_kwargs={"sqlite_autoincrement": True}):
            pass


def downgrade() -> None:
    with op.batch_alter_table("subscribers") as batch_op:
        batch_op.drop_column("legacy_token_version")
        batch_op.drop_column("link_secret")
