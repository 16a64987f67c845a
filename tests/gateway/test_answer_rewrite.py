"""A whole answer is relayed as the engine wrote it, with the client's id and model put in its place."""

from __future__ import annotations

import json

from gateway.openai.streaming import loads, rewrite_answer

COMPACT = (
    b'{"id":"chatcmpl-up1","object":"chat.completion","created":1,"model":"lf-0a1b",'
    b'"choices":[{"index":0,"message":{"role":"assistant","content":"h\xc3\xa9"}}],"usage":{"total_tokens":3}}'
)


def test_the_engines_bytes_are_kept_and_only_id_and_model_change():
    body = rewrite_answer(COMPACT, loads(COMPACT), "chatcmpl-ours", "support@2", {})
    assert body == COMPACT.replace(b"chatcmpl-up1", b"chatcmpl-ours").replace(b"lf-0a1b", b"support@2")


def test_extension_members_go_at_the_end():
    body = rewrite_answer(COMPACT, loads(COMPACT), "chatcmpl-ours", "support@2", {"retrieval": {"sources": [1]}})
    data = json.loads(body)
    assert list(data)[-1] == "retrieval" and data["retrieval"] == {"sources": [1]}
    assert (data["id"], data["model"]) == ("chatcmpl-ours", "support@2")


def test_json_laid_out_otherwise_is_parsed_and_written_again():
    spaced = json.dumps(json.loads(COMPACT), indent=2).encode()
    data = json.loads(rewrite_answer(spaced, loads(spaced), "chatcmpl-ours", "support@2", {}))
    assert (data["id"], data["model"], data["choices"][0]["message"]["content"]) == ("chatcmpl-ours", "support@2", "hé")


def test_what_orjson_refuses_is_read_by_the_standard_library():
    assert loads(b'{"logprob":-Infinity,"text":"\\ud800"}') == {"logprob": float("-inf"), "text": "\ud800"}
