"""The judge scorer against a fake OpenAI-compatible server (an `httpx.MockTransport`)."""

from __future__ import annotations

import json

import httpx
import pytest

from trainer.judge import JudgeScorer, parse_verdict
from trainer.scorers import EvalItem, ScorerError, registry, score_item


def fake_judge(*replies: str) -> tuple[httpx.Client, list[dict]]:
    """An HTTP client whose server answers chat completions with `replies`, in turn; it keeps the requests."""
    requests: list[dict] = []

    def handle(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/v1/chat/completions"
        requests.append({"auth": request.headers["authorization"], **json.loads(request.content)})
        content = replies[min(len(requests), len(replies)) - 1]
        return httpx.Response(
            200,
            json={
                "id": f"chatcmpl-{len(requests)}",
                "object": "chat.completion",
                "created": 0,
                "model": "judge",
                "choices": [
                    {"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}
                ],
            },
        )

    return httpx.Client(transport=httpx.MockTransport(handle)), requests


ITEM = EvalItem(input="Where is my parcel?", expected="It ships tomorrow.", scorer="judge", criteria="Be polite.")


def test_judge_sends_the_item_and_reads_the_verdict():
    client, requests = fake_judge("The answer matches the reference.\nVERDICT: 1")
    judge = JudgeScorer("http://judge.local/v1", "judge-model", api_key="k", http_client=client)

    assert score_item(ITEM, "It ships tomorrow!", registry(judge=judge)) == 1.0
    sent = requests[0]
    assert sent["model"] == "judge-model" and sent["temperature"] == 0.0 and sent["auth"] == "Bearer k"
    prompt = sent["messages"][-1]["content"]
    assert "Where is my parcel?" in prompt and "It ships tomorrow." in prompt and "Be polite." in prompt
    assert "It ships tomorrow!" in prompt


def test_ten_point_scale_is_scaled_to_one():
    client, _ = fake_judge("Mostly right. VERDICT: 7")
    assert JudgeScorer("http://j/v1", "m", scale="ten", http_client=client)("x", ITEM) == 0.7


def test_a_reply_without_verdict_is_asked_again_then_refused():
    client, requests = fake_judge("I think it is fine", "VERDICT: 0")
    assert JudgeScorer("http://j/v1", "m", http_client=client)("x", ITEM) == 0.0
    assert len(requests) == 2

    client, requests = fake_judge("no idea", "still thinking")
    with pytest.raises(ScorerError, match="no verdict in 2 replies"):
        JudgeScorer("http://j/v1", "m", http_client=client)("x", ITEM)


@pytest.mark.parametrize(
    ("reply", "scale", "verdict"),
    [
        ("VERDICT: 1", "binary", 1.0),
        ("verdict = 0", "binary", 0.0),
        ("**Verdict:** 8", "ten", 0.8),
        ("Score 3 at first... on reflection VERDICT: 9", "ten", 0.9),
        ("1", "binary", 1.0),
        (" 6/10. ", "ten", 0.6),
        ("Yes.", "binary", 1.0),
        ("Incorrect", "binary", 0.0),
        ("not correct", "binary", None),
        ("VERDICT: 12", "ten", None),
        ("VERDICT: 3", "binary", None),
        ("The answer mentions 3 items", "ten", None),
        ("", "binary", None),
    ],
)
def test_verdicts_are_parsed_robustly(reply, scale, verdict):
    assert parse_verdict(reply, scale) == verdict
