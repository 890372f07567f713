"""A minimal valid instance of a JSON schema, for structured-output default replies.

Strings are ``"x"`` (or a value of their ``format``), numbers 0 (moved into their bounds),
booleans false, arrays as short as allowed, objects with every declared property. ``$ref``
into ``$defs`` / ``definitions`` is followed; recursion stops at ``null`` or an empty array
where the schema allows one. This covers what pydantic and the OpenAI SDK's ``.parse()``
helpers emit; it is not a general JSON-schema solver.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["minimal_instance"]

_FORMATS = {
    "date-time": "1970-01-01T00:00:00Z",
    "date": "1970-01-01",
    "time": "00:00:00",
    "duration": "P0D",
    "email": "x@example.com",
    "uri": "https://example.com",
    "hostname": "example.com",
    "ipv4": "127.0.0.1",
    "ipv6": "::1",
    "uuid": "00000000-0000-0000-0000-000000000000",
}
# Past this depth anyOf prefers null, so self-referencing models terminate.
_PREFER_NULL_DEPTH = 6
_MAX_DEPTH = 64


def minimal_instance(schema: Mapping[str, Any]) -> Any:
    """A small value that validates against ``schema``."""
    return _instance(schema, schema, 0)


def _instance(schema: Mapping[str, Any], root: Mapping[str, Any], depth: int) -> Any:
    if depth > _MAX_DEPTH:
        raise ValueError("the JSON schema recurses without a way out (no optional or array branch)")
    if "$ref" in schema:
        return _instance(_resolve(schema["$ref"], root), root, depth + 1)
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    for key in ("anyOf", "oneOf"):
        if schema.get(key):
            return _instance(_choose(schema[key], root, depth), root, depth + 1)
    if schema.get("allOf"):
        parts = [_instance(part, root, depth + 1) for part in schema["allOf"]]
        if all(isinstance(part, dict) for part in parts):
            return {k: v for part in parts for k, v in part.items()}
        return parts[0]
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind is None:
        kind = "object" if "properties" in schema else "string"
    if kind == "object":
        properties: Mapping[str, Any] = schema.get("properties", {})
        return {name: _instance(sub, root, depth + 1) for name, sub in properties.items()}
    if kind == "array":
        prefix = [_instance(item, root, depth + 1) for item in schema.get("prefixItems", [])]
        missing = max(0, int(schema.get("minItems", 0)) - len(prefix))
        item_schema = schema.get("items", {})
        return prefix + [_instance(item_schema, root, depth + 1) for _ in range(missing)]
    if kind == "string":
        if schema.get("format") in _FORMATS:
            return _FORMATS[schema["format"]]
        return "x" * max(1, int(schema.get("minLength", 1)))
    if kind in ("integer", "number"):
        return _number(schema)
    if kind == "boolean":
        return False
    if kind == "null":
        return None
    raise ValueError(f"unsupported JSON schema type {kind!r}")


def _number(schema: Mapping[str, Any]) -> int | float:
    value: int | float = 0
    if "minimum" in schema and value < schema["minimum"]:
        value = schema["minimum"]
    if "exclusiveMinimum" in schema and value <= schema["exclusiveMinimum"]:
        value = schema["exclusiveMinimum"] + 1
    if "maximum" in schema and value > schema["maximum"]:
        value = schema["maximum"]
    if "exclusiveMaximum" in schema and value >= schema["exclusiveMaximum"]:
        value = schema["exclusiveMaximum"] - 1
    return int(value) if schema.get("type") == "integer" else value


def _choose(options: list[Mapping[str, Any]], root: Mapping[str, Any], depth: int) -> Mapping[str, Any]:
    is_null = [_resolve_all(option, root).get("type") == "null" for option in options]
    if depth >= _PREFER_NULL_DEPTH and any(is_null):
        return options[is_null.index(True)]
    return next((o for o, null in zip(options, is_null, strict=True) if not null), options[0])


def _resolve_all(schema: Mapping[str, Any], root: Mapping[str, Any]) -> Mapping[str, Any]:
    seen = 0
    while "$ref" in schema and seen < _MAX_DEPTH:
        schema = _resolve(schema["$ref"], root)
        seen += 1
    return schema


def _resolve(ref: str, root: Mapping[str, Any]) -> Mapping[str, Any]:
    if not ref.startswith("#"):
        raise ValueError(f"only local JSON-schema references are supported, not {ref!r}")
    node: Any = root
    for raw in ref[1:].split("/")[1:]:
        part = raw.replace("~1", "/").replace("~0", "~")
        if not isinstance(node, Mapping) or part not in node:
            raise ValueError(f"the JSON-schema reference {ref!r} points nowhere")
        node = node[part]
    if not isinstance(node, Mapping):
        raise ValueError(f"the JSON-schema reference {ref!r} does not point to a schema")
    return node
