"""How the simulator bills prompts: its own counter (independent of the estimator) and replay.

Expected counts are written by hand from the counting rules in ``budgetguard.testing._counting``
(token counts of each string noted beside it); nothing here asks budgetguard's estimator.
"""

from __future__ import annotations

import ast
import base64
import inspect
import json
import struct
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
from openai import OpenAI

from budgetguard.testing import Reply, Simulator
from budgetguard.testing._counting import count_prompt_tokens, image_size, image_tokens
from budgetguard.testing._recordings import Recordings, canonical_body

RECORDED_USAGE = Path(__file__).resolve().parents[2] / "shared/data/openai_recorded_usage.jsonl"
needs_recordings = pytest.mark.skipif(
    not RECORDED_USAGE.is_file(), reason=f"the recorded usage data set is not at {RECORDED_USAGE}"
)
COUNTING_SOURCE = Path(__file__).resolve().parents[1] / "budgetguard/testing/_counting.py"

# o200k_base (gpt-4o) and cl100k_base agree on every string used here:
# "user" 1, "system" 1, "Hello there" 2, "Be brief" 2, "hi" 1, "Ann" 1,
# "What is the weather?" 5, "a b c" 3, "d" 1, "one" 1, "two three" 2.
HELLO: list[Any] = [{"role": "user", "content": "Hello there"}]  # 3 + 1 + 2 = 6
WEATHER_TOOL = {
    "type": "function",
    # func_init 7 + "get_weather:" 3 + prop_init 3 + (prop_key 3 + "city:string:" 3) = 19
    "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}


def png(width: int, height: int) -> str:
    """A data URL holding just a PNG signature and IHDR chunk: enough to read the size."""
    ihdr = struct.pack(">I", 13) + b"IHDR" + struct.pack(">II", width, height) + b"\x08\x02\x00\x00\x00"
    return "data:image/png;base64," + base64.b64encode(b"\x89PNG\r\n\x1a\n" + ihdr + b"\0\0\0\0").decode()


def image_message(url: str, detail: str | None) -> list[Any]:
    image: dict[str, Any] = {"url": url} if detail is None else {"url": url, "detail": detail}
    return [
        {
            "role": "user",
            "content": [{"type": "text", "text": "hi"}, {"type": "image_url", "image_url": image}],
        }
    ]


@pytest.fixture
def client() -> Iterator[OpenAI]:
    with Simulator() as sim, OpenAI(base_url=sim.base_url, api_key="sim", max_retries=0, timeout=20) as c:
        yield c


# --- the default counter, over HTTP ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        pytest.param({"messages": HELLO}, 9, id="one message: 3 + user 1 + text 2, primer 3"),
        pytest.param(
            {
                "messages": [
                    {"role": "system", "content": "Be brief"},
                    {"role": "user", "name": "Ann", "content": "hi"},
                ]
            },
            16,
            id="system 3+1+2, named user 3+1+(1+1)+1, primer 3",
        ),
        pytest.param({"messages": HELLO, "tools": [WEATHER_TOOL]}, 40, id="tools: 9 + 19 + func_end 12"),
        pytest.param(
            {"messages": HELLO, "functions": [WEATHER_TOOL["function"]]}, 40, id="legacy functions: as tools"
        ),
        pytest.param(
            {
                "messages": HELLO,
                # {"name":"answer","schema":{"type":"object"}}: 11
                "response_format": {
                    "type": "json_schema",
                    "json_schema": {"name": "answer", "schema": {"type": "object"}},
                },
            },
            20,
            id="json_schema: 9 + 11",
        ),
        pytest.param(
            {"messages": image_message("https://example.com/cat.png", "low")}, 93, id="low image: 85"
        ),
        pytest.param({"messages": image_message(png(1024, 1024), "high")}, 773, id="1024x1024: 4 tiles"),
        pytest.param({"messages": image_message(png(2048, 4096), None)}, 1113, id="2048x4096: 6 tiles"),
        pytest.param(
            {"messages": image_message("https://example.com/x.png", "auto")}, 773, id="unknown size"
        ),
    ],
)
def test_chat_prompt_tokens_follow_the_public_counting_rules(
    client: OpenAI, kwargs: dict[str, Any], expected: int
) -> None:
    usage = client.chat.completions.create(model="gpt-4o", **kwargs).usage
    assert usage is not None
    assert usage.prompt_tokens == expected
    assert usage.prompt_tokens_details is not None
    assert usage.prompt_tokens_details.cached_tokens == 0


def test_responses_prompt_tokens_follow_the_public_counting_rules(client: OpenAI) -> None:
    # instructions as a system message 3+1+2, input as a user message 3+1+5, primer 3.
    usage = client.responses.create(
        model="gpt-4o", input="What is the weather?", instructions="Be brief"
    ).usage
    assert usage is not None
    assert usage.input_tokens == 18
    items: Any = [
        {"role": "user", "content": [{"type": "input_text", "text": "hi"}]},  # 3 + 1 + 1
        # a function call's output: "sunny" 2, plus 3 (its ids are not prompt)
        {"type": "function_call_output", "call_id": "c1", "output": "sunny"},
        # a function call: name "add" 1 + arguments '{"a":1}' 5, plus 3
        {"type": "function_call", "call_id": "c1", "name": "add", "arguments": '{"a":1}', "id": "fc_1"},
        # any other item: 3 plus its JSON text {"type":"reasoning","summary":[]}: 9
        {"type": "reasoning", "summary": []},
    ]
    usage = client.responses.create(model="gpt-4o", input=items).usage
    assert usage is not None
    assert usage.input_tokens == 5 + 5 + 9 + 12 + 3  # items, then the primer
    assert client.responses.input_tokens.count(model="gpt-4o", input="hi").input_tokens == 8


# The OpenAI cookbook's own example for num_tokens_for_tools ("How to count tokens with tiktoken",
# section 7), whose published counts the API confirmed: 105 on gpt-3.5-turbo / gpt-4, 101 on gpt-4o.
COOKBOOK_MESSAGES: list[Any] = [
    # 3 + "system" 1 + 14 = 18
    {
        "role": "system",
        "content": "You are a helpful assistant that can answer to questions about the weather.",
    },
    # 3 + "user" 1 + 8 (o200k_base; 9 in cl100k_base)
    {"role": "user", "content": "What's the weather like in San Francisco?"},
]
COOKBOOK_TOOLS: list[Any] = [
    {
        "type": "function",
        "function": {
            "name": "get_current_weather",
            # "get_current_weather:Get the current weather in a given location": 11
            "description": "Get the current weather in a given location",
            "parameters": {
                "type": "object",
                "properties": {
                    # prop_key 3 + "location:string:The city and state, e.g. San Francisco, CA" 14
                    "location": {
                        "type": "string",
                        "description": "The city and state, e.g. San Francisco, CA",
                    },
                    # prop_key 3 + enum_init -3 + (3 + "celsius" 2) + (3 + "fahrenheit" 2)
                    # + "unit:string:The unit of temperature to return" 8 = 18
                    "unit": {
                        "type": "string",
                        "description": "The unit of temperature to return",
                        "enum": ["celsius", "fahrenheit"],
                    },
                },
                "required": ["location"],
            },
        },
    }
]


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        # messages 18 + 12 + primer 3 = 33; tools 7 + 11 + prop_init 3 + 17 + 18 + func_end 12 = 68
        ("gpt-4o", 101),
        ("gpt-4o-mini", 101),
        # messages 18 + 13 + 3 = 34; tools as above but func_init 10: 71
        ("gpt-4", 105),
        ("gpt-3.5-turbo", 105),
    ],
)
def test_function_tools_cost_what_the_cookbook_counts_for_its_own_example(
    client: OpenAI, model: str, expected: int
) -> None:
    usage = client.chat.completions.create(
        model=model, messages=COOKBOOK_MESSAGES, tools=COOKBOOK_TOOLS
    ).usage
    assert usage is not None
    assert usage.prompt_tokens == expected


def test_responses_function_tools_are_counted_flat_and_built_in_tools_as_their_json(client: OpenAI) -> None:
    add: Any = {
        "type": "function",
        "name": "add",
        "description": "Add two numbers.",  # "add:Add two numbers" 4: the final "." is dropped
        "parameters": {
            "type": "object",
            # each: prop_key 3 + "a:integer:" 4
            "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
            "required": ["a", "b"],
            "additionalProperties": False,
        },
        "strict": True,
    }
    # instructions 3 + 1 + "Use the tool." 4, user 3 + 1 + "What is 2 + 3?" 8, primer 3: 23;
    # add: 7 + 4 + 3 + 7 + 7 = 28; func_end 12.
    usage = client.responses.create(
        model="gpt-4o-mini",
        instructions="Use the tool.",
        input=[{"role": "user", "content": "What is 2 + 3?"}],
        tools=[add],
        max_output_tokens=20,
    ).usage
    assert usage is not None
    assert usage.input_tokens == 63
    # input "hi" 3 + 1 + 1, primer 3: 8; web_search: 3 + '{"type":"web_search"}' 6.
    usage = client.responses.create(model="gpt-4o", input="hi", tools=[{"type": "web_search"}]).usage
    assert usage is not None
    assert usage.input_tokens == 17
    usage = client.responses.create(model="gpt-4o", input="hi", tools=[{"type": "web_search"}, add]).usage
    assert usage is not None
    assert usage.input_tokens == 8 + 9 + 28 + 12


def test_a_function_without_properties_costs_its_name_and_description() -> None:
    # "lookup:Look it up" 5 (one final "." dropped, "Look it up.." keeps one: "lookup:Look it up." 6)
    def chat(description: str) -> int:
        function = {"name": "lookup", "description": description, "parameters": {"type": "object"}}
        tool = {"type": "function", "function": function}
        return count_prompt_tokens("chat.completions", {"model": "gpt-4o", "messages": [], "tools": [tool]})

    assert chat("Look it up.") == 3 + 7 + 5 + 12  # primer, func_init, name:description, func_end
    assert chat("Look it up") == 27
    assert chat("Look it up..") == 28


def test_legacy_and_embedding_prompt_tokens_are_the_tokens_of_each_input(client: OpenAI) -> None:
    usage = client.completions.create(model="gpt-3.5-turbo-instruct", prompt=["a b c", "d"]).usage
    assert usage is not None
    assert usage.prompt_tokens == 4
    usage = client.completions.create(model="gpt-3.5-turbo-instruct", prompt=[[1, 2, 3], [4]]).usage
    assert usage is not None
    assert usage.prompt_tokens == 4
    embedded = client.embeddings.create(model="text-embedding-3-small", input=["one", "two three"])
    assert embedded.usage.prompt_tokens == 3


def test_the_image_formula_matches_the_documented_examples() -> None:
    assert image_tokens("low", (4096, 8192)) == 85
    assert image_tokens("high", (1024, 1024)) == 765  # 768x768: 4 tiles
    assert image_tokens("high", (2048, 4096)) == 1105  # 768x1536: 6 tiles
    assert image_tokens("auto", (100, 100)) == 255  # never scaled up: 1 tile
    assert image_tokens(None, None) == 765


def test_image_sizes_are_read_from_png_gif_and_jpeg_data_urls() -> None:
    gif = b"GIF89a" + struct.pack("<HH", 300, 200) + b"\0" * 8
    jpeg = (
        b"\xff\xd8"
        + b"\xff\xe0" + struct.pack(">H", 16) + b"JFIF\0" + b"\0" * 9
        + b"\xff\xc0" + struct.pack(">HBHH", 17, 8, 480, 640) + b"\0" * 10
    )  # fmt: skip
    assert image_size(png(1024, 768)) == (1024, 768)
    assert image_size("data:image/gif;base64," + base64.b64encode(gif).decode()) == (300, 200)
    assert image_size("data:image/jpeg;base64," + base64.b64encode(jpeg).decode()) == (640, 480)
    assert image_size("data:image/png;base64,not base64!") is None
    assert image_size("https://example.com/cat.png") is None


@pytest.mark.parametrize(
    ("endpoint", "body"),
    [
        (
            "chat.completions",
            {"model": "gpt-4o", "messages": [{"role": "user"}, {"role": "tool", "content": None}]},
        ),
        (
            "chat.completions",
            {"model": "gpt-4o", "messages": [{"role": "user", "content": [{"type": "mystery"}]}]},
        ),
        ("chat.completions", {"model": "gpt-4o", "messages": [], "tools": "nope", "response_format": 3}),
        ("chat.completions", {"model": 7, "messages": "x", "functions": [1, None]}),
        (
            "chat.completions",
            {
                "model": "gpt-4",
                "messages": [],
                "tools": [
                    {"type": "function", "function": {"name": 5, "parameters": {"properties": {"a": []}}}},
                    {"type": "function"},
                    {"type": "custom", "custom": {"name": "x"}},
                    {"type": "function", "function": {"parameters": {"properties": {"b": {"enum": "x"}}}}},
                ],
            },
        ),
        (
            "responses",
            {
                "model": "gpt-4o",
                "tools": [{"type": "function", "parameters": []}, {"type": "function", "name": None}, 3],
            },
        ),
        ("responses", {"model": "gpt-4o"}),
        (
            "responses",
            {"model": "gpt-4o", "input": [{"role": "user", "content": {"odd": True}}, 5], "text": []},
        ),
        ("responses", {"model": "gpt-4o", "input": [{"type": "input_image", "image_url": 5, "detail": []}]}),
        ("completions", {"model": "gpt-3.5-turbo-instruct", "prompt": [True, None, {"a": 1}]}),
        ("embeddings", {"model": "text-embedding-3-small", "input": "\ud800 lone surrogate <|endoftext|>"}),
    ],
)
def test_the_counter_counts_odd_bodies_without_raising(endpoint: str, body: dict[str, Any]) -> None:
    first = count_prompt_tokens(endpoint, body)
    assert isinstance(first, int)
    assert first >= 0
    assert count_prompt_tokens(endpoint, body) == first  # deterministic


def test_a_malformed_message_is_refused_before_counting(client: OpenAI) -> None:
    with pytest.raises(openai.BadRequestError, match=r"messages\[1\]\.content\[0\]") as caught:
        client.post(
            "/chat/completions",
            body={"model": "gpt-4o", "messages": [*HELLO, {"role": "user", "content": ["hi"]}]},
            cast_to=object,
        )
    assert caught.value.param == "messages[1].content[0]"
    with pytest.raises(openai.BadRequestError, match="'input'") as caught:
        client.post("/responses", body={"model": "gpt-4o", "input": 5}, cast_to=object)
    assert caught.value.param == "input"


# --- independence from the estimator ----------------------------------------------------------------


def _imports(source: Path, package: str) -> set[str]:
    """The absolute names of the modules ``source`` (a module of ``package``) imports."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(source.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package.rsplit(".", node.level - 1)[0] if node.level else ""
            module = ".".join(part for part in (base, node.module or "") if part)
            names.add(module)
            names.update(f"{module}.{alias.name}" for alias in node.names)
    return names


def test_the_counter_module_and_what_it_imports_never_import_the_estimator() -> None:
    root = COUNTING_SOURCE.parents[2]
    seen: set[str] = set()
    todo = ["budgetguard.testing._counting"]
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        seen.add(module)
        path = root / (module.replace(".", "/") + ".py")
        if not path.is_file():
            path = root / module.replace(".", "/") / "__init__.py"
        if path.is_file():
            package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
            todo.extend(name for name in _imports(path, package) if name.startswith("budgetguard"))
    assert "budgetguard._tokenizer" in seen  # the walk does follow imports
    assert not [name for name in seen if name.startswith("budgetguard._estimate")]


_WITHOUT_ESTIMATOR = """
import json, sys
sys.modules["budgetguard._estimate"] = None  # any import of the estimator now fails
from openai import OpenAI
from budgetguard.testing import Simulator

with Simulator() as sim, OpenAI(base_url=sim.base_url, api_key="sim", max_retries=0) as client:
    counts = [
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "Hello there"}])
        .usage.prompt_tokens,
        client.responses.create(model="gpt-4o", input="What is the weather?", instructions="Be brief")
        .usage.input_tokens,
        client.completions.create(model="gpt-3.5-turbo-instruct", prompt=["a b c", "d"]).usage.prompt_tokens,
        client.embeddings.create(model="text-embedding-3-small", input=["one", "two three"])
        .usage.prompt_tokens,
    ]
print(json.dumps(counts))
"""


def test_the_simulator_bills_prompts_with_the_estimator_unimportable() -> None:
    result = subprocess.run(
        [sys.executable, "-c", _WITHOUT_ESTIMATOR], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == [9, 18, 4, 3]


def test_a_custom_prompt_counter_still_overrides_the_default() -> None:
    seen: list[str] = []

    def counter(endpoint: str, body: dict[str, Any]) -> int:
        seen.append(endpoint)
        return 1234

    with (
        Simulator(prompt_counter=counter) as sim,
        OpenAI(base_url=sim.base_url, api_key="sim", max_retries=0) as client,
    ):
        usage = client.chat.completions.create(model="gpt-4o", messages=HELLO).usage
    assert usage is not None
    assert usage.prompt_tokens == 1234
    assert seen == ["chat.completions"]


# --- replaying recorded usage --------------------------------------------------------------------------


def _sdk_call(method: Callable[..., Any], request: dict[str, Any]) -> Any:
    """Call an SDK method with a recorded body: known parameters by name, the rest as extra_body."""
    known = inspect.signature(method).parameters
    kwargs = {k: v for k, v in request.items() if k in known}
    extra = {k: v for k, v in request.items() if k not in known}
    return method(**kwargs, extra_body=extra or None)


def _records() -> list[dict[str, Any]]:
    with RECORDED_USAGE.open(encoding="utf-8") as lines:
        return [json.loads(line) for line in lines if line.strip()]


@needs_recordings
def test_recorded_chat_bodies_are_billed_their_recorded_prompt_tokens_over_http() -> None:
    # A recorded chat body our own rules count differently: only replay can report its usage.
    record = next(
        r
        for r in _records()
        if r["endpoint"] == "chat.completions"
        and not r["request"].get("stream")
        and count_prompt_tokens("chat.completions", r["request"]) != r["usage"]["prompt_tokens"]
    )
    recorded = record["usage"]
    with (
        Simulator(recorded_usage=RECORDED_USAGE) as sim,
        OpenAI(base_url=sim.base_url, api_key="sim", max_retries=0, timeout=20) as client,
    ):
        sim.script(Reply(content="ok"))
        usage = _sdk_call(client.chat.completions.create, record["request"]).usage
        # Streaming and an output cap do not change what a body is billed: still replayed.
        chunks = list(
            _sdk_call(
                client.chat.completions.create,
                {
                    **record["request"],
                    "stream": True,
                    "stream_options": {"include_usage": True},
                    "max_tokens": 3,
                },
            )
        )
    choices = record["request"].get("n") or 1
    assert usage.prompt_tokens == recorded["prompt_tokens"]
    assert usage.completion_tokens == choices  # "ok" per choice: the output is still the simulator's
    assert usage.total_tokens == recorded["prompt_tokens"] + choices
    if "prompt_tokens_details" in recorded:
        assert usage.prompt_tokens_details.cached_tokens == recorded["prompt_tokens_details"]["cached_tokens"]
    assert chunks[-1].usage.prompt_tokens == recorded["prompt_tokens"]


@needs_recordings
def test_recorded_responses_bodies_replay_their_input_and_cached_tokens_over_http() -> None:
    record = next(
        r
        for r in _records()
        if r["endpoint"] == "responses" and r["usage"]["input_tokens_details"].get("cached_tokens")
    )
    recorded = record["usage"]
    with (
        Simulator(recorded_usage=str(RECORDED_USAGE)) as sim,
        OpenAI(base_url=sim.base_url, api_key="sim", max_retries=0, timeout=20) as client,
    ):
        result = _sdk_call(client.responses.create, record["request"])
        if record["request"].get("stream"):
            result = next(e for e in result if e.type == "response.completed").response
        assert len(sim.requests) == 1
    assert result.usage.input_tokens == recorded["input_tokens"]
    assert (
        result.usage.input_tokens_details.cached_tokens == recorded["input_tokens_details"]["cached_tokens"]
    )
    assert recorded["input_tokens"] != count_prompt_tokens("responses", record["request"])


@needs_recordings
def test_the_whole_recorded_data_set_loads() -> None:
    records = _records()
    recordings = Recordings(RECORDED_USAGE)
    first: dict[tuple[str, str], int] = {}  # bodies recorded twice replay their first recording
    for record in records:
        key = "input_tokens" if record["endpoint"] == "responses" else "prompt_tokens"
        first.setdefault((record["endpoint"], canonical_body(record["request"])), record["usage"][key])
    assert len(recordings) == len(first) > 0
    for record in records:
        found = recordings.lookup(record["endpoint"], record["request"])
        assert found is not None
        assert found.tokens == first[record["endpoint"], canonical_body(record["request"])]


def test_replay_takes_recordings_as_objects_for_every_endpoint_including_input_token_counts() -> None:
    recordings = [
        {
            "endpoint": "responses",
            "request": {"model": "gpt-4o", "input": "hi"},
            "usage": {"input_tokens": 1500, "input_tokens_details": {"cached_tokens": 1024}},
        },
        {
            "endpoint": "embeddings",
            "request": {"model": "text-embedding-3-small", "input": "one"},
            "usage": {"prompt_tokens": 77, "total_tokens": 77},
        },
        {
            "endpoint": "completions",
            "request": {"model": "gpt-3.5-turbo-instruct", "prompt": "d"},
            "usage": {"prompt_tokens": 5},
        },
    ]
    with (
        Simulator(recorded_usage=recordings, prompt_counter=lambda endpoint, body: 1) as sim,
        OpenAI(base_url=sim.base_url, api_key="sim", max_retries=0) as client,
    ):
        with client.responses.stream(model="gpt-4o", input="hi") as stream:
            final = stream.get_final_response()
        count = client.responses.input_tokens.count(model="gpt-4o", input="hi").input_tokens
        # The SDK adds encoding_format="base64" to embeddings; matching ignores it.
        embedded = client.embeddings.create(model="text-embedding-3-small", input="one").usage.prompt_tokens
        legacy = client.completions.create(model="gpt-3.5-turbo-instruct", prompt="d", max_tokens=2).usage
        other = client.responses.create(model="gpt-4o", input="hi!").usage
    assert final.usage is not None
    assert (final.usage.input_tokens, final.usage.input_tokens_details.cached_tokens) == (1500, 1024)
    assert (count, embedded) == (1500, 77)
    assert legacy is not None
    assert legacy.prompt_tokens == 5
    assert other is not None
    assert (other.input_tokens, other.input_tokens_details.cached_tokens) == (1, 0)  # not recorded: counted


def test_replay_matches_on_canonical_json_ignoring_only_delivery_caps_and_encoding() -> None:
    body = {"model": "gpt-4o", "messages": HELLO, "temperature": 0}
    recordings = Recordings(
        [{"endpoint": "chat.completions", "request": body, "usage": {"prompt_tokens": 50}}]
    )
    same = {
        "stream": True,
        "stream_options": {"include_usage": True},
        "max_tokens": 1,
        "max_completion_tokens": 1,
        "temperature": 0,
        "messages": [{"content": "Hello there", "role": "user"}],  # key order does not matter
        "model": "gpt-4o",
    }
    found = recordings.lookup("chat.completions", same)
    assert found is not None
    assert found.tokens == 50
    assert recordings.lookup("responses", body) is None  # another endpoint
    assert recordings.lookup("chat.completions", {**body, "temperature": 0.0}) is None  # 0 is not 0.0
    assert recordings.lookup("chat.completions", {**body, "n": 2}) is None  # any other field counts
    assert recordings.lookup("chat.completions", {**body, "model": "gpt-4o-mini"}) is None


def test_the_first_of_two_recordings_of_one_body_wins() -> None:
    body = {"model": "gpt-4o", "input": "hi"}
    recordings = Recordings(
        [
            {"endpoint": "responses", "request": body, "usage": {"input_tokens": 10}},
            {"endpoint": "responses", "request": {**body, "stream": True}, "usage": {"input_tokens": 20}},
        ]
    )
    found = recordings.lookup("responses", body)
    assert found is not None
    assert (found.tokens, dict(found.details), len(recordings)) == (10, {}, 1)


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ("[1, 2]", "must be a JSON object"),
        ("{not json", "not JSON"),
        ('{"endpoint": "images", "request": {}, "usage": {}}', "endpoint must be one of"),
        ('{"endpoint": "responses", "request": [], "usage": {}}', "'request' and 'usage'"),
        ('{"endpoint": "responses", "request": {}, "usage": {"prompt_tokens": 3}}', "usage.input_tokens"),
        (
            '{"endpoint": "chat.completions", "request": {}, "usage": {"prompt_tokens": -1}}',
            "usage.prompt_tokens",
        ),
        (
            '{"endpoint": "chat.completions", "request": {}, '
            '"usage": {"prompt_tokens": 1, "prompt_tokens_details": {"cached_tokens": "many"}}}',
            "prompt_tokens_details",
        ),
    ],
)
def test_malformed_recordings_are_refused_naming_the_line(tmp_path: Path, line: str, problem: str) -> None:
    path = tmp_path / "usage.jsonl"
    good = '{"endpoint": "embeddings", "request": {"input": "x"}, "usage": {"prompt_tokens": 1}}'
    path.write_text(f"{good}\n\n{line}\n", encoding="utf-8")
    with pytest.raises(ValueError, match=problem) as caught:
        Simulator(recorded_usage=path)
    assert f"{path}:3" in str(caught.value)
