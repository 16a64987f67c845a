"""Fixtures of the retrieval suites: services on a fresh database and var dir, a small corpus with known answers."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine

from gateway.store.db import make_engine, migrate
from retrieval.settings import RetrievalSettings
from retrieval.uploads import Upload

# (file name, text, a question only that file answers). Questions avoid the documents' own words where they can.
CORPUS = [
    (
        "parking.md",
        "# Parking\nStaff parking is in the underground garage on level B2. "
        "Visitors use the open lot beside the main entrance.",
        "Where can employees leave their cars?",
    ),
    (
        "vacation.md",
        "# Holidays\nEvery employee gets 27 days of paid vacation per year; unused days carry over until March.",
        "How many days off per year do I get?",
    ),
    (
        "wifi.txt",
        "The guest wireless network is called Orchard-Guest. Its password is printed on the reception desk.",
        "What is the name of the wifi for visitors?",
    ),
    (
        "expenses.md",
        "# Expenses\nTravel expenses are submitted within 30 days through the Ledger app, with receipts attached.",
        "How do I get reimbursed for a business trip?",
    ),
    (
        "badges.txt",
        "Lost badges must be reported to the security office in room 104 at once. A replacement costs 15 euros.",
        "I lost my access card, what should I do?",
    ),
    (
        "laptops.md",
        "# Hardware\nLaptops are replaced every four years. Ask for a new one through the IT portal.",
        "How often do we get new computers?",
    ),
    (
        "gym.txt",
        "The company gym on the fifth floor is open from 6 am to 10 pm on weekdays.",
        "When can I use the fitness room?",
    ),
    (
        "payroll.md",
        "# Payroll\nSalaries are paid on the 25th of each month by bank transfer.",
        "On which day of the month does my pay arrive?",
    ),
]
KITCHEN = [
    {"text": "The coffee machine is descaled every Monday morning.", "topic": "kitchen"},
    {"text": "Fridges are emptied and cleaned every Friday at 4 pm.", "topic": "kitchen", "metadata": {"owner": "ops"}},
]
KITCHEN_QUESTION = "When is old food thrown out of the refrigerator?"


def corpus_uploads() -> list[Upload]:
    uploads = [Upload(name, text) for name, text, _ in CORPUS]
    uploads.append(Upload("kitchen.jsonl", "\n".join(json.dumps(line) for line in KITCHEN) + "\n"))
    return uploads


def questions() -> list[tuple[str, str]]:
    """(question, name of the document that answers it)."""
    return [(question, name) for name, _, question in CORPUS] + [(KITCHEN_QUESTION, "kitchen.jsonl")]


@pytest.fixture
def settings() -> RetrievalSettings:
    return RetrievalSettings(enabled=True, chunk_size=300, chunk_overlap=40, sync_interval_s=0)


@pytest.fixture
def sqlite_db(tmp_path: Path) -> Iterator[Engine]:
    """A migrated SQLite database (most suites need one database, not both kinds)."""
    engine = make_engine(f"sqlite:///{tmp_path / 'loraflow.db'}")
    migrate(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def make_service(tmp_path: Path, settings: RetrievalSettings, sqlite_db: Engine) -> Iterator[Callable[..., object]]:
    """Build services (a "process" each) on the test's var dir; all are closed at the end."""
    from retrieval.service import RetrievalService

    made: list[RetrievalService] = []

    def make(
        *, settings: RetrievalSettings = settings, engine: Engine = sqlite_db, index_dir: Path | None = None
    ) -> RetrievalService:
        service = RetrievalService(settings, engine, index_dir or tmp_path / "indexes")
        made.append(service)
        return service

    yield make
    for service in made:
        service.close()
