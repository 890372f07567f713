"""Typed reads from a JSON request body that fail with the JSON path of the problem.

Every error names where it is (``messages[2].content[0].image_url``) and what was expected,
so a caller can fix the body without guessing which part the estimator disliked.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NoReturn

from budgetguard._errors import EstimateError

__all__ = [
    "at",
    "fail",
    "json_type",
    "need_list",
    "need_mapping",
    "need_str",
    "opt_int",
    "opt_list",
    "opt_mapping",
    "opt_str",
]


def at(path: str, key: str | int) -> str:
    """The JSON path of ``key`` under ``path``."""
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


def fail(path: str, message: str) -> NoReturn:
    raise EstimateError(f"{path}: {message}" if path else message)


def json_type(value: object) -> str:
    """The JSON name of a Python value's type, for error messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, Mapping):
        return "object"
    if isinstance(value, Sequence | bytes):
        return "array"
    return type(value).__name__


def need_mapping(value: object, path: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        dump = getattr(value, "model_dump", None)
        if callable(dump):
            # An SDK response object passed back into a request (a message's content blocks):
            # the SDK sends it as its JSON, so count that.
            dumped = dump(mode="json", exclude_none=True)
            if isinstance(dumped, Mapping):
                return dumped
        fail(path, f"expected an object, got {json_type(value)}")
    return value


_ARRAYS = (list, tuple)  # a tuple: ``list | tuple`` would build a union object on every call


def need_list(value: object, path: str) -> Sequence[Any]:
    if not isinstance(value, _ARRAYS):
        fail(path, f"expected an array, got {json_type(value)}")
    return value


def need_str(value: object, path: str) -> str:
    if not isinstance(value, str):
        fail(path, f"expected a string, got {json_type(value)}")
    return value


def opt_str(obj: Mapping[str, Any], key: str, path: str) -> str | None:
    value = obj.get(key)
    if value is None:
        return None
    return need_str(value, at(path, key))


def opt_mapping(obj: Mapping[str, Any], key: str, path: str) -> Mapping[str, Any] | None:
    value = obj.get(key)
    if value is None:
        return None
    return need_mapping(value, at(path, key))


def opt_list(obj: Mapping[str, Any], key: str, path: str) -> Sequence[Any] | None:
    value = obj.get(key)
    if value is None:
        return None
    return need_list(value, at(path, key))


def opt_int(obj: Mapping[str, Any], key: str, path: str) -> int | None:
    """A non-negative integer field, or None when absent/null."""
    value = obj.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        fail(at(path, key), f"expected an integer, got {json_type(value)}")
    if value < 0:
        fail(at(path, key), f"expected a non-negative integer, got {value}")
    return value
