"""Best effort for well-formed content the estimator does not know.

Two kinds, both marked inexact with a reason that names them by JSON path:

* an unknown *item* (a new content part or input item type) is content: it is counted as
  its compact JSON text, which over-counts structure a little and so errs on the safe side;
* an unknown *field* (a key missing from the allowlists in ``_fields.py``, at the top level
  or inside a known object) is most likely a setting, so the best estimate assumes it adds
  nothing, but it may make the server add context: the upper bound reserves its compact
  JSON text counted as tokens plus ``UNKNOWN_FIELD_ALLOWANCE`` for whatever it brings in.
  A field set to ``null`` is the API default, as if absent, and is not reported.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from budgetguard._estimate._body import at
from budgetguard._estimate._models import Profile
from budgetguard._estimate._result import Tally

__all__ = ["UNKNOWN_FIELD_ALLOWANCE", "check_fields", "unknown_fields", "unknown_json", "unknown_type"]

#: Tokens the upper bound reserves for each unknown field, on top of its own JSON text. The
#: largest hidden preamble seen in recordings is about 200 tokens (the Responses API's
#: launch-period preamble with strict tools; harmony's tool preamble is 80): a field that
#: switches on server-side instructions is assumed to add no more than this.
UNKNOWN_FIELD_ALLOWANCE = 256


def unknown_json(item: Any, tally: Tally, what: str) -> str:
    """The text to count for an unknown item; notes ``what`` as the reason it is inexact."""
    tally.inexact(f"{what} is not known to the estimator: counted as its JSON text")
    return _compact(item)


def check_fields(
    obj: Mapping[str, Any], known: frozenset[str], path: str, profile: Profile, tally: Tally
) -> None:
    """Report the keys of ``obj`` missing from ``known`` (see ``unknown_fields``)."""
    if not obj.keys() <= known:
        unknown_fields(obj, known, path, profile, tally)


def unknown_fields(
    obj: Mapping[str, Any], known: frozenset[str], path: str, profile: Profile, tally: Tally
) -> None:
    """Mark inexact for every non-null key of ``obj`` not in ``known``, widening the upper bound.

    Each such field reserves its compact JSON text (``"key":value``) counted as tokens, plus
    ``UNKNOWN_FIELD_ALLOWANCE``; the reason names the field by its JSON path under ``path``.
    """
    for key, value in obj.items():
        if key in known or value is None:
            continue
        _reserve(f"{_compact(str(key))}:{_compact(value)}", at(path, str(key)), profile, tally)


def unknown_type(obj: Mapping[str, Any], kind: object, path: str, profile: Profile, tally: Tally) -> None:
    """Mark inexact for an object at ``path`` whose ``type`` is unknown, as an unknown field."""
    _reserve(_compact(obj), f"{path}: type {kind!r}", profile, tally)


def _reserve(text: str, what: str, profile: Profile, tally: Tally) -> None:
    reserve = profile.count(text) + UNKNOWN_FIELD_ALLOWANCE
    tally.inexact(
        f"{what} is not known to the estimator: it may add context server-side "
        f"(the upper bound reserves {reserve} tokens for it)",
        allowance=reserve,
    )


def _compact(value: Any) -> str:
    try:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)
    except (TypeError, ValueError):
        return str(value)
