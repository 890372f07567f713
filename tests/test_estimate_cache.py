"""What the estimator remembers between requests never changes what it counts.

Agents resend their whole history with each request; the estimator remembers token counts
per text, the counted prefix of a history and rendered tool sections (``_estimate/_cache.py``)
so each step costs what is new. Every test here compares the remembered count with a count
made without any memory (``uncached``): the whole ``TokenEstimate`` (tokens, upper bound,
exactness, reasons, image tokens) must be equal, whatever was mutated in between.
"""

from __future__ import annotations

import base64
import copy
import json
import struct
import threading
import zlib
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from budgetguard._errors import EstimateError
from budgetguard._estimate import TokenEstimate, _cache, _chat, _models, _responses, count_request, count_text
from budgetguard._tokenizer import get_encoding

MIN = _cache.MIN_HISTORY


@pytest.fixture(autouse=True)
def _empty_caches() -> Iterator[None]:
    _cache.clear_caches()
    yield
    _cache.clear_caches()


def uncached(endpoint: str, body: Mapping[str, Any]) -> TokenEstimate:
    """The estimate with nothing remembered: fresh profiles, plain tiktoken, no histories."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(_models, "_cache", {})
        mp.setattr(
            _models, "text_counter", lambda name, encode: lambda text: len(encode(text)) if text else 0
        )
        for module in (_chat, _responses):
            mp.setattr(module, "MIN_HISTORY", 10**9)
            mp.setattr(module, "count_once", lambda kind, profile, value, tally, compute: compute(tally))
        return count_request(endpoint, body)


def same(endpoint: str, body: Mapping[str, Any]) -> TokenEstimate:
    """Estimate ``body`` with the caches as they are, and check it against ``uncached``."""
    got = count_request(endpoint, body)
    assert got == uncached(endpoint, body)
    return got


def png_url(width: int, height: int) -> str:
    ihdr = struct.pack(">II", width, height) + b"\x08\x02\x00\x00\x00"
    data = (
        b"\x89PNG\r\n\x1a\n"
        + struct.pack(">I", 13)
        + b"IHDR"
        + ihdr
        + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    )
    return "data:image/png;base64," + base64.b64encode(data).decode()


TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "read_file",
            "description": "Read a file.",
            "parameters": {
                "type": "object",
                "properties": {
                    "path": {"type": "string", "description": "Path"},
                    "mode": {"type": "integer", "enum": [1, 2]},
                },
                "required": ["path"],
            },
        },
    }
]


def chat_step(step: int) -> list[dict[str, Any]]:
    """What one agent step adds to a chat history: a tool call (two, every third step) and results."""
    calls = [
        {
            "id": f"call_{step}_{i}",
            "type": "function",
            "function": {"name": "read_file", "arguments": json.dumps({"path": f"src/m{step}_{i}.py"})},
        }
        for i in range(2 if step % 3 == 0 else 1)
    ]
    added: list[dict[str, Any]] = [{"role": "assistant", "content": None, "tool_calls": calls}]
    added += [
        {"role": "tool", "tool_call_id": call["id"], "content": f"def f{step}():\n    return {step} * 2\n"}
        for call in calls
    ]
    if step % 4 == 1:
        added.append({"role": "user", "content": [{"type": "text", "text": f"Step {step}: go on."}]})
    return added


def chat_history(steps: int) -> list[dict[str, Any]]:
    history: list[dict[str, Any]] = [
        {"role": "system", "content": "You are a careful coding agent."},
        {"role": "user", "content": "Fix the failing test."},
    ]
    for step in range(steps):
        history += chat_step(step)
    return history


def responses_step(step: int) -> list[dict[str, Any]]:
    added: list[dict[str, Any]] = [
        {
            "type": "function_call",
            "call_id": f"c{step}_{i}",
            "name": "read_file",
            "arguments": f'{{"n": {i}}}',
        }
        for i in range(2 if step % 3 == 0 else 1)
    ]
    added += [
        {"type": "function_call_output", "call_id": f"c{step}_{i}", "output": f"line {step} {i}"}
        for i in range(len(added))
    ]
    if step % 4 == 1:
        added.append(
            {"role": "assistant", "content": [{"type": "output_text", "text": f"Step {step} done."}]}
        )
    return added


def responses_history(steps: int) -> list[dict[str, Any]]:
    history: list[dict[str, Any]] = [{"role": "user", "content": "Fix the failing test."}]
    for step in range(steps):
        history += responses_step(step)
    return history


# --- a growing history --------------------------------------------------------------------------


def test_a_growing_chat_history_counts_as_if_counted_afresh() -> None:
    history = chat_history(0)
    for step in range(30):
        history += chat_step(step)
        if step == 7:  # content that adds reasons: a remote image, an unknown field
            history.append(
                {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://x/y.png"}}]}
            )
            history.append({"role": "user", "content": "see above", "x_note": {"a": 1}})
        if step == 12:  # an image whose size is in the body
            history.append(
                {"role": "user", "content": [{"type": "image_url", "image_url": {"url": png_url(900, 500)}}]}
            )
        if step == 17:  # audio input: the estimate says so (reserved at audio rates) once remembered too
            audio = {"type": "input_audio", "input_audio": {"format": "wav"}}
            history.append({"role": "user", "content": [audio]})
        same("chat.completions", {"model": "gpt-4o", "messages": history, "tools": TOOLS})
        # The same dicts in a new list, as frameworks that rebuild the list each step send them.
        same("chat.completions", {"model": "gpt-4o", "messages": list(history), "tools": TOOLS})
    assert _cache.cache_info()["histories"] >= 1
    assert count_request("chat.completions", {"model": "gpt-4o", "messages": history}).audio


def test_a_growing_responses_history_counts_as_if_counted_afresh() -> None:
    history = responses_history(0)
    for step in range(30):
        history += responses_step(step)
        same("responses", {"model": "gpt-4o", "input": history, "instructions": "Be brief.", "tools": []})
        same("responses", {"model": "o3", "input": copy.deepcopy(history)})


def test_a_call_appended_after_a_trailing_call_joins_its_parallel_batch() -> None:
    # chatml models see consecutive calls as one parallel call: a prefix that ends in a call
    # must not be resumed when the next item is another call of the same type.
    history = responses_history(3)
    history.append({"type": "function_call", "call_id": "a", "name": "read_file", "arguments": "{}"})
    same("responses", {"model": "gpt-4o", "input": history})
    history.append({"type": "function_call", "call_id": "b", "name": "read_file", "arguments": "{}"})
    batched = same("responses", {"model": "gpt-4o", "input": history})
    history.append({"type": "function_call_output", "call_id": "a", "output": "ok"})
    same("responses", {"model": "gpt-4o", "input": history})
    assert batched.prompt_tokens != uncached("responses", {"model": "o3", "input": history}).prompt_tokens


def test_every_prefix_of_recorded_bodies_counts_as_if_counted_afresh() -> None:
    data = Path(__file__).resolve().parents[1].parent / "shared/data/openai_recorded_usage.jsonl"
    if not data.is_file():
        pytest.skip(f"no recordings at {data}")
    records = [json.loads(line) for line in data.read_text(encoding="utf-8").splitlines() if line.strip()]
    checked = 0
    for record in records:
        endpoint, body = record["endpoint"], record["request"]
        field = {"chat.completions": "messages", "responses": "input"}.get(endpoint)
        items = body.get(field) if field else None
        if not isinstance(items, list) or not items:
            continue
        grown = items * (MIN * 2 // len(items) + 1)  # long enough to be remembered
        for n in range(1, len(grown) + 1):
            try:
                expected = uncached(endpoint, {**body, field: grown[:n]})
            except EstimateError:
                continue
            assert count_request(endpoint, {**body, field: grown[:n]}) == expected
            checked += 1
    assert checked > 500


# --- mutations in place ---------------------------------------------------------------------------


def _content(h: list[dict[str, Any]]) -> None:
    h[3]["content"] = h[3]["content"].replace("return", "yield!")  # same length


def _arguments(h: list[dict[str, Any]]) -> None:
    h[2]["tool_calls"][0]["function"]["arguments"] = json.dumps({"path": "src/other_module.py"})


def _part_text(h: list[dict[str, Any]]) -> None:
    part = next(m for m in h if isinstance(m.get("content"), list))["content"][0]
    part["text"] = part["text"] + " and more"


def _unknown_key(h: list[dict[str, Any]]) -> None:
    h[1]["x_flag"] = "on"


def _unknown_value_type(h: list[dict[str, Any]]) -> None:
    h[1]["x_level"] = 1.0  # was 1: equal in Python, not in JSON


def _unknown_key_order(h: list[dict[str, Any]]) -> None:
    value = h[1].pop("x_level")
    h[1]["x_level"] = value  # the reasons name unknown fields in key order


def _system(h: list[dict[str, Any]]) -> None:
    h[0]["content"] = "You are an agent."


def _tool_call_id(h: list[dict[str, Any]]) -> None:
    h[3]["tool_call_id"] = "call_unknown"


def _message_type(h: list[dict[str, Any]]) -> None:
    h[1] = OrderedDict(h[1])  # type: ignore[assignment]


def _delete(h: list[dict[str, Any]]) -> None:
    del h[4]


def _insert(h: list[dict[str, Any]]) -> None:
    h.insert(1, {"role": "user", "content": "First, read the README."})


def _part_appended(h: list[dict[str, Any]]) -> None:
    parts = next(m for m in h if isinstance(m.get("content"), list))["content"]
    parts.append({"type": "text", "text": "Also check the logs."})


def _call_appended(h: list[dict[str, Any]]) -> None:
    calls = h[2]["tool_calls"]
    calls.append(
        {"id": "call_extra", "type": "function", "function": {"name": "read_file", "arguments": "{}"}}
    )


def _image(h: list[dict[str, Any]]) -> None:
    h[1]["content"] = [{"type": "image_url", "image_url": {"url": png_url(2048, 1024)}}]


MUTATIONS: list[Callable[[list[dict[str, Any]]], None]] = [
    _content,
    _arguments,
    _part_text,
    _part_appended,
    _call_appended,
    _unknown_key,
    _unknown_value_type,
    _unknown_key_order,
    _system,
    _tool_call_id,
    _message_type,
    _delete,
    _insert,
    _image,
]


@pytest.mark.parametrize("mutate", MUTATIONS, ids=lambda f: f.__name__.strip("_"))
def test_a_message_mutated_in_place_is_counted_again(mutate: Callable[[list[dict[str, Any]]], None]) -> None:
    history = chat_history(6)
    history[1]["x_level"] = 1
    history[1]["x_mode"] = "fast"
    body = {"model": "gpt-4o", "messages": history, "tools": TOOLS}
    before = same("chat.completions", body)
    mutate(history)
    after = same("chat.completions", body)
    assert after != before or mutate is _message_type


def test_tools_mutated_in_place_are_rendered_again() -> None:
    tools = copy.deepcopy(TOOLS)
    body = {"model": "gpt-4o", "messages": chat_history(4), "tools": tools}
    first = same("chat.completions", body)
    schema = tools[0]["function"]["parameters"]
    schema["properties"]["mode"]["enum"] = [1.0, 2]  # renders as 1.0 | 2
    assert same("chat.completions", body) != first
    schema["properties"] = dict(reversed(schema["properties"].items()))
    same("chat.completions", body)
    tools[0]["function"]["description"] = "Read a file of the repository."
    same("chat.completions", body)
    tools[0]["x_extra"] = True  # an unknown field: a reason
    assert not same("chat.completions", body).exact
    del tools[0]["x_extra"]
    assert same("chat.completions", body).exact


def test_responses_tools_and_text_format_mutated_in_place() -> None:
    text = {"format": {"type": "json_schema", "name": "r", "schema": {"type": "object", "properties": {}}}}
    tools = [{"type": "function", "name": "f", "parameters": {"type": "object", "properties": {}}}]
    body = {"model": "gpt-4.1", "input": responses_history(4), "tools": tools, "text": text}
    same("responses", body)
    text["format"]["schema"]["properties"]["answer"] = {"type": "string"}
    same("responses", body)
    tools.append({"type": "web_search"})  # a built-in tool: tokens and a reason
    assert not same("responses", body).exact
    tools.pop()
    assert same("responses", body).exact


def test_models_with_other_encodings_or_framing_never_share_a_count() -> None:
    history = chat_history(2)
    history.append({"role": "user", "name": "ann", "content": "Who is there?"})
    counts: dict[str, int] = {}
    for step in range(4):
        history += chat_step(10 + step)
        for model in ("gpt-4o", "gpt-4", "gpt-3.5-turbo-0301", "o3", "gpt-4o-mini", "mystery-model"):
            counts[model] = same("chat.completions", {"model": model, "messages": history}).prompt_tokens
    assert len({counts["gpt-4o"], counts["gpt-4"], counts["gpt-3.5-turbo-0301"], counts["o3"]}) == 4
    assert count_text("gpt-4", "naïve café") == len(get_encoding("cl100k_base").encode_ordinary("naïve café"))


def test_a_malformed_message_after_a_remembered_prefix_fails_as_it_would_afresh() -> None:
    history = chat_history(4)
    body = {"model": "gpt-4o", "messages": history}
    same("chat.completions", body)
    history.append({"role": "user", "content": [{"type": "text", "text": 7}]})
    with pytest.raises(EstimateError) as remembered:
        count_request("chat.completions", body)
    with pytest.raises(EstimateError) as afresh:
        uncached("chat.completions", body)
    assert str(remembered.value) == str(afresh.value)


def test_messages_that_are_not_plain_data_are_counted_every_time() -> None:
    class Message(Mapping[str, Any]):
        def __init__(self, **fields: Any) -> None:
            self.fields = fields

        def __getitem__(self, key: str) -> Any:
            return self.fields[key]

        def __iter__(self) -> Iterator[str]:
            return iter(self.fields)

        def __len__(self) -> int:
            return len(self.fields)

    history: list[Any] = [Message(role="user", content=f"message {i}") for i in range(MIN + 2)]
    body = {"model": "gpt-4o", "messages": history}
    same("chat.completions", body)
    assert _cache.cache_info()["histories"] == 0
    history[3].fields["content"] = "changed"
    same("chat.completions", body)


def test_concurrent_conversations_count_as_if_counted_afresh() -> None:
    results: dict[int, list[tuple[dict[str, Any], TokenEstimate]]] = {}

    def agent(seed: int) -> None:
        history = chat_history(0)
        history[1] = {"role": "user", "content": f"Task {seed}"}
        seen = []
        for step in range(15):
            history += chat_step(step + seed)
            body = {"model": "gpt-4o", "messages": list(history)}
            seen.append((body, count_request("chat.completions", body)))
        results[seed] = seen

    threads = [threading.Thread(target=agent, args=(seed,)) for seed in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for seen in results.values():
        for body, estimate in seen:
            assert estimate == uncached("chat.completions", body)


# --- memory -----------------------------------------------------------------------------------------


def test_remembered_texts_stay_within_their_bounds() -> None:
    enc = get_encoding("o200k_base")
    counts = _cache._TextCounts(enc.encode_ordinary, max_entries=100, max_chars=5_000)
    for i in range(3_000):
        text = f"text number {i} " * (1 + i % 7)
        assert counts.count(text) == len(enc.encode_ordinary(text))
        assert len(counts.counts) <= 100
        assert counts.chars <= 5_000
        assert counts.chars == sum(len(t) for t in counts.counts)
    long = "word " * 2_000  # over a quarter of the bound: counted, not kept
    assert counts.count(long) == len(enc.encode_ordinary(long))
    assert long not in counts.counts


def test_the_shared_text_counts_are_bounded() -> None:
    for i in range(_cache.MAX_TEXT_ENTRIES + 500):
        count_text("gpt-4o", f"distinct text {i}")
    info = _cache.cache_info()
    assert 0 < info["texts"] <= _cache.MAX_TEXT_ENTRIES
    assert info["text_chars"] <= _cache.MAX_TEXT_CHARS


def test_remembered_histories_and_sections_stay_within_their_bounds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_cache, "MAX_HISTORIES", 10)
    monkeypatch.setattr(_cache, "MAX_HISTORY_CHARS", 20_000)
    monkeypatch.setattr(_cache, "MAX_SECTIONS", 10)
    for run in range(60):
        history = [
            {"role": "system", "content": f"Agent {run % 7}."},
            {"role": "user", "content": "x" * run * 50},
        ]
        history += [{"role": "user", "content": f"{run}-{i}"} for i in range(MIN)]
        tools = [{"type": "function", "function": {"name": f"tool_{run}"}}]
        same("chat.completions", {"model": "gpt-4o", "messages": history, "tools": tools})
        info = _cache.cache_info()
        assert info["histories"] <= 10
        assert info["history_chars"] <= 20_000
        assert info["sections"] <= 10
        assert info["histories"] == sum(len(entries) for entries in _cache._histories.values())


# --- a hit does not encode --------------------------------------------------------------------------


class CountingEncoding:
    """An encoding that records every text it is asked to encode."""

    def __init__(self, name: str) -> None:
        self.inner = get_encoding(name)
        self.texts: list[str] = []

    def encode_ordinary(self, text: str) -> list[int]:
        self.texts.append(text)
        return list(self.inner.encode_ordinary(text))


@pytest.fixture
def encoders(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, CountingEncoding]]:
    made: dict[str, CountingEncoding] = {}

    def get(name: str) -> CountingEncoding:
        if name not in made:
            made[name] = CountingEncoding(name)
        return made[name]

    monkeypatch.setattr(_models, "get_encoding", get)
    monkeypatch.setattr(_models, "_cache", {})
    yield made
    _models._cache.clear()
    _cache._texts.clear()


def test_a_remembered_history_is_not_encoded_again(encoders: dict[str, CountingEncoding]) -> None:
    history = chat_history(6)
    body = {"model": "gpt-4o", "messages": history, "tools": TOOLS}
    first = count_request("chat.completions", body)
    enc = encoders["o200k_base"]
    assert enc.texts
    enc.texts.clear()

    assert count_request("chat.completions", body) == first
    assert count_request("chat.completions", {**body, "messages": list(history)}) == first
    assert enc.texts == []

    history.append({"role": "user", "content": "One more thing."})
    count_request("chat.completions", body)
    assert enc.texts == ["One more thing."]  # only what is new

    enc.texts.clear()
    history[3]["content"] = "changed in place"
    got = count_request("chat.completions", body)
    assert enc.texts == ["changed in place"]  # the rest is remembered per text
    assert got == uncached("chat.completions", body)

    enc.texts.clear()
    count_request("chat.completions", {**body, "model": "gpt-4.1"})  # same encoding, other framing
    assert enc.texts == []


def test_remembered_tools_are_not_rendered_or_encoded_again(encoders: dict[str, CountingEncoding]) -> None:
    body = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}], "tools": TOOLS}
    count_request("chat.completions", body)
    enc = encoders["o200k_base"]
    enc.texts.clear()
    count_request("chat.completions", {**body, "tools": copy.deepcopy(TOOLS)})
    assert enc.texts == []


# --- properties -------------------------------------------------------------------------------------

_TEXT = st.text(alphabet="ab .,\n'é1", max_size=12)
_MESSAGE = st.one_of(
    st.builds(
        lambda r, c: {"role": r, "content": c}, st.sampled_from(["user", "assistant", "system"]), _TEXT
    ),
    st.builds(lambda c: {"role": "user", "content": [{"type": "text", "text": c}]}, _TEXT),
    st.builds(lambda c: {"role": "user", "content": c, "x": 1}, _TEXT),
    st.builds(lambda c: {"role": "tool", "tool_call_id": "k", "content": c}, _TEXT),
    st.builds(
        lambda a: {
            "role": "assistant",
            "content": None,
            "tool_calls": [{"id": "k", "type": "function", "function": {"name": "f", "arguments": a}}],
        },
        st.sampled_from(["{}", '{"a": 1}', "not json"]),
    ),
)
_OP = st.one_of(
    st.tuples(st.just("append"), _MESSAGE),
    st.tuples(st.just("set_text"), st.integers(0, 50), _TEXT),
    st.tuples(st.just("set_key"), st.integers(0, 50), st.sampled_from([1, 1.0, True, "1", None])),
    st.tuples(st.just("delete"), st.integers(0, 50)),
    st.tuples(st.just("model"), st.sampled_from(["gpt-4o", "gpt-4", "o3", "gpt-3.5-turbo-0301"])),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(start=st.lists(_MESSAGE, min_size=MIN, max_size=MIN + 4), ops=st.lists(_OP, max_size=12))
def test_any_sequence_of_edits_counts_as_if_counted_afresh(
    start: list[dict[str, Any]], ops: list[Any]
) -> None:
    _cache.clear_caches()
    history = copy.deepcopy(start)
    model = "gpt-4o"
    same("chat.completions", {"model": model, "messages": history})
    for op in ops:
        kind = op[0]
        if kind == "append":
            history.append(copy.deepcopy(op[1]))
        elif kind == "model":
            model = op[1]
        elif not history:
            continue
        elif kind == "set_text":
            message = history[op[1] % len(history)]
            if isinstance(message.get("content"), list):
                message["content"][0]["text"] = op[2]
            else:
                message["content"] = op[2]
        elif kind == "set_key":
            history[op[1] % len(history)]["x"] = op[2]
        elif kind == "delete":
            del history[op[1] % len(history)]
        if history:
            same("chat.completions", {"model": model, "messages": history})


# --- the shortcuts for common messages ---------------------------------------------------------------


@pytest.mark.parametrize("model", ["gpt-4o", "o3", "gpt-3.5-turbo-0301"])
def test_common_messages_count_as_the_general_path_counts_them(model: str) -> None:
    # Plain text, tool results and function calls have shortcuts; a read-only mapping (not a
    # dict) takes the general path, which validates everything and builds JSON paths.
    history = chat_history(7)
    history += [
        {"role": "tool", "tool_call_id": None, "content": "orphan result"},
        {"role": "assistant", "content": "", "tool_calls": [{"type": "function", "function": {"name": "f"}}]},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [{"id": "x", "function": {"name": "g", "arguments": None}}],
        },
        {"role": "tool", "tool_call_id": "x", "content": ""},
        {"role": "assistant", "content": "text too", "tool_calls": [{"id": "y", "function": {"name": "h"}}]},
        {"role": "tool", "tool_call_id": "y", "content": [{"type": "text", "text": "parts"}]},
    ]
    general = [MappingProxyType(message) for message in history]
    for n in range(1, len(history) + 1):
        shortcut = uncached("chat.completions", {"model": model, "messages": history[:n]})
        assert shortcut == uncached("chat.completions", {"model": model, "messages": general[:n]})
