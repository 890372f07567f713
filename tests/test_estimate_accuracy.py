"""The estimator against real billed usage: targets that fail the build when they regress.

``shared/data/openai_recorded_usage.jsonl`` holds request bodies recorded against
api.openai.com with the usage they were billed. Each record is estimated from its body, with
the model that answered (the recording's ``response_model``: a moving alias like
``gpt-3.5-turbo`` is billed by whichever snapshot serves it, which the body cannot say).

Targets apply to self-contained requests. Excluded, and reported apart:

* hidden context: the estimator says ``exact=False`` or the recorder noted the body is not
  fully estimable (built-in tools, previous responses, encrypted reasoning, files, audio,
  remote images of unknown size);
* launch-period drift: Responses API calls served in March 2025, when the API added a hidden
  preamble (about 18 tokens, ~200 with strict tools) that identical bodies no longer bill;
* recorder-altered text: the recorder rewrote smart dashes in model-written text to ``--``,
  so the stored body no longer tokenizes like the one that was billed.

``benchmarks/estimate_accuracy.py`` prints the full table, these exclusions included.
"""

from __future__ import annotations

import datetime as dt
import json
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from budgetguard._estimate import TokenEstimate, count_request
from budgetguard._estimate._models import profile_for

DATA = Path(__file__).resolve().parents[1].parent / "shared/data/openai_recorded_usage.jsonl"

# Targets from issue 4.
CHAT_TEXT_EXACT = 0.99
RESPONSES_TEXT_EXACT = 0.95
TOOLS_MAE = 5.0
IMAGES_MAE = 10.0
STRUCTURED_MAE = 5.0
UPPER_MISS_RATE = 0.01

_LAUNCH_START = dt.datetime(2025, 3, 1, tzinfo=dt.UTC).timestamp()
_LAUNCH_END = dt.datetime(2025, 4, 1, tzinfo=dt.UTC).timestamp()


@dataclass(frozen=True, slots=True)
class Scored:
    """One recording, estimated."""

    index: int
    endpoint: str
    categories: tuple[str, ...]
    family: str
    billed: int
    estimate: TokenEstimate
    excluded: str | None  # why the targets do not apply, or None

    @property
    def error(self) -> int:
        return self.estimate.prompt_tokens - self.billed

    @property
    def under_upper(self) -> bool:
        return self.estimate.prompt_tokens_upper < self.billed


def load_records(path: Path = DATA) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def billed_prompt_tokens(record: Mapping[str, Any]) -> int:
    usage = record["usage"]
    value = usage.get("prompt_tokens", usage.get("input_tokens"))
    assert isinstance(value, int)
    return value


def categories(record: Mapping[str, Any]) -> tuple[str, ...]:
    """The target categories a recording counts in (a request with tools and a schema counts in both)."""
    endpoint = record["endpoint"]
    features = set(record.get("features") or ())
    if endpoint in ("embeddings", "completions"):
        return (endpoint,)
    api = "chat" if endpoint == "chat.completions" else "responses"
    found = []
    if "image" in features:
        found.append("images")
    if any(f.startswith("response_format:json_schema") for f in features):
        found.append("structured outputs")
    if features & {"tools", "tool_calls", "tool_results", "legacy_functions"}:
        found.append(f"{api} with tools")
    if not found:
        found.append(f"{api} text")
    return tuple(found)


def exclusion(record: Mapping[str, Any], estimate: TokenEstimate) -> str | None:
    if not estimate.exact or "not fully estimable" in record.get("notes", ""):
        return "hidden context"
    if record["endpoint"] == "responses" and _served_during_launch(str(record.get("response_id", ""))):
        return "launch-period drift"
    if "NFKC-normalizes" in record.get("notes", "") and any(
        "--" in t for t in _model_texts(record["request"])
    ):
        return "recorder-altered text"
    return None


def _served_during_launch(response_id: str) -> bool:
    # Early Responses ids carry their creation time: "resp_" + 8 hex digits of Unix time.
    try:
        created = int(response_id[5:13], 16)
    except ValueError:
        return False
    return response_id.startswith("resp_") and _LAUNCH_START <= created < _LAUNCH_END


def _model_texts(body: Mapping[str, Any]) -> Iterable[str]:
    """Text the model wrote earlier (assistant turns, call arguments), as stored in the body."""
    items = list(body.get("messages") or ())
    if isinstance(body.get("input"), list):
        items += body["input"]
    for item in items:
        if not isinstance(item, Mapping):
            continue
        if item.get("type") == "function_call":
            yield str(item.get("arguments", ""))
        if item.get("role") != "assistant":
            continue
        content = item.get("content")
        if isinstance(content, str):
            yield content
        elif isinstance(content, list):
            yield from (str(p.get("text", "")) for p in content if isinstance(p, Mapping))
        for call in item.get("tool_calls") or ():
            yield str(call.get("function", {}).get("arguments", ""))


def score(records: Sequence[Mapping[str, Any]], *, served_model: bool = True) -> list[Scored]:
    """Estimate every recording (with the model that answered, unless ``served_model`` is False)."""
    scored = []
    for index, record in enumerate(records):
        body = dict(record["request"])
        if served_model and record.get("response_model"):
            body["model"] = record["response_model"]
        estimate = count_request(record["endpoint"], body)
        scored.append(
            Scored(
                index=index,
                endpoint=record["endpoint"],
                categories=categories(record),
                family=profile_for(body["model"]).family,
                billed=billed_prompt_tokens(record),
                estimate=estimate,
                excluded=exclusion(record, estimate),
            )
        )
    return scored


def in_category(scored: Iterable[Scored], category: str, *, excluded: bool = False) -> list[Scored]:
    return [s for s in scored if category in s.categories and (s.excluded is not None) == excluded]


def exact_rate(rows: Sequence[Scored]) -> float:
    return sum(1 for r in rows if r.error == 0) / len(rows)


def mae(rows: Sequence[Scored]) -> float:
    return statistics.fmean(abs(r.error) for r in rows)


# --------------------------------------------------------------------------------------------

pytestmark = pytest.mark.skipif(
    not DATA.is_file(), reason=f"recorded usage not found at {DATA} (it ships in ../shared in CI)"
)


@pytest.fixture(scope="module")
def scored() -> list[Scored]:
    return score(load_records())


def _rows(scored: list[Scored], category: str) -> list[Scored]:
    rows = in_category(scored, category)
    if not rows:
        pytest.skip(f"no self-contained {category} recordings in {DATA.name}")
    return rows


def _describe(rows: Iterable[Scored]) -> str:
    return ", ".join(f"#{r.index}: {r.error:+d}" for r in rows if r.error)


def test_chat_text_is_exact_on_at_least_99_percent(scored: list[Scored]) -> None:
    rows = _rows(scored, "chat text")
    assert exact_rate(rows) >= CHAT_TEXT_EXACT, _describe(rows)


def test_chat_with_tools_is_within_5_tokens_on_average(scored: list[Scored]) -> None:
    rows = _rows(scored, "chat with tools")
    assert mae(rows) <= TOOLS_MAE, _describe(rows)


def test_responses_text_is_exact_on_at_least_95_percent(scored: list[Scored]) -> None:
    rows = _rows(scored, "responses text")
    assert exact_rate(rows) >= RESPONSES_TEXT_EXACT, _describe(rows)


def test_responses_with_tools_is_within_5_tokens_on_average(scored: list[Scored]) -> None:
    rows = _rows(scored, "responses with tools")
    assert mae(rows) <= TOOLS_MAE, _describe(rows)


def test_images_are_within_10_tokens_per_request_on_average(scored: list[Scored]) -> None:
    rows = _rows(scored, "images")
    assert mae(rows) <= IMAGES_MAE, _describe(rows)


def test_structured_outputs_are_within_5_tokens_on_average(scored: list[Scored]) -> None:
    rows = _rows(scored, "structured outputs")
    assert mae(rows) <= STRUCTURED_MAE, _describe(rows)


@pytest.mark.parametrize("category", ["embeddings", "completions"])
def test_embeddings_and_legacy_completions_are_always_exact(scored: list[Scored], category: str) -> None:
    rows = _rows(scored, category)
    assert exact_rate(rows) == 1.0, _describe(rows)


def test_upper_bound_covers_the_bill_on_at_least_99_percent_of_requests(scored: list[Scored]) -> None:
    rows = [s for s in scored if s.excluded is None]
    misses = [s for s in rows if s.under_upper]
    assert len(misses) / len(rows) <= UPPER_MISS_RATE, [
        (m.index, m.billed, m.estimate.prompt_tokens_upper) for m in misses
    ]


def test_bodies_the_recorder_marks_not_estimable_are_reported_inexact(scored: list[Scored]) -> None:
    records = load_records()
    flagged = [
        s.index for s in scored if "not fully estimable" in records[s.index]["notes"] and s.estimate.exact
    ]
    assert flagged == []


def test_exclusions_other_than_hidden_context_stay_rare(scored: list[Scored]) -> None:
    # Launch-period drift and recorder artefacts are facts of this data set, not a way to
    # hide a rule that got worse: they must stay a small, named minority.
    other = [s for s in scored if s.excluded not in (None, "hidden context")]
    assert len(other) <= 0.05 * len(scored), [(s.index, s.excluded) for s in other]
