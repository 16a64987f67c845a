"""The migration creates exactly the tables that feedback/models.py declares."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from feedback.models import Base


def test_migration_matches_the_models(db):
    with db.connect() as connection:
        diff = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    # Only the tables of other parts may differ ("remove_table" for tables this metadata does not know).
    ours = {"interactions", "feedback"}
    relevant = [d for d in diff if not (d[0] == "remove_table" and d[1].name not in ours)]
    relevant = [d for d in relevant if not (d[0] == "remove_index" and d[1].table.name not in ours)]
    assert relevant == []
