"""``GET /v1/models`` and ``GET /v1/models/{id}``: a small fixed catalogue."""

from __future__ import annotations

from typing import Any

from ._wire import JsonOutcome, Outcome

__all__ = ["get_model", "list_models"]

_CREATED = 1_700_000_000
_MODELS = (
    "gpt-4o",
    "gpt-4o-mini",
    "gpt-4.1",
    "gpt-4.1-mini",
    "o4-mini",
    "gpt-3.5-turbo-instruct",
    "text-embedding-3-small",
    "text-embedding-3-large",
)


def _model(model_id: str) -> dict[str, Any]:
    return {"id": model_id, "object": "model", "created": _CREATED, "owned_by": "system"}


def list_models() -> Outcome:
    return JsonOutcome(200, {"object": "list", "data": [_model(m) for m in _MODELS]})


def get_model(model_id: str) -> Outcome:
    # Any id is "available": the simulator answers for every model name it is sent.
    return JsonOutcome(200, _model(model_id))
