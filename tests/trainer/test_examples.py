"""Records from the record's export, turned into TRL rows."""

from __future__ import annotations

import pytest

from trainer.examples import DataError, kto_rows, sft_rows
from trainer.result import dataset_hash

USER = {"role": "user", "content": "Ticket: my parcel is late"}


def test_chat_record_becomes_prompt_and_completion():
    record = {"messages": [{"role": "system", "content": "ctx"}, USER, {"role": "assistant", "content": "shipping"}]}
    assert sft_rows([record]) == [
        {
            "prompt": [{"role": "system", "content": "ctx"}, USER],
            "completion": [{"role": "assistant", "content": "shipping"}],
        }
    ]


def test_extra_fields_are_dropped_and_content_parts_joined():
    record = {
        "completion_id": "cmpl-1",
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "a "}, {"type": "text", "text": "b"}], "name": "x"},
            {"role": "assistant", "content": "ok", "refusal": None},
        ],
    }
    assert sft_rows([record]) == [
        {"prompt": [{"role": "user", "content": "a b"}], "completion": [{"role": "assistant", "content": "ok"}]}
    ]


def test_empty_answers_are_dropped():
    assert sft_rows([{"messages": [USER, {"role": "assistant", "content": "  "}]}]) == []


def test_text_completions_stay_text():
    assert sft_rows([{"prompt": "2+2=", "completion": "4"}]) == [{"prompt": "2+2=", "completion": "4"}]
    with pytest.raises(DataError, match="mix"):
        sft_rows([{"prompt": "2+2=", "completion": "4"}, {"messages": [USER, {"role": "assistant", "content": "x"}]}])


def test_a_record_must_end_with_the_answer():
    with pytest.raises(DataError, match="record 0 must end with exactly one assistant message"):
        sft_rows([{"messages": [USER]}])
    with pytest.raises(DataError, match="neither"):
        sft_rows([{"text": "hello"}])


def test_kto_rows_keep_the_label_and_accept_messages():
    rows = kto_rows([{"messages": [USER, {"role": "assistant", "content": "billing"}], "label": False}])
    assert rows == [{"prompt": [USER], "completion": [{"role": "assistant", "content": "billing"}], "label": False}]
    with pytest.raises(DataError, match="boolean 'label'"):
        kto_rows([{"messages": [USER, {"role": "assistant", "content": "x"}], "label": "up"}])


def test_dataset_hash_depends_on_content_and_order_not_key_order():
    a, b = {"x": 1, "y": [1, 2]}, {"y": [1, 2], "x": 1}
    assert dataset_hash([a]) == dataset_hash([b])
    assert dataset_hash([a, {"z": 0}]) != dataset_hash([{"z": 0}, a])
