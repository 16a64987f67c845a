"""training: runs (also the per-tenant lock), golden sets, keys that are not recorded

Revision ID: 0003_training
Revises: 0002_record
"""

import sqlalchemy as sa
from alembic import op

revision = "0003_training"
down_revision = "0002_record"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("api_keys") as batch:
        batch.add_column(sa.Column("record", sa.Boolean(), nullable=False, server_default=sa.true()))
    op.create_table(
        "training_runs",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("tenant_id", sa.String(64), nullable=False),
        sa.Column("adapter", sa.String(64), nullable=False),
        sa.Column("trigger", sa.String(16), nullable=False),
        sa.Column("runner", sa.String(200), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("stage", sa.String(32), nullable=False),
        sa.Column("progress", sa.JSON(), nullable=False),
        sa.Column("candidate", sa.String(100), nullable=True),
        sa.Column("reason", sa.String(2000), nullable=False),
        sa.Column("report", sa.JSON(), nullable=False),
        sa.Column("report_markdown", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("lock", sa.String(64), nullable=True),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_training_runs_tenant_id_tenants"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_training_runs")),
        sa.UniqueConstraint("lock", name=op.f("uq_training_runs_lock")),
    )
    op.create_index(op.f("ix_training_runs_tenant_id"), "training_runs", ["tenant_id"])
    op.create_index(op.f("ix_training_runs_status"), "training_runs", ["status"])
    op.create_table(
        "golden_sets",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("tenant_id", sa.String(64), nullable=False),
        sa.Column("alias", sa.String(64), nullable=False),
        sa.Column("items", sa.JSON(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_golden_sets_tenant_id_tenants"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_golden_sets")),
        sa.UniqueConstraint("tenant_id", "alias", name=op.f("uq_golden_sets_tenant_id")),
    )


def downgrade() -> None:
    op.drop_table("golden_sets")
    op.drop_index(op.f("ix_training_runs_status"), table_name="training_runs")
    op.drop_index(op.f("ix_training_runs_tenant_id"), table_name="training_runs")
    op.drop_table("training_runs")
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_column("record")
