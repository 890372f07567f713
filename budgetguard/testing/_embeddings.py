"""``POST /v1/embeddings``: deterministic unit vectors, float or base64, ``dimensions``.

Each vector is seeded by the model and its input, so equal inputs embed equally. Values are
float32, so the float and base64 encodings carry the same numbers. Embeddings do not consume
scripted replies (faults still apply).
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import random
import struct
from typing import Any

from ._wire import JsonOutcome, Outcome, RequestError, Turn, positive_int, require_model

__all__ = ["embeddings"]

_DIMENSIONS = {"text-embedding-3-small": 1536, "text-embedding-3-large": 3072, "text-embedding-ada-002": 1536}
_DEFAULT_DIMENSIONS = 1536
_MAX_INPUTS = 2048


def embeddings(turn: Turn) -> Outcome:
    body = turn.body
    model = require_model(body)
    inputs = _inputs(body.get("input"))
    encoding_format = body.get("encoding_format") or "float"
    if encoding_format not in ("float", "base64"):
        raise RequestError(
            f"Invalid value for 'encoding_format': expected 'float' or 'base64', got {encoding_format!r}.",
            param="encoding_format",
        )
    dimensions = positive_int(body, "dimensions")
    if dimensions is not None and model == "text-embedding-ada-002":
        raise RequestError("This model does not support specifying dimensions.", param="dimensions")
    size = dimensions or _DIMENSIONS.get(model, _DEFAULT_DIMENSIONS)

    prompt_tokens = turn.prompt().tokens
    data = []
    for index, item in enumerate(inputs):
        vector = _vector(model, item, size)
        encoded: Any = (
            base64.b64encode(struct.pack(f"<{size}f", *vector)).decode("ascii")
            if encoding_format == "base64"
            else vector
        )
        data.append({"object": "embedding", "index": index, "embedding": encoded})
    return JsonOutcome(
        200,
        {
            "object": "list",
            "data": data,
            "model": model,
            "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens},
        },
    )


def _inputs(value: Any) -> list[str | list[int]]:
    problem = (
        "'input' must be a non-empty string, an array of strings, a token array or an array of token arrays"
    )
    if isinstance(value, str):
        if not value:
            raise RequestError("'input' cannot be an empty string.", param="input")
        return [value]
    if not isinstance(value, list) or not value or len(value) > _MAX_INPUTS:
        raise RequestError(f"{problem} (at most {_MAX_INPUTS} items)", param="input")
    if all(_is_token(t) for t in value):
        return [value]
    if all(isinstance(s, str) and s for s in value):
        return list(value)
    if all(isinstance(t, list) and t and all(_is_token(x) for x in t) for t in value):
        return list(value)
    raise RequestError(problem, param="input")


def _is_token(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _vector(model: str, item: str | list[int], size: int) -> list[float]:
    seed = hashlib.sha256(json.dumps([model, item]).encode()).digest()
    rng = random.Random(seed)
    raw = [rng.gauss(0.0, 1.0) for _ in range(size)]
    norm = math.sqrt(sum(x * x for x in raw)) or 1.0
    # Round-trip through float32 so the float form equals what base64 decodes to.
    packed = struct.pack(f"<{size}f", *(x / norm for x in raw))
    return list(struct.unpack(f"<{size}f", packed))
