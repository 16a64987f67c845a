"""Alembic environment: always run through `gateway.store.db.migrate`, which hands in the connection."""

from alembic import context

from feedback.models import Base as RecordBase
from gateway.store.models import Base as RegistryBase
from retrieval.models import Base as RetrievalBase

target_metadata = [RegistryBase.metadata, RecordBase.metadata, RetrievalBase.metadata]

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=target_metadata,
    render_as_batch=connection.dialect.name == "sqlite",  # SQLite alters tables by copying them
)
with context.begin_transaction():
    context.run_migrations()
