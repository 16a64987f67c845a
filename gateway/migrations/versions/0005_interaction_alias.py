"""record: the alias that served each interaction, whatever name the request used

Revision ID: 0005_interaction_alias
Revises: 0004_retrieval
"""

import sqlalchemy as sa
from alembic import op

revision = "0005_interaction_alias"
down_revision = "0004_retrieval"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("interactions") as batch:
        batch.add_column(sa.Column("alias", sa.String(200), nullable=True))
    op.create_index("ix_interactions_tenant_alias", "interactions", ["tenant_id", "alias"])


def downgrade() -> None:
    op.drop_index("ix_interactions_tenant_alias", table_name="interactions")
    with op.batch_alter_table("interactions") as batch:
        batch.drop_column("alias")
