"""The openai SDK: its endpoints and wire format (the shared hooks are in ``_generated``).

Chat completions, Responses (``/responses`` and ``/responses/compact``), legacy completions
and embeddings are metered, on every client class (OpenAI, AsyncOpenAI, AzureOpenAI,
``with_options()`` copies, the module-level client) and surface (raw and streaming
responses, ``.parse()``, the stream helpers), in openai 1.x to 3.x. A chat or completions
stream is asked for its usage chunk (``stream_options.include_usage``), which code written
for streams without it never sees.
"""

from __future__ import annotations

import weakref
from collections.abc import Mapping
from typing import Any

from budgetguard import _context
from budgetguard._calls import Call
from budgetguard._errors import BudgetGuardWarning
from budgetguard._preflight import server_counter
from budgetguard._providers._generated import Hooks, Wire, json_body
from budgetguard._scopes import Budget
from budgetguard._usage import TokenCounts, UsageFormatError
from budgetguard._warnings import warn

__all__ = ["endpoint_of", "instrument", "instrumented", "uninstall"]


def endpoint_of(method: str, url: str) -> str | None:
    """The billed endpoint a request goes to, or None for anything budgetguard does not meter."""
    if method.lower() != "post":
        return None
    path = url.split("?", 1)[0].rstrip("/")
    # Order matters: "/chat/completions" also ends with "/completions".
    if path.endswith("/chat/completions"):
        return "chat.completions"
    if path.endswith("/completions"):
        return "completions"
    if path.endswith(("/responses", "/responses/compact")):
        return "responses"  # compaction is billed like a response and reports its usage
    if path.endswith("/embeddings"):
        return "embeddings"
    return None


# (method, url) -> endpoint: a client posts to a handful of paths, each parsed once.
_endpoints: dict[tuple[str, str], str | None] = {}


def _remember_endpoint(method: str, url: str) -> str | None:
    endpoint = endpoint_of(method, url)
    if len(_endpoints) >= 512:  # urls with ids in them (retrieve, cancel) must not pile up
        _endpoints.clear()
    _endpoints[method, url] = endpoint
    return endpoint


# The last base URL seen and whether it is a data-residency host: clients keep one URL object.
_last_base_url: tuple[object, bool] = (None, False)


def _regional(base_url: object) -> bool:
    """Whether ``base_url`` is one of OpenAI's data-residency hosts (eu.api.openai.com, ...),
    which bill an uplift."""
    global _last_base_url
    last = _last_base_url
    if last[0] is base_url:
        return last[1]
    host = getattr(base_url, "host", "")
    regional = isinstance(host, str) and host.endswith(".api.openai.com")
    _last_base_url = (base_url, regional)
    return regional


# Billed endpoints budgetguard cannot price: a capped budget warns that they pass uncounted.
_UNMETERED_BILLED = (
    "/images/generations", "/images/edits", "/images/variations", "/audio/speech",
    "/audio/transcriptions", "/audio/translations", "/videos",
)  # fmt: skip
_warned_unmetered: set[str] = set()


def _warn_unmetered(method: str, url: str, entries: tuple[_context.Entry, ...]) -> None:
    """Warn (once per endpoint) that a billed request inside a capped budget is not counted."""
    if method.lower() != "post":
        return
    path = url.split("?", 1)[0].rstrip("/")
    for suffix in _UNMETERED_BILLED:
        if path.endswith(suffix) and suffix not in _warned_unmetered:
            budgets = [
                e.scope.name for e in entries if isinstance(e.scope, Budget) and not e.scope.limits.unlimited
            ]
            if budgets:
                _warned_unmetered.add(suffix)
                warn(
                    f"budgetguard does not meter {path}: its cost is not counted against budget "
                    f"{budgets[-1]!r} (only chat completions, responses, completions and embeddings are)",
                    BudgetGuardWarning,
                )
            return


_STREAM_USAGE_ENDPOINTS = ("chat.completions", "completions")
# Calls whose usage chunk budgetguard asked for (and hides). Weak: it forgets ended calls.
_injected: weakref.WeakSet[Call] = weakref.WeakSet()


class OpenAIWire(Wire):
    sdk = "openai"
    provider = "openai"

    def begin(self, client: Any, options: Any, entries: tuple[_context.Entry, ...]) -> Call | None:
        method, url = getattr(options, "method", ""), getattr(options, "url", "")
        try:
            endpoint = _endpoints[method, url]
        except (KeyError, TypeError):  # TypeError: an unhashable url object
            method, url = str(method), str(url)
            endpoint = _remember_endpoint(method, url)
        if endpoint is None:
            _warn_unmetered(method, url, entries)
            return None
        body = json_body(options)
        if body is None:
            return None
        counter = server_counter(endpoint, client, body)
        # The SDK's own attribute: openai 3.x's base_url property runs an import statement on
        # every read, which cost more than the rest of this method.
        base_url = getattr(client, "_base_url", None)
        if base_url is None:
            base_url = getattr(client, "base_url", None)
        # Positional: building a class with keyword arguments costs twice as much, every call.
        region_url = base_url if _regional(base_url) else None
        call = Call(endpoint, body, entries, counter, self.provider, region_url)
        if call.stream and endpoint in _STREAM_USAGE_ENDPOINTS:
            stream_options = body.get("stream_options")
            if not (isinstance(stream_options, Mapping) and stream_options.get("include_usage")):
                # Ask for the usage chunk; hides() keeps it from code not written for it.
                merged = dict(stream_options) if isinstance(stream_options, Mapping) else {}
                merged["include_usage"] = True
                call.edit_body()["stream_options"] = merged
                _injected.add(call)
        return call

    def billed(self, options: Any) -> bool:
        return endpoint_of(str(getattr(options, "method", "")), str(getattr(options, "url", ""))) is not None

    def observe(self, call: Call, data: Any) -> None:
        _observe(call, data)

    def hides(self, call: Call, item: Any) -> bool:
        # The chunk we asked for with include_usage has no choices; code written for streams
        # without it does chunk.choices[0], so it must never see this chunk.
        return (
            getattr(item, "usage", None) is not None
            and not getattr(item, "choices", True)
            and call in _injected
        )


_hooks = Hooks(OpenAIWire())


def instrumented() -> bool:
    return _hooks.installed


def instrument() -> None:
    """Install the hooks (idempotent, thread-safe). Entering any scope does this for you."""
    _hooks.install()


def uninstall() -> None:
    _hooks.uninstall()


_context.on_first_scope(instrument)


# -------------------------------------------------------------------------------------------
# the wire format: what a body or an event tells the call
# -------------------------------------------------------------------------------------------

_TERMINAL_RESPONSE_EVENTS = ("response.completed", "response.incomplete", "response.failed")


def _observe(call: Call, data: Any) -> None:
    """Report one response body or stream event to its call."""
    if call.finished or (type(data) is not dict and not isinstance(data, Mapping)):
        return
    inner = data.get("data")
    if "event" in data and isinstance(inner, Mapping):
        data = inner  # the SDK's synthesized {"event": ..., "data": ...} shape
    kind = data.get("type")
    if isinstance(kind, str) and kind.startswith("response."):
        _observe_response_event(call, kind, data)
        return
    usage = data.get("usage")
    if call.stream:
        _collect_choices(call, data)
        if usage is not None:
            _report_usage(call, usage, data)
        return
    if usage is not None:
        _report_usage(call, usage, data)
    elif data.get("object") == "response" and data.get("status") in ("queued", "in_progress"):
        call.settle_worst_case("a background response reports its usage only when it completes")
    elif data.get("object") == "response" or "output" in data:
        _collect_response_output(call, data)  # only needed to estimate a missing usage
    else:
        _collect_choices(call, data)


def _report_usage(call: Call, usage: Any, data: Mapping[str, Any]) -> None:
    try:
        counts = TokenCounts.from_openai(usage)
    except UsageFormatError as exc:
        call.settle_estimated(f"the server's usage was unreadable ({exc})")
        return
    output = data.get("output")
    if isinstance(output, list):  # a Responses reply: its built-in tool calls are billed per call
        kinds = [item.get("type") for item in output if isinstance(item, Mapping)]
        searches, file_searches = kinds.count("web_search_call"), kinds.count("file_search_call")
        if searches or file_searches:
            counts = counts._replace(web_search_requests=searches, file_search_requests=file_searches)
    call.saw_usage(counts, _str(data.get("model")), _str(data.get("service_tier")))


def _observe_response_event(call: Call, kind: str, data: Mapping[str, Any]) -> None:
    if kind in _TERMINAL_RESPONSE_EVENTS:
        response = data.get("response")
        if isinstance(response, Mapping) and response.get("usage") is not None:
            _report_usage(call, response["usage"], response)
            call.stream_ended(completed=True)
    elif kind.endswith(".delta"):
        delta = data.get("delta")
        if isinstance(delta, str):
            call.saw_text(delta)
    elif kind in ("response.output_text.done", "response.output_item.done", "response.content_part.done"):
        call.finishing = True  # response.completed, with the usage, is a few events away


def _collect_choices(call: Call, data: Mapping[str, Any]) -> None:
    choices = data.get("choices")
    if not isinstance(choices, list):
        return
    for choice in choices:
        if not isinstance(choice, Mapping):
            continue
        if choice.get("finish_reason"):
            call.finishing = True  # the usage chunk comes next
        if isinstance(choice.get("text"), str):
            call.saw_text(choice["text"])
        for part in (choice.get("delta"), choice.get("message")):
            if not isinstance(part, Mapping):
                continue
            if isinstance(part.get("content"), str):
                call.saw_text(part["content"])
            for tool_call in part.get("tool_calls") or ():
                function = tool_call.get("function") if isinstance(tool_call, Mapping) else None
                if isinstance(function, Mapping) and isinstance(function.get("arguments"), str):
                    call.saw_text(function["arguments"])


def _collect_response_output(call: Call, data: Mapping[str, Any]) -> None:
    for item in data.get("output") or ():
        if not isinstance(item, Mapping):
            continue
        if isinstance(item.get("arguments"), str):
            call.saw_text(item["arguments"])
        for part in item.get("content") or ():
            if isinstance(part, Mapping) and isinstance(part.get("text"), str):
                call.saw_text(part["text"])


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None
