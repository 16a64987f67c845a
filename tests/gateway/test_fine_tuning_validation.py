"""Checking fine-tuning files as OpenAI does: every problem names its line."""

from __future__ import annotations

import json

import pytest

from gateway.fine_tuning.validation import InvalidFile, check_file, lines_of
from tests.gateway.fine_tuning_support import chat_line, jsonl, preference_line

GOOD = chat_line()
USER = {"role": "user", "content": "hi"}


def check(lines: list, method: str = "supervised", min_examples: int = 1):
    return check_file([jsonl(lines)], method, min_examples)  # type: ignore[arg-type]


def test_a_chat_file_with_weights_tools_and_tool_calls_is_valid():
    tool = {"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}
    call = {"id": "c1", "type": "function", "function": {"name": "lookup", "arguments": '{"q": 1}'}}
    lines = [
        GOOD,
        {"messages": [{"role": "system", "content": "be brief"}, USER,
                      {"role": "assistant", "content": "draft", "weight": 0}, USER,
                      {"role": "assistant", "content": [{"type": "text", "text": "final"}], "weight": 1}]},
        {"messages": [USER, {"role": "assistant", "content": None, "tool_calls": [call]},
                      {"role": "tool", "tool_call_id": "c1", "content": "42"}, {"role": "assistant", "content": "42"}],
         "tools": [tool], "parallel_tool_calls": False},
    ]  # fmt: skip

    checked = check([*lines, ""])  # a blank last line is no example

    assert (checked.format, checked.examples) == ("chat", 3)


def test_the_older_completion_format_is_valid_for_supervised_jobs():
    assert check([{"prompt": "2+2=", "completion": "4"}] * 2).format == "completion"


def test_a_preference_file_is_valid_for_dpo_jobs():
    checked = check([preference_line(), preference_line("bye")], "dpo")
    assert (checked.format, checked.examples) == ("preference", 2)


@pytest.mark.parametrize(
    ("bad", "problem"),
    [
        ("{not json", "line 2: it is not valid JSON"),
        ('["a list"]', "line 2: it is not a JSON object"),
        ({"text": "hello"}, "line 2: it has no `messages`"),
        ({"messages": []}, "line 2: `messages` must be a non-empty list"),
        ({"messages": [{"content": "hi"}]}, "line 2: message 1 has no `role`"),
        ({"messages": [{"role": "robot", "content": "hi"}]}, "line 2: message 1 has an unknown role 'robot'"),
        ({"messages": [USER, {"role": "assistant"}]}, "line 2: message 2 has no `content`"),
        ({"messages": [USER]}, "line 2: it has no assistant message"),
        ({"messages": [USER, {"role": "assistant", "content": "a", "weight": 2}]}, "`weight` must be 0 or 1"),
        ({"messages": [{**USER, "weight": 1}, {"role": "assistant", "content": "a"}]}, "only allowed on assistant"),
        ({"messages": [USER, {"role": "assistant", "content": "a", "weight": 0}]}, "has weight 0: there is nothing"),
        ({**GOOD, "tools": {"name": "x"}}, "line 2: `tools` must be a list"),
        ({**GOOD, "tools": [{"type": "function"}]}, "needs a `function` with a `name`"),
        ({"messages": [USER, {"role": "assistant", "content": [{"type": "image_url"}]}]}, "only text content parts"),
        ({"prompt": "2+2=", "completion": 4}, "`prompt` and `completion` must both be strings"),
        (preference_line(), "line 2: it is in the preference format"),
    ],
)  # fmt: skip
def test_a_bad_line_is_named_with_its_problem(bad, problem: str):
    with pytest.raises(InvalidFile) as invalid:
        check([GOOD, bad, GOOD])
    assert problem in invalid.value.message and invalid.value.line == 2


def test_a_dpo_job_needs_the_preference_format_and_checks_its_outputs():
    with pytest.raises(InvalidFile, match="line 1: a `dpo` job needs the preference format"):
        check([GOOD], "dpo")
    two = {**preference_line(), "preferred_output": [{"role": "assistant", "content": "a"}] * 2}
    with pytest.raises(InvalidFile, match="line 2: `preferred_output` must be a list of one assistant message"):
        check([preference_line(), two], "dpo")
    user = {**preference_line(), "non_preferred_output": [USER]}
    with pytest.raises(InvalidFile, match="line 1: `non_preferred_output` must be an assistant message"):
        check([user], "dpo")


def test_up_to_five_problems_are_named_at_once():
    with pytest.raises(InvalidFile) as invalid:
        check(["{"] * 8)
    assert invalid.value.message.count("not valid JSON") == 5 and "line 5:" in invalid.value.message


def test_one_file_holds_one_format():
    with pytest.raises(InvalidFile, match="line 2: it is in the completion format, but line 1 is in the chat format"):
        check([GOOD, {"prompt": "a", "completion": "b"}])


def test_a_file_with_too_few_examples_is_refused():
    with pytest.raises(InvalidFile, match="The file has 3 examples; a job needs at least 10"):
        check([GOOD] * 3, min_examples=10)


def test_lines_are_found_across_chunks_and_line_ends():
    data = jsonl([GOOD, GOOD]).replace(b"\n", b"\r\n")
    chunks = [data[i : i + 7] for i in range(0, len(data), 7)]
    assert [json.loads(line) for line in lines_of(chunks)] == [GOOD, GOOD]
    assert check_file(chunks, "supervised", 2).examples == 2


def test_text_that_is_not_utf8_is_named():
    with pytest.raises(InvalidFile, match="line 1: it is not UTF-8"):
        check_file([b'{"messages": "\xff"}\n'], "supervised", 1)
