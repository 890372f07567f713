"""JSON Schema as the model sees it: TypeScript-like types for tools, JSON for response formats.

Function parameters become TypeScript types inside a ``namespace functions`` block (the
format OpenAI published with gpt-oss "harmony", which earlier models share): ``?`` marks an
optional property, a ``description`` is a ``// comment`` line above it (whitespace runs
collapsed), a ``title`` a comment followed by an empty ``//`` line, enums and ``anyOf`` /
``oneOf`` are unions, arrays ``T[]``, ``$ref`` is resolved against ``$defs``, and nested
objects are written inline without indentation. Defaults and validation keywords are not
shown. A ``json_schema`` response format is shown as compact JSON without ``title``
keywords, and without ``additionalProperties``/``required`` below the root.

These rules were chosen against billed usage, not copied from the server; ``_sections``
holds the constants that absorb what remains.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

__all__ = ["comment", "format_schema_json", "object_comments", "properties_block", "ts_type"]

_MAX_DEPTH = 12  # deeper (or recursive $ref) schemas render as "any"


def _literal(value: object) -> str:
    return json.dumps(value, ensure_ascii=False, default=str)


def _resolve(schema: Any, root: Mapping[str, Any], seen: frozenset[str]) -> tuple[Any, frozenset[str]]:
    if isinstance(schema, Mapping) and isinstance(schema.get("$ref"), str):
        ref: str = schema["$ref"]
        if ref in seen or not ref.startswith("#"):
            return None, seen
        target: Any = root
        for part in ref[1:].split("/"):
            if not part:
                continue
            part = part.replace("~1", "/").replace("~0", "~")
            target = target.get(part) if isinstance(target, Mapping) else None
        return target, seen | {ref}
    return schema, seen


def ts_type(schema: Any, root: Mapping[str, Any], seen: frozenset[str] = frozenset(), depth: int = 0) -> str:
    """The TypeScript-like type of a JSON schema, as rendered in a tool definition."""
    schema, seen = _resolve(schema, root, seen)
    if not isinstance(schema, Mapping) or depth > _MAX_DEPTH:
        return "any"
    if "const" in schema:
        return _literal(schema["const"])
    enum = schema.get("enum")
    if isinstance(enum, list) and enum:
        return " | ".join(_literal(v) for v in enum)
    for key in ("anyOf", "oneOf"):
        variants = schema.get(key)
        if isinstance(variants, list) and variants:
            return " | ".join(ts_type(v, root, seen, depth + 1) for v in variants)
    all_of = schema.get("allOf")
    if isinstance(all_of, list) and all_of:
        return " & ".join(ts_type(v, root, seen, depth + 1) for v in all_of)
    kind = schema.get("type")
    if isinstance(kind, list):
        names = [_scalar(k) for k in kind if isinstance(k, str)]
        return " | ".join(names) if names else "any"
    if kind == "object" or (kind is None and isinstance(schema.get("properties"), Mapping)):
        props = schema.get("properties")
        if isinstance(props, Mapping) and props:
            return "{\n" + properties_block(schema, root, seen, depth + 1) + "}"
        return "object"
    if kind == "array":
        items = schema.get("items")
        if isinstance(items, Mapping):
            item = ts_type(items, root, seen, depth + 1)
            return f"({item})[]" if " | " in item else f"{item}[]"
        return "any[]"
    if isinstance(kind, str):
        return _scalar(kind)
    return "any"


def _scalar(kind: str) -> str:
    return "number" if kind == "integer" else kind


def comment(text: str) -> str:
    """A ``// `` comment line; whitespace runs (docstring indentation) collapse to one space."""
    return f"// {' '.join(text.split())}\n"


def object_comments(schema: Mapping[str, Any]) -> str:
    """Comment lines for an object schema's own ``title`` and ``description``."""
    out = ""
    for key in ("title", "description"):
        value = schema.get(key)
        if isinstance(value, str) and value:
            out += comment(value)
    return out


def properties_block(
    schema: Mapping[str, Any], root: Mapping[str, Any], seen: frozenset[str] = frozenset(), depth: int = 0
) -> str:
    """The property lines of an object schema, each ending in a newline.

    A property's ``title`` becomes a comment followed by an empty comment line, its
    ``description`` a comment; nested objects are not indented (calibrated).
    """
    props = schema.get("properties")
    if not isinstance(props, Mapping):
        return ""
    required_list = schema.get("required")
    required = set(required_list) if isinstance(required_list, list) else set()
    lines: list[str] = []
    for key, prop in props.items():
        if isinstance(prop, Mapping):
            title = prop.get("title")
            if isinstance(title, str) and title:
                lines.append(comment(title) + "//\n")
            description = prop.get("description")
            if isinstance(description, str) and description:
                lines.append(comment(description))
        optional = "" if key in required else "?"
        lines.append(f"{key}{optional}: {ts_type(prop, root, seen, depth)},\n")
    return "".join(lines)


def format_schema_json(schema: Any) -> str:
    """A ``json_schema`` response format as the model sees it: compact JSON without titles,
    and without ``additionalProperties``/``required`` below the root (strict mode implies them)."""
    return json.dumps(_simplify(schema, root=True), ensure_ascii=False, separators=(",", ":"), default=str)


def _simplify(value: Any, root: bool = False, in_names: bool = False) -> Any:
    # Keys directly under "properties"/"$defs" are a user's field names, not keywords: keep them.
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for key, item in value.items():
            if not in_names and (key == "title" or (not root and key in _NESTED_DROPPED)):
                continue
            out[key] = _simplify(item, in_names=not in_names and key in _NAME_MAPS)
        return out
    if isinstance(value, list):
        return [_simplify(item) for item in value]
    return value


_NESTED_DROPPED = frozenset({"additionalProperties", "required"})


_NAME_MAPS = frozenset({"properties", "$defs", "definitions", "patternProperties"})
