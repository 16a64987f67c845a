"""safe learning: canaries (a candidate serving a share of its alias's users until the sequential test decides)

Revision ID: 0007_safe_learning
Revises: 0006_fine_tuning
"""

import sqlalchemy as sa
from alembic import op

revision = "0007_safe_learning"
down_revision = "0006_fine_tuning"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "canaries",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("tenant_id", sa.String(64), nullable=False),
        sa.Column("adapter_id", sa.Integer(), nullable=False),
        sa.Column("candidate_version_id", sa.String(32), nullable=False),
        sa.Column("control_version_id", sa.String(32), nullable=True),
        sa.Column("share", sa.Double(), nullable=False),
        sa.Column("policy", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("reason", sa.String(2000), nullable=False),
        sa.Column("decision", sa.JSON(), nullable=False),
        sa.Column("run_id", sa.String(40), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("claimed_by", sa.String(200), nullable=False),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("lock", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_canaries_tenant_id_tenants"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["adapter_id"], ["adapters.id"], name=op.f("fk_canaries_adapter_id_adapters"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_canaries")),
        sa.UniqueConstraint("lock", name=op.f("uq_canaries_lock")),
    )
    op.create_index(op.f("ix_canaries_tenant_id"), "canaries", ["tenant_id"])
    op.create_index(op.f("ix_canaries_adapter_id"), "canaries", ["adapter_id"])
    op.create_index(op.f("ix_canaries_status"), "canaries", ["status"])


def downgrade() -> None:
    op.drop_index(op.f("ix_canaries_status"), table_name="canaries")
    op.drop_index(op.f("ix_canaries_adapter_id"), table_name="canaries")
    op.drop_index(op.f("ix_canaries_tenant_id"), table_name="canaries")
    op.drop_table("canaries")
