"""The record: every interaction the gateway serves and every rating it gets (SQLAlchemy: SQLite | PostgreSQL).

Imports neither `gateway` nor `trainer`.

    settings.py   RecordSettings, nested in the gateway's settings as `record`
    models.py     the `interactions` and `feedback` tables (migration: gateway/migrations/versions/0002_record.py)
    record.py     Interaction, the row the gateway hands over for each completion
    writer.py     InteractionWriter: batched, off the request path; spill and back-pressure (bulk.py, spill.py)
    lookup.py     waiting for a just-served interaction before rating it
    ratings.py    record, get and list feedback
    tokens.py     signed feedback tokens for browser widgets
    export.py     JSONL datasets: chat and KTO
    stats.py      thumbs-up rate per adapter version, with a Wilson interval
    privacy.py    forget an end user; purge past a retention period
    errors.py     the exception tree
"""
