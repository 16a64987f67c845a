from sqlalchemy import inspect, text

from gateway.store.db import make_engine, migrate


def test_migrations_apply_twice_and_seed_the_registry_revision(db_url):
    engine = make_engine(db_url)
    migrate(engine)
    migrate(engine)  # idempotent: a restart of the gateway runs it again
    tables = set(inspect(engine).get_table_names())
    assert {"tenants", "api_keys", "adapters", "adapter_versions", "promotions", "registry_revision"} <= tables
    with engine.connect() as connection:
        assert connection.execute(text("SELECT revision FROM registry_revision WHERE id = 1")).scalar_one() == 0
    engine.dispose()


def test_replicas_starting_together_migrate_once(postgres_url):
    import threading

    errors = []

    def start() -> None:
        engine = make_engine(postgres_url)
        try:
            migrate(engine)
        except Exception as exc:  # every replica must come up
            errors.append(exc)
        finally:
            engine.dispose()

    threads = [threading.Thread(target=start) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []


def test_the_migrations_build_exactly_what_the_models_describe(db_url):
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    engine = make_engine(db_url)
    migrate(engine)
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        differences = compare_metadata(context, _all_parts())
    engine.dispose()
    assert [d for d in differences if not _is_alembic_own(d)] == []


def _all_parts():
    """Every part's tables in one MetaData, as the migrations build them into one database."""
    from sqlalchemy import MetaData

    from feedback.models import Base as RecordBase
    from gateway.store.models import Base as RegistryBase
    from retrieval.models import Base as RetrievalBase

    merged = MetaData()
    for base in (RegistryBase, RecordBase, RetrievalBase):
        for table in base.metadata.tables.values():
            table.to_metadata(merged)
    return merged


def _is_alembic_own(difference) -> bool:
    return isinstance(difference, tuple) and difference[0] == "remove_table" and difference[1].name == "alembic_version"


def test_the_migrations_are_one_chain():
    """One head: two migrations written side by side must be put in order before they land."""
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    from gateway.store.db import MIGRATIONS

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    assert len(ScriptDirectory.from_config(config).get_heads()) == 1
