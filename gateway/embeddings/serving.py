"""Serving an embeddings request: check it, resolve its model to the retrieval embedder, encode the vectors."""

from __future__ import annotations

import base64
from typing import TYPE_CHECKING, Any

from gateway.auth import Caller
from gateway.embeddings.protocol import Embedding, EmbeddingList, EmbeddingRequest, EmbeddingUsage
from gateway.errors import BadRequest, ModelNotFound
from gateway.retrieval_service import embedding_model_name

if TYPE_CHECKING:
    import numpy as np  # no import at run time: a gateway without retrieval has no numpy

    from retrieval.service import RetrievalService


async def embed(service: RetrievalService | None, caller: Caller, request: EmbeddingRequest) -> EmbeddingList:
    """One vector per input, in input order. 404 for any model when retrieval is off."""
    name = caller.model_map.get(request.model, request.model)  # `text-embedding-3-small` → ours, if mapped
    if service is None or name not in (embedding_model_name(service.settings), service.settings.embedding_model):
        raise ModelNotFound(request.model)
    texts = _texts(request.input)
    if request.dimensions is not None and request.dimensions != service.embedder.dim:
        raise BadRequest(
            f"`dimensions` cannot be changed for this model; leave it out (it is {service.embedder.dim}).",
            param="dimensions",
        )
    result = await service.embed_texts(texts)
    encoding = request.encoding_format
    data = [Embedding(embedding=_encode(vector, encoding), index=i) for i, vector in enumerate(result.vectors)]
    usage = EmbeddingUsage(prompt_tokens=result.total_tokens, total_tokens=result.total_tokens)
    return EmbeddingList(data=data, model=embedding_model_name(service.settings), usage=usage)


def _texts(value: str | list[Any]) -> list[str]:
    if isinstance(value, str):
        return [value]
    if any(not isinstance(item, str) for item in value):
        raise BadRequest("`input` must be a string or a list of strings (token arrays are not supported).",
                         param="input")  # fmt: skip
    return value


def _encode(vector: np.ndarray, encoding_format: str) -> list[float] | str:
    if encoding_format == "base64":
        return base64.b64encode(vector.astype("<f4").tobytes()).decode("ascii")
    return vector.astype("float32").tolist()
