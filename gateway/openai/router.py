"""Routes of the OpenAI-compatible API."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from gateway.deps import CallerDep, GatewayDep, gateway_of
from gateway.errors import ModelNotFound
from gateway.openai.protocol import Model, ModelList
from gateway.retrieval_service import embedding_model_name
from gateway.state import Gateway

router = APIRouter(prefix="/v1")


# The two hot routes take only the request and authenticate as `get_caller` does: gateway/openai/dispatch.py calls
# them straight, past FastAPI's routing and dependency solving (issue 15: bench/gateway_overhead.py). Declared here
# all the same, for the OpenAPI schema.


@router.post("/chat/completions")
async def chat_completions(request: Request) -> Response:
    gw = gateway_of(request)
    return await gw.completions.complete("chat", request, await gw.keys.verify(request.headers.get("authorization")))


@router.post("/completions")
async def completions(request: Request) -> Response:
    gw = gateway_of(request)
    return await gw.completions.complete(
        "completion", request, await gw.keys.verify(request.headers.get("authorization"))
    )


COMPLETION_ROUTES = {"/v1/chat/completions": chat_completions, "/v1/completions": completions}


@router.get("/models")
async def list_models(caller: CallerDep, gw: GatewayDep) -> ModelList:
    return ModelList(data=visible_models(gw, caller.tenant_id))


@router.get("/models/{model_id:path}")
async def get_model(model_id: str, caller: CallerDep, gw: GatewayDep) -> Model:
    for model in visible_models(gw, caller.tenant_id):
        if model.id == model_id:
            return model
    raise ModelNotFound(model_id)


def visible_models(gw: Gateway, tenant_id: str) -> list[Model]:
    """The base model, then the tenant's aliases that serve something, then its versions, then its fine-tuned models
    (`ft:...`): nothing of others. With retrieval on, the embedding model too (for /v1/embeddings)."""
    catalog = gw.catalog.current
    base = gw.settings.public_model_name
    models = [Model(id=base, created=gw.started_at, owned_by="loraflow")]
    if gw.retrieval is not None:
        models.append(Model(id=embedding_model_name(gw.settings.retrieval), created=gw.started_at, owned_by="loraflow"))
    for alias in catalog.tenant_aliases(tenant_id):  # an alias with nothing promoted yet serves the base model
        serving = alias.production.public_name if alias.production else base
        models.append(Model(id=alias.alias, created=gw.started_at, owned_by=tenant_id, parent=base, root=serving))
    for version in catalog.tenant_versions(tenant_id):
        if version.state != "registered":
            models.append(
                Model(id=version.public_name, created=version.created, owned_by=tenant_id, parent=version.alias)
            )
    for name, version in catalog.tenant_fine_tuned(tenant_id):
        models.append(Model(id=name, created=version.created, owned_by=tenant_id, parent=base))
    return models
