"""Scorers chosen by name from golden-set lines, and the rule against reproducing a rejected answer."""

from __future__ import annotations

import json

import pytest

from trainer.scorers import EvalItem, ScorerError, load_golden, registry, score_item

SCORERS = registry()


def score(output: str, **item) -> float:
    return score_item(EvalItem(input="q", **item), output, SCORERS)


def test_exact_ignores_case_and_whitespace_unless_told_not_to():
    assert score("  Billing \n", expected="billing", scorer="exact") == 1.0
    assert score("Billing", expected="billing", scorer="exact", normalize=False) == 0.0
    assert score("billing ", expected="billing", scorer="exact", normalize=False) == 1.0
    assert score("technical", expected="billing", scorer="exact") == 0.0


def test_contains_one_or_all_of_several():
    assert score("Your refund is on its way", expected="REFUND", scorer="contains") == 1.0
    assert score("Your refund is on its way", expected=["refund", "way"], scorer="contains") == 1.0
    assert score("Your refund is on its way", expected=["refund", "invoice"], scorer="contains") == 0.0


def test_regex_searches_and_honours_anchors():
    assert score("order #12345 shipped", expected=r"#\d{5}\b", scorer="regex") == 1.0
    assert score("order #12345 shipped", expected=r"^#\d{5}$", scorer="regex") == 0.0


def test_json_schema_validity_tolerates_a_code_fence():
    schema = {"type": "object", "required": ["name"], "properties": {"name": {"type": "string"}}}
    assert score('{"name": "Ada"}', expected=schema, scorer="json_schema") == 1.0
    assert score('```json\n{"name": "Ada"}\n```', expected=schema, scorer="json_schema") == 1.0
    assert score('{"name": 3}', expected=schema, scorer="json_schema") == 0.0
    assert score("not json", expected=schema, scorer="json_schema") == 0.0


def test_json_equal_ignores_key_order_and_spacing():
    expected = json.dumps({"name": "Ada", "city": "Oslo"})
    assert score('{"city":"Oslo",  "name":"Ada"}', expected=expected, scorer="json_equal") == 1.0
    assert score('{"city": "Rome", "name": "Ada"}', expected=expected, scorer="json_equal") == 0.0
    assert score('{"city": "Oslo"', expected={"city": "Oslo"}, scorer="json_equal") == 0.0


def test_reproducing_the_rejected_answer_scores_zero_whatever_the_scorer():
    # The scorer alone would give 1: the rejected answer contains the expected word.
    item = {"expected": "refund", "scorer": "contains", "rejected": "No refund for you."}
    assert score("no  REFUND for you.", **item) == 0.0
    assert score("Your refund is on its way.", **item) == 1.0


def test_a_thumbs_down_without_correction_scores_avoiding_the_rejected_answer():
    assert score("billing", scorer="not_rejected", rejected="technical") == 1.0
    assert score("Technical", scorer="not_rejected", rejected="technical") == 0.0


def test_judge_items_need_a_judge():
    item = EvalItem(input="q", expected="a", scorer="judge")
    with pytest.raises(ScorerError, match="no judge model is configured"):
        score_item(item, "a", SCORERS)
    assert score_item(item, "a", registry(judge=lambda output, item: 0.7)) == 0.7


def test_scores_are_clipped_to_zero_one():
    assert score_item(EvalItem(input="q", scorer="odd"), "x", registry(extra={"odd": lambda o, i: 3.0})) == 1.0


def test_items_get_a_stable_id_and_chat_messages():
    a, b = EvalItem(input="hello", expected="hi"), EvalItem(input="hello", expected="hi")
    assert a.id == b.id and len(a.id) == 12
    assert a.messages() == [{"role": "user", "content": "hello"}]


def test_golden_file_selects_scorers_per_line(tmp_path):
    path = tmp_path / "golden.jsonl"
    lines = [
        {"input": "Ticket: charged twice", "expected": "billing", "scorer": "exact"},
        {"id": "g2", "input": [{"role": "user", "content": "x"}], "expected": "^a", "scorer": "regex", "note": "kept"},
        {"input": "y", "expected": {"type": "object"}, "scorer": "json_schema"},
    ]
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n\n")
    items = load_golden(path)
    assert [item.scorer for item in items] == ["exact", "regex", "json_schema"]
    assert all(item.split == "golden" for item in items)
    assert items[1].id == "g2" and items[1].model_extra == {"note": "kept"}


def test_bad_golden_lines_are_all_reported_with_their_numbers():
    lines = [
        json.dumps({"input": "a", "expected": "(", "scorer": "regex"}),
        "not json",
        json.dumps({"input": "b", "expected": "x", "scorer": "bleu"}),
        json.dumps({"input": "c", "expected": {"type": 12}, "scorer": "json_schema"}),
        json.dumps({"input": "d", "expected": "ok"}),
    ]
    with pytest.raises(ScorerError) as error:
        load_golden(lines)
    message = str(error.value)
    assert "line 1: " in message and "bad regular expression" in message
    assert "line 2: " in message
    assert "line 3: unknown scorer 'bleu'" in message
    assert "line 4: " in message and "not a valid JSON schema" in message
    assert "line 5" not in message
