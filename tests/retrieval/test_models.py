from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine

from retrieval.models import Base


def retrieval_diffs(engine) -> list:
    with engine.connect() as connection:
        diffs = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    return [d for d in diffs if "retrieval_" in repr(d)]  # other parts' tables are not in this metadata


def test_the_migration_creates_exactly_the_tables_the_models_describe(db):
    assert retrieval_diffs(db) == []


def test_the_comparison_would_see_a_missing_table():
    kinds = [d[0] for d in retrieval_diffs(create_engine("sqlite://"))]
    assert kinds.count("add_table") == 3 and kinds.count("add_index") == 3
