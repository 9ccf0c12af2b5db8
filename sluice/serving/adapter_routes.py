"""vLLM's LoRA endpoints, over the built-in engine: ``POST /v1/load_lora_adapter``
``{"lora_name", "lora_path"}`` and ``POST /v1/unload_lora_adapter`` ``{"lora_name"}``, behind the
API keys like ``/admin/reload`` (the engine server binds loopback and has none, like vLLM).

As in vLLM: success is 200 with a plain-text ``Success: …`` line; a missing field or a name
already loaded is 400; unloading a name that is not loaded is 404. A loaded name is then a valid
request ``model`` (listed by ``GET /v1/models`` with the base as its ``parent``), until it is
unloaded: the adapter leaves the model once the requests already using it have finished.
At most ``serving.max_adapters`` (``--max-loras``) are loaded at once: more is 400.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel, ConfigDict, Field

from sluice.serving.adapters import Target
from sluice.serving.api import ApiError, read_body
from sluice.serving.routes import State, authorize
from sluice.serving.state import ServingState

API_GROUP = "api"  # ServedModels group of the names loaded through these endpoints

adapter_routes = APIRouter(dependencies=[Depends(authorize)])


class _LoraBody(BaseModel):
    model_config = ConfigDict(extra="ignore")  # vLLM's load_inplace and others: accepted, not used


class LoadLoraRequest(_LoraBody):
    lora_name: str = Field("", max_length=200)
    lora_path: str = ""


class UnloadLoraRequest(_LoraBody):
    lora_name: str = ""


@adapter_routes.post("/v1/load_lora_adapter")
async def load_lora_adapter(request: Request, state: State) -> PlainTextResponse:
    body = await read_body(request, LoadLoraRequest, state.config.serving.max_body_bytes)
    if not body.lora_name or not body.lora_path:
        raise ApiError(400, "Both 'lora_name' and 'lora_path' must be provided.", code="invalid_value",
                       param="lora_name" if not body.lora_name else "lora_path")
    if body.lora_name in state.served.names():
        raise ApiError(400, f"The lora adapter '{body.lora_name}' has already been loaded.", param="lora_name",
                       code="lora_already_loaded")
    path = Path(body.lora_path).expanduser()
    try:
        adapter = await asyncio.to_thread(state.served.load_adapter, path)
    except ApiError:
        raise
    except Exception as error:  # PEFT refused it: another architecture, unreadable weights
        raise ApiError(400, f"cannot load the LoRA adapter at {str(path)!r}: {type(error).__name__}: {error}",
                       param="lora_path", code="invalid_value") from None
    base = state.served.base_name or state.model_name
    target = Target(version=body.lora_name, root=str(path), adapter=adapter, parent=base,
                    model_version=state.engine.version or "")
    if not await asyncio.to_thread(state.served.route_name, API_GROUP, body.lora_name, target):
        raise ApiError(400, f"The lora adapter '{body.lora_name}' has already been loaded.", param="lora_name",
                       code="lora_already_loaded")  # by a request that finished loading first
    return PlainTextResponse(f"Success: LoRA adapter '{body.lora_name}' added successfully.")


@adapter_routes.post("/v1/unload_lora_adapter")
async def unload_lora_adapter(request: Request, state: State) -> PlainTextResponse:
    body = await read_body(request, UnloadLoraRequest, state.config.serving.max_body_bytes)
    if not body.lora_name:
        raise ApiError(400, "'lora_name' must be provided.", param="lora_name", code="missing_required_parameter")
    # the adapter goes once no request uses it
    if not await asyncio.to_thread(state.served.route_name, API_GROUP, body.lora_name, None):
        raise ApiError(404, f"The lora adapter '{body.lora_name}' cannot be found.", param="lora_name",
                       code="lora_not_found")
    return PlainTextResponse(f"Success: LoRA adapter '{body.lora_name}' removed successfully.")


def model_cards(state: ServingState) -> list[dict[str, Any]]:
    """``GET /v1/models``'s entries: each name a request may use (URI forms left out), with vLLM's
    ``parent`` (the base of an adapter, else null) and the version that answers."""
    cards = []
    context = state.engine.model.context_length if state.engine.model else None
    for name, target in sorted(state.served.names().items(), key=lambda item: (item[1].parent is not None,
                                                                                 item[0])):
        if name.startswith("models:/"):
            continue
        cards.append({"id": name, "object": "model", "created": int(state.started), "owned_by": "sluicegate",
                      "root": target.root, "parent": target.parent, "max_model_len": context,
                      "version": target.version})
    return cards
