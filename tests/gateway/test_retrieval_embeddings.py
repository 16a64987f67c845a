"""`POST /v1/embeddings` with the official client: float and base64 agree, the order and usage are right, paraphrases
are closer than unrelated texts, and what we do not support is a clear 400 (token arrays, `dimensions`)."""

from __future__ import annotations

import base64
from collections.abc import Iterator

import numpy as np
import openai
import pytest

from tests.gateway.conftest import Env
from tests.gateway.retrieval_support import (
    EMBEDDING_MODEL,
    bearer,
    open_env,
    sdk,
)

TEXTS = ["How do I reset my password?", "I forgot my password, how can I change it?", "The cat sat on the warm mat."]


@pytest.fixture(scope="module")
def rag(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    """One gateway with retrieval on for the module (the embedding model loads once per process anyway)."""
    with open_env(tmp_path_factory.mktemp("rag")) as env:
        yield env


@pytest.fixture(scope="module")
def key(rag) -> str:
    return rag.tenant_with_key("e-acme", model_map={"text-embedding-3-small": EMBEDDING_MODEL})


def test_float_vectors_in_input_order_with_usage(rag, key):
    reply = sdk(rag, key).embeddings.create(model=EMBEDDING_MODEL, input=TEXTS, encoding_format="float")
    assert reply.object == "list" and reply.model == EMBEDDING_MODEL
    assert [item.index for item in reply.data] == [0, 1, 2]
    vectors = np.array([item.embedding for item in reply.data])
    assert vectors.shape == (3, 384)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-4)
    assert reply.usage.prompt_tokens == reply.usage.total_tokens > 3 * 5
    alone = sdk(rag, key).embeddings.create(model=EMBEDDING_MODEL, input=TEXTS[2], encoding_format="float")
    assert np.allclose(alone.data[0].embedding, vectors[2], atol=1e-5)


def test_paraphrases_are_closer_than_unrelated_texts(rag, key):
    vectors = np.array([d.embedding for d in sdk(rag, key).embeddings.create(model=EMBEDDING_MODEL, input=TEXTS).data])
    assert vectors[0] @ vectors[1] > 0.6 > vectors[0] @ vectors[2]


def test_base64_is_little_endian_float32_of_the_same_vectors(rag, key):
    as_floats = sdk(rag, key).embeddings.create(model=EMBEDDING_MODEL, input=TEXTS, encoding_format="float")
    raw = rag.client.post(
        "/v1/embeddings", headers=bearer(key),
        json={"model": EMBEDDING_MODEL, "input": TEXTS, "encoding_format": "base64"},
    ).json()  # fmt: skip
    for item, expected in zip(raw["data"], as_floats.data, strict=True):
        decoded = np.frombuffer(base64.b64decode(item["embedding"]), dtype="<f4")
        assert np.array_equal(decoded, np.array(expected.embedding, dtype=np.float32))
    # The SDK asks for base64 when no format is given, and decodes it itself.
    default = sdk(rag, key).embeddings.create(model=EMBEDDING_MODEL, input=TEXTS)
    assert np.allclose([d.embedding for d in default.data], [d.embedding for d in as_floats.data], atol=0)


def test_the_models_list_names_the_embedding_model_and_a_key_may_map_a_name_to_it(rag, key):
    client = sdk(rag, key)
    assert EMBEDDING_MODEL in {m.id for m in client.models.list()}
    assert client.models.retrieve(EMBEDDING_MODEL).owned_by == "loraflow"
    reply = client.embeddings.create(model="text-embedding-3-small", input="hello")
    assert reply.model == EMBEDDING_MODEL and len(reply.data[0].embedding) == 384


def test_native_dimensions_are_accepted_others_refused(rag, key):
    client = sdk(rag, key)
    assert len(client.embeddings.create(model=EMBEDDING_MODEL, input="hi", dimensions=384).data[0].embedding) == 384
    with pytest.raises(openai.BadRequestError) as caught:
        client.embeddings.create(model=EMBEDDING_MODEL, input="hi", dimensions=128)
    assert caught.value.body["param"] == "dimensions"


@pytest.mark.parametrize("bad_input", [[1, 2, 3], [[1, 2], [3, 4]], [], [""], "  ", ["ok", 3]])
def test_token_arrays_and_empty_input_are_400(rag, key, bad_input):
    with pytest.raises(openai.BadRequestError) as caught:
        sdk(rag, key).embeddings.create(model=EMBEDDING_MODEL, input=bad_input)
    assert caught.value.body["param"] == "input" and caught.value.body["type"] == "invalid_request_error"


def test_too_many_inputs_are_400(rag, key):
    limit = rag.settings.retrieval.max_embedding_inputs
    with pytest.raises(openai.BadRequestError):
        sdk(rag, key).embeddings.create(model=EMBEDDING_MODEL, input=["x"] * (limit + 1))


def test_an_unknown_model_is_404_model_not_found(rag, key):
    for model in ("text-embedding-3-large", "tiny-random", ""):
        with pytest.raises(openai.NotFoundError) as caught:
            sdk(rag, key).embeddings.create(model=model, input="hello")
        assert caught.value.body["code"] == "model_not_found"


def test_a_key_is_needed(rag):
    response = rag.client.post("/v1/embeddings", json={"model": EMBEDDING_MODEL, "input": "hello"})
    assert response.status_code == 401 and response.json()["error"]["code"] == "invalid_api_key"
