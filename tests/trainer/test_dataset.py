"""The dataset rules, on a real record (SQLite): each rating kind, dedupe, the held-out split, no leak."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from tests.trainer.record_rows import make_record, rated, served
from trainer import dataset, rated_interactions
from trainer.scorers import EvalItem

FRACTION = 0.2
_counter = itertools.count()


def an_id(held_out: bool) -> str:
    """A fresh interaction id that the hash puts on the wanted side of the split."""
    while True:
        candidate = f"chatcmpl-t{next(_counter):06d}"
        if dataset.is_held_out(candidate, FRACTION) == held_out:
            return candidate


@pytest.fixture
def db(tmp_path: Path):
    engine = make_record(tmp_path / "record.db")
    yield engine
    engine.dispose()


def build(db, method="sft", golden=(), alias="support", **options):
    settings = {"scorer": "exact", "held_out_fraction": FRACTION, "max_examples": 1000, "max_held_out": 1000}
    settings.update(options)
    rated = rated_interactions.rated_interactions(db, "acme", alias)
    return dataset.build(rated, method=method, golden=golden, **settings)


def answer_of(example: dict) -> str:
    return example["messages"][-1]["content"]


def test_thumbs_up_trains_on_the_response(db):
    rated(db, served(db, "where is my parcel", "shipping", interaction_id=an_id(False)), "up")
    data = build(db)
    assert [answer_of(e) for e in data.train] == ["shipping"]
    assert data.counts.thumbs_up == 1 and data.counts.train == 1


def test_thumbs_down_with_a_correction_trains_on_the_correction(db):
    rated(db, served(db, "refund me", "shipping", interaction_id=an_id(False)), "down", correction="billing")
    data = build(db)
    assert [answer_of(e) for e in data.train] == ["billing"]
    assert data.counts.corrections == 1 and data.counts.thumbs_down == 1


def test_thumbs_down_without_a_correction_is_not_trained_on_by_sft(db):
    rated(db, served(db, "refund me", "shipping", interaction_id=an_id(False)), "down")
    data = build(db)
    assert data.train == []
    assert data.counts.left_out == {dataset.LEFT_OUT_DISLIKED: 1}


def test_a_correction_wins_over_a_thumbs_up(db):
    rated(db, served(db, "refund me", "billing.", interaction_id=an_id(False)), "up", correction="billing")
    assert [answer_of(e) for e in build(db).train] == ["billing"]


def test_kto_labels_responses_by_their_rating_and_corrections_as_desirable(db):
    rated(db, served(db, "a", "good", interaction_id=an_id(False)), "up")
    rated(db, served(db, "b", "bad", interaction_id=an_id(False)), "down")
    rated(db, served(db, "c", "wrong", interaction_id=an_id(False)), "down", correction="right")
    rows = build(db, method="kto").train
    labelled = {(row["prompt"][-1]["content"], row["completion"][0]["content"], row["label"]) for row in rows}
    assert labelled == {("a", "good", True), ("b", "bad", False), ("c", "wrong", False), ("c", "right", True)}


def test_ratings_of_several_users_are_pooled_by_majority(db):
    tie = served(db, "tie", "maybe", interaction_id=an_id(False))
    rated(db, tie, "up", user="u1")
    rated(db, tie, "down", user="u2")
    liked = served(db, "liked", "yes", interaction_id=an_id(False))
    for user, rating in (("u1", "up"), ("u2", "up"), ("u3", "down")):
        rated(db, liked, rating, user=user)
    data = build(db)
    assert [answer_of(e) for e in data.train] == ["yes"]
    assert data.counts.left_out == {dataset.LEFT_OUT_TIE: 1}


def test_retrieved_context_stays_in_the_prompt_exactly_as_served(db):
    served_messages = [
        {"role": "system", "content": "Context: [1] the warranty lasts two years."},
        {"role": "user", "content": "how long is the warranty"},
    ]
    rated(db, served(db, served_messages, "two years", interaction_id=an_id(False)), "up")
    (example,) = build(db).train
    assert example["messages"][:-1] == served_messages


def test_duplicates_are_removed(db):
    for _ in range(3):
        rated(db, served(db, "where is my parcel", "shipping", interaction_id=an_id(False)), "up")
    data = build(db)
    assert len(data.train) == 1 and data.counts.duplicates_removed == 2


def test_only_the_alias_interactions_are_used(db):
    rated(db, served(db, "asked for the alias", "a", model="support", version=None, interaction_id=an_id(False)), "up")
    rated(db, served(db, "pinned", "b", model="support@2", version="support@2", interaction_id=an_id(False)), "up")
    mapped = served(
        db, "mapped", "c", model="gpt-4o-mini", version="support@1", alias="support", interaction_id=an_id(False)
    )
    rated(db, mapped, "up")
    # A key's model map to the alias while nothing is promoted yet: the base model served it, for the alias.
    early = served(
        db, "mapped early", "f", model="gpt-4o-mini", version=None, alias="support", interaction_id=an_id(False)
    )
    rated(db, early, "up")
    rated(db, served(db, "other alias", "d", model="billing", version="billing@1", interaction_id=an_id(False)), "up")
    rated(db, served(db, "similar name", "e", model="support2", version=None, interaction_id=an_id(False)), "up")
    base = served(
        db, "the base model by name", "g", model="tiny-random", version=None, alias=None, interaction_id=an_id(False)
    )
    rated(db, base, "up")
    assert sorted(answer_of(e) for e in build(db).train) == ["a", "b", "c", "f"]


def test_the_split_is_deterministic_by_interaction_id():
    ids = [f"chatcmpl-{i}" for i in range(2000)]
    first = [dataset.is_held_out(i, FRACTION) for i in ids]
    assert first == [dataset.is_held_out(i, FRACTION) for i in ids]
    assert 0.17 < sum(first) / len(ids) < 0.23
    # A larger fraction only adds items to the held-out side: none moves back into training.
    assert all(dataset.is_held_out(i, 0.3) for i, held in zip(ids, first, strict=True) if held)


def test_held_out_interactions_are_never_trained_on(db):
    for n in range(60):
        rated(db, served(db, f"ticket {n}", f"label {n}"), "up" if n % 3 else "down", correction=None)
    data = build(db)
    held_ids = {item.id for item in data.held_out}
    trained_prompts = {e["messages"][0]["content"] for e in data.train}
    assert held_ids and trained_prompts
    assert all(dataset.is_held_out(i, FRACTION) for i in held_ids)
    assert not {item.messages()[0]["content"] for item in data.held_out} & trained_prompts


def test_a_training_example_with_a_held_out_prompt_is_dropped(db):
    rated(db, served(db, "same ticket", "billing", interaction_id=an_id(True)), "up")
    rated(db, served(db, "same ticket", "billing", interaction_id=an_id(False)), "up")
    data = build(db)
    assert len(data.held_out) == 1 and data.train == []
    assert data.counts.left_out == {dataset.LEFT_OUT_HELD_OUT_PROMPT: 1}


def test_a_training_example_with_a_golden_prompt_is_dropped(db):
    rated(db, served(db, "golden ticket", "billing", interaction_id=an_id(False)), "up")
    golden = [EvalItem(input="golden ticket", expected="billing", split="golden")]
    data = build(db, golden=golden)
    assert data.train == [] and data.golden == golden
    assert data.counts.left_out == {dataset.LEFT_OUT_GOLDEN_PROMPT: 1}


def test_held_out_items_carry_the_expected_and_the_rejected_answer(db):
    liked = served(db, "liked", "shipping", interaction_id=an_id(True))
    rated(db, liked, "up")
    corrected = served(db, "corrected", "shipping", interaction_id=an_id(True))
    rated(db, corrected, "down", correction="billing")
    disliked = served(db, "disliked", "gibberish", interaction_id=an_id(True))
    rated(db, disliked, "down")
    items = {item.id: item for item in build(db, scorer="exact").held_out}
    assert (items[liked].expected, items[liked].rejected, items[liked].scorer) == ("shipping", None, "exact")
    assert (items[corrected].expected, items[corrected].rejected) == ("billing", "shipping")
    assert (items[disliked].scorer, items[disliked].rejected) == ("not_rejected", "gibberish")
    assert all(item.split == "held_out" for item in items.values())


def test_newest_data_is_kept_first_within_the_limits(db):
    for n in range(10):
        rated(db, served(db, f"ticket {n}", f"answer {n}", interaction_id=an_id(False)), "up")
    data = build(db, max_examples=3)
    assert [answer_of(e) for e in data.train] == ["answer 9", "answer 8", "answer 7"]
    assert data.counts.left_out == {dataset.LEFT_OUT_OVER_MAX: 7}


def test_text_completions_train_as_plain_text(db):
    text = served(db, "The capital of France is", " Paris", endpoint="completion", interaction_id=an_id(False))
    rated(db, text, "up")
    data = build(db)
    assert data.kind == "text" and data.train == [{"prompt": "The capital of France is", "completion": " Paris"}]


def test_the_dataset_hash_follows_the_training_examples(db):
    rated(db, served(db, "a", "b", interaction_id=an_id(False)), "up")
    first = build(db).hash
    assert first == build(db).hash and first.startswith("sha256:")
    rated(db, served(db, "c", "d", interaction_id=an_id(False)), "up")
    assert build(db).hash != first


def test_new_ratings_are_counted_since_a_time(db):
    from datetime import UTC, datetime, timedelta

    rated(db, served(db, "a", "b"), "up")
    rated(db, served(db, "c", "d"), "down")
    assert rated_interactions.count_ratings(db, "acme", "support") == 2
    assert rated_interactions.count_ratings(db, "acme", "support", datetime.now(UTC) + timedelta(hours=1)) == 0
    assert rated_interactions.count_ratings(db, "acme", "support", datetime.now(UTC) - timedelta(hours=1)) == 2
    assert rated_interactions.count_ratings(db, "acme", "billing") == 0
