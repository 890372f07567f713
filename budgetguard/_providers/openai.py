"""The hook on the openai SDK: the only module that knows its internals and its wire format.

The SDK has no middleware, and patching resource methods misses ``with_raw_response`` and
``.parse()``. These choke points serve every client class (OpenAI, AsyncOpenAI, AzureOpenAI,
``with_options()`` copies, the module-level client) and every surface, in openai 1.x-3.x:

- ``SyncAPIClient.request`` / ``AsyncAPIClient.request``: see the JSON body before anything is
  sent; reserve there, or refuse (nothing is sent), or rewrite the body (clamp, stream usage).
- ``BaseClient._build_request``: runs once per attempt, SDK retries included; it tags each
  outgoing request with its :class:`~budgetguard._calls.Call`.
- ``BaseClient._process_response_data``: every parsed body and every SSE event, whenever the
  caller parses it (raw responses are parsed lazily).
- ``Stream.__stream__`` / ``AsyncStream.__stream__``: hide the usage-only chunk we asked for
  and report a stream's end; ``Stream.close`` / ``AsyncStream.close``: the caller stopped.

What a call does with all this (reserve, settle, release, drain, defer) is decided in
``budgetguard._calls``. With no active scope each hook costs one contextvar lookup.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import sys
import threading
import weakref
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from typing import Any

from budgetguard import _context
from budgetguard._calls import Call
from budgetguard._errors import BudgetGuardWarning
from budgetguard._preflight import input_token_counter
from budgetguard._scopes import Budget
from budgetguard._usage import TokenCounts, UsageFormatError
from budgetguard._warnings import warn

__all__ = ["endpoint_of", "instrument", "instrumented", "uninstrument"]

_CALL_ATTR = "_budgetguard_call"
_lock = threading.Lock()
_originals: dict[tuple[type, str], Any] = {}


def instrumented() -> bool:
    return bool(_originals)


def instrument() -> None:
    """Install the hooks (idempotent, thread-safe). Entering any scope does this for you."""
    if _originals:
        return
    with _lock:
        if _originals:
            return
        from openai import _base_client, _streaming

        targets: list[tuple[type, str, Callable[[Any], Any]]] = [
            (_base_client.SyncAPIClient, "request", _wrap_sync_request),
            (_base_client.AsyncAPIClient, "request", _wrap_async_request),
            (_base_client.BaseClient, "_build_request", _wrap_build_request),
            (_base_client.BaseClient, "_process_response_data", _wrap_process_response_data),
            (_streaming.Stream, "__stream__", _wrap_sync_stream),
            (_streaming.AsyncStream, "__stream__", _wrap_async_stream),
            (_streaming.Stream, "close", _wrap_sync_close),
            (_streaming.AsyncStream, "close", _wrap_async_close),
        ]
        for owner, name, _ in targets:
            if not callable(owner.__dict__.get(name)):
                raise RuntimeError(
                    f"budgetguard cannot instrument this openai version: {owner.__name__}.{name} "
                    "is missing (supported: openai 1.x to 3.x)"
                )
        patched: dict[tuple[type, str], Any] = {}
        for owner, name, wrap in targets:
            original = owner.__dict__[name]
            patched[(owner, name)] = original
            setattr(owner, name, wrap(original))
        _originals.update(patched)


def uninstrument() -> None:
    """Remove the hooks and restore the SDK exactly as it was (entering a scope installs them
    again)."""
    with _lock:
        for (owner, name), original in _originals.items():
            setattr(owner, name, original)
        _originals.clear()
        _context.uninstalled()


_context.on_first_scope(instrument)


# -------------------------------------------------------------------------------------------
# endpoints
# -------------------------------------------------------------------------------------------


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


# -------------------------------------------------------------------------------------------
# request(): reserve before sending, settle or release after
# -------------------------------------------------------------------------------------------

_STREAM_USAGE_ENDPOINTS = ("chat.completions", "completions")
_INJECTED = "_budgetguard_injected_usage"


def _begin(client: Any, options: Any, entries: tuple[_context.Entry, ...]) -> Call | None:
    if _context.is_unmetered():
        return None
    method, url = str(getattr(options, "method", "")), str(getattr(options, "url", ""))
    endpoint = endpoint_of(method, url)
    if endpoint is None:
        _warn_unmetered(method, url, entries)
        return None
    body = getattr(options, "json_data", None)
    if type(body) is not dict and not isinstance(body, Mapping):
        return None
    extra = getattr(options, "extra_json", None)
    if extra:
        # extra_body fields are sent too (the SDK merges them later): estimate and clamp them.
        body = {**body, **extra}
    counter = input_token_counter(client, body) if endpoint == "responses" else None
    call = Call(endpoint, body, entries, count_input_tokens=counter)
    if call.stream and endpoint in _STREAM_USAGE_ENDPOINTS:
        stream_options = body.get("stream_options")
        if not (isinstance(stream_options, Mapping) and stream_options.get("include_usage")):
            # Ask for the usage chunk; the stream wrappers hide it from code not written for it.
            merged = dict(stream_options) if isinstance(stream_options, Mapping) else {}
            merged["include_usage"] = True
            call.edit_body()["stream_options"] = merged
            _injected.add(call)
    return call


# Calls whose usage chunk budgetguard asked for (and hides). Weak: it forgets ended calls.
_injected: weakref.WeakSet[Call] = weakref.WeakSet()


def _options_of(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """``options`` in request(cast_to, options, ...), passed by position or by keyword."""
    return args[1] if len(args) >= 2 else kwargs.get("options")


def _send(
    args: tuple[Any, ...], kwargs: dict[str, Any], options: Any, body: Mapping[str, Any]
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """request()'s arguments, with options carrying ``body`` if budgetguard changed the body."""
    if body is options.json_data:  # the usual case: nothing to change
        return args, kwargs
    from openai._compat import model_copy

    # The SDK copies options per attempt from the object we pass, so retries send this body too.
    copied = model_copy(options)
    copied.json_data = body
    copied.extra_json = None  # already merged into body (see _begin)
    if len(args) >= 2:
        return (args[0], copied, *args[2:]), kwargs
    return args, {**kwargs, "options": copied}


# The call whose request() is running: _build_request tags each attempt with it.
_current_call: contextvars.ContextVar[Call | None] = contextvars.ContextVar(
    "budgetguard_current_call", default=None
)


def _wrap_sync_request(original: Callable[..., Any]) -> Callable[..., Any]:
    def request(self: Any, *args: Any, **kwargs: Any) -> Any:
        entries = _context.active_entries()
        if not entries:
            if _context.entries_open_elsewhere() and not _warned_escape:
                _warn_escape(_options_of(args, kwargs))
            return original(self, *args, **kwargs)
        options = _options_of(args, kwargs)
        call = _begin(self, options, entries)
        if call is None:
            return original(self, *args, **kwargs)
        args, kwargs = _send(args, kwargs, options, call.reserve())
        try:
            token = _current_call.set(call)
            try:
                result = original(self, *args, **kwargs)
            finally:
                _current_call.reset(token)
        except BaseException as exc:
            _released(call, exc)
            raise
        _after(call, result)
        return result

    request.__wrapped__ = original  # type: ignore[attr-defined]
    return request


def _wrap_async_request(original: Callable[..., Any]) -> Callable[..., Any]:
    async def request(self: Any, *args: Any, **kwargs: Any) -> Any:
        entries = _context.active_entries()
        if not entries:
            if _context.entries_open_elsewhere() and not _warned_escape:
                _warn_escape(_options_of(args, kwargs))
            return await original(self, *args, **kwargs)
        options = _options_of(args, kwargs)
        call = _begin(self, options, entries)
        if call is None:
            return await original(self, *args, **kwargs)
        import asyncio  # already loaded by whoever runs this coroutine; not at import time

        args, kwargs = _send(args, kwargs, options, await call.reserve_async(asyncio.sleep))
        try:
            token = _current_call.set(call)
            try:
                result = await original(self, *args, **kwargs)
            finally:
                _current_call.reset(token)
        except BaseException as exc:
            _released(call, exc)
            raise
        _after(call, result)
        return result

    request.__wrapped__ = original  # type: ignore[attr-defined]
    return request


_warned_escape = False


def _warn_escape(options: Any) -> None:
    """Once per process: a billed call made with no scope while scopes are entered elsewhere."""
    global _warned_escape
    method, url = str(getattr(options, "method", "")), str(getattr(options, "url", ""))
    if endpoint_of(method, url) is None or _context.is_unmetered():
        return
    _warned_escape = True
    warn(
        f"an OpenAI call ({url}) was made outside every budgetguard scope while a scope is active "
        "in another thread or task: it is not counted. Threads do not inherit scopes: run the "
        "work through budgetguard.propagate(fn) or budgetguard.ScopedThreadPoolExecutor, or use "
        "a process-wide budget (budgetguard.Budget(..., process_wide=True)) that counts every call",
        BudgetGuardWarning,
    )


def _released(call: Call, exc: BaseException) -> None:
    """The request failed: release its holds. A ledger error there must not hide the API's
    error: it is attached to it as a note and warned about (the hold expires with its TTL)."""
    if call.finished:
        return  # billed before it failed (a stream cut): already charged
    error = call.release()
    if error is not None:
        note = f"budgetguard could not release a reservation: {error!r} (it expires with its TTL)"
        exc.add_note(note)
        warn(note, BudgetGuardWarning)


def _after(call: Call, result: Any) -> None:
    """The SDK returned. Settle now if we can; otherwise hand the call to its reader."""
    if call.finished:
        return
    http_response = getattr(result, "http_response", None)
    if http_response is not None and not call.stream and _body_was_read(http_response):
        # with_raw_response: the caller may never parse the body, so read it ourselves.
        _read_body(call, http_response)
        return
    if call.stream or http_response is not None:
        # A stream, or a raw response whose body the caller will read (maybe as a stream).
        if http_response is not None:
            _tee(call, http_response)
        call.reading(_StreamReader(result) if http_response is None else _RawReader(call, http_response))
        try:
            weakref.finalize(result, _collected, call, http_response)
        except TypeError:
            call.settle_estimated("the response object could not be tracked")
        return
    call.settle_estimated("the response carried no usage")


def _collected(call: Call, http_response: Any) -> None:
    """The stream or raw response object was garbage-collected (maybe inside a ledger lock:
    the call defers its end). A raw body the caller read is read here first (no I/O)."""
    if call.finished or call.stream_started:
        return  # a started stream ends through its generator
    call.collected(_RawReader(call, http_response) if http_response is not None else None)


def _body_was_read(http_response: Any) -> bool:
    try:
        http_response.content  # noqa: B018 - raises if the body is still a stream
    except Exception:
        return False
    return True


def _read_body(call: Call, http_response: Any) -> None:
    """Read the usage out of a body the caller (or the SDK) read in full."""
    try:
        content = http_response.content
    except Exception:
        content = b""
    _read_bytes(call, content)
    if not call.finished:
        if call.stream:
            call.stream_ended(completed=True)
        else:
            call.settle_estimated("the response carried no usage")


def _read_bytes(call: Call, content: bytes) -> None:
    """Report the JSON body or the server-sent events in ``content`` to the call."""
    text = content.decode("utf-8", "replace")
    if text.lstrip().startswith("{"):
        with contextlib.suppress(ValueError):
            _observe(call, json.loads(text))
    else:
        for line in text.splitlines():  # a server-sent event stream read as text
            if line.startswith("data:") and not line.startswith("data: [DONE]"):
                try:
                    _observe(call, json.loads(line[5:]))
                except ValueError:
                    continue


class _SyncTee:
    """Keeps a copy of the bytes a raw response's caller reads (``.json()``, ``.text()``,
    ``iter_lines()``, ...) and reports them to the call when the body is closed, which httpx
    does when the body is read to its end or the response is closed."""

    def __init__(self, inner: Any, call: Call) -> None:
        self._inner = inner
        self._call = call
        self._seen = bytearray()
        #: Off once the SDK parses the body as a stream: its events are reported one by one.
        self.collecting = True

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self._inner:
            if self.collecting:
                self._seen += chunk
            yield chunk

    def close(self) -> None:
        try:
            self._inner.close()
        finally:
            _raw_body_closed(self._call, self)


class _AsyncTee:
    """:class:`_SyncTee` for async responses."""

    def __init__(self, inner: Any, call: Call) -> None:
        self._inner = inner
        self._call = call
        self._seen = bytearray()
        self.collecting = True

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._inner:
            if self.collecting:
                self._seen += chunk
            yield chunk

    async def aclose(self) -> None:
        try:
            await self._inner.aclose()
        finally:
            _raw_body_closed(self._call, self)


def _raw_body_closed(call: Call, tee: _SyncTee | _AsyncTee) -> None:
    if call.finished or not tee.collecting:
        return
    _read_bytes(call, bytes(tee._seen))
    if not call.finished:
        call.abandon(drain=False)  # read in part, or not at all: charged conservatively


# The httpx stream base classes, subclassed per httpx flavour (openai 3.x uses httpx2):
# httpx checks isinstance(response.stream, SyncByteStream) before reading.
_tee_classes: dict[type, type] = {}


def _tee(call: Call, http_response: Any) -> None:
    stream = getattr(http_response, "stream", None)
    httpx = sys.modules.get(type(http_response).__module__.split(".", 1)[0])
    for base_name, mixin in (("SyncByteStream", _SyncTee), ("AsyncByteStream", _AsyncTee)):
        base = getattr(httpx, base_name, None)
        if isinstance(base, type) and isinstance(stream, base):
            cls = _tee_classes.get(base)
            if cls is None:
                cls = _tee_classes[base] = type(f"Budgetguard{base_name}Tee", (mixin, base), {})
            http_response.stream = cls(stream, call)
            return


class _RawReader:
    """A raw response: what can be read without I/O is its body, once the caller read it."""

    def __init__(self, call: Call, http_response: Any) -> None:
        self._call = call
        self._response = http_response

    def pull(self, limit: int) -> None:
        if _body_was_read(self._response):
            _read_body(self._call, self._response)

    async def apull(self, limit: int) -> None:
        self.pull(limit)


class _StreamReader:
    """Reads on from a ``Stream``/``AsyncStream`` the caller stopped iterating, through the
    stream's own iterator (so every event is reported as usual). Holds it weakly: a stream
    nobody holds is collected, and its call ends through its generator."""

    def __init__(self, stream: Any) -> None:
        self._stream = weakref.ref(stream)

    def pull(self, limit: int) -> None:
        stream = self._stream()
        iterator = getattr(stream, "_iterator", None)
        if iterator is None or not hasattr(iterator, "__next__"):
            return
        for _ in range(limit):
            try:
                next(iterator)
            except StopIteration:
                return

    async def apull(self, limit: int) -> None:
        stream = self._stream()
        iterator = getattr(stream, "_iterator", None)
        if iterator is None or not hasattr(iterator, "__anext__"):
            return
        for _ in range(limit):
            try:
                await iterator.__anext__()
            except StopAsyncIteration:
                return


class _GeneratorReader:
    """What a collected stream's generator left unread: drained at a safe point (sync only)."""

    def __init__(self, inner: Iterator[Any]) -> None:
        self._inner = inner

    def pull(self, limit: int) -> None:
        try:
            for _ in range(limit):
                next(self._inner)
        except StopIteration:
            pass
        finally:
            close = getattr(self._inner, "close", None)
            if close is not None:
                close()

    async def apull(self, limit: int) -> None:
        self.pull(limit)


# -------------------------------------------------------------------------------------------
# attempts and parsed data
# -------------------------------------------------------------------------------------------


def _wrap_build_request(original: Callable[..., Any]) -> Callable[..., Any]:
    def _build_request(self: Any, *args: Any, **kwargs: Any) -> Any:
        request = original(self, *args, **kwargs)
        call = _current_call.get()
        if call is not None:
            call.sent()
            try:
                setattr(request, _CALL_ATTR, call)
            except AttributeError:  # a request class with __slots__: fall back to extensions
                request.extensions[_CALL_ATTR] = call
        return request

    _build_request.__wrapped__ = original  # type: ignore[attr-defined]
    return _build_request


def _call_of(response: Any) -> Call | None:
    try:
        request = response.request
    except Exception:
        return None
    call = getattr(request, _CALL_ATTR, None)
    if call is None:
        extensions = getattr(request, "extensions", None)
        call = extensions.get(_CALL_ATTR) if isinstance(extensions, dict) else None
    return call if isinstance(call, Call) else None


def _wrap_process_response_data(original: Callable[..., Any]) -> Callable[..., Any]:
    def _process_response_data(self: Any, *args: Any, **kwargs: Any) -> Any:
        response = kwargs.get("response", args[2] if len(args) > 2 else None)
        call = _call_of(response) if response is not None else None
        if call is not None and not call.finished:
            _observe(call, kwargs.get("data", args[0] if args else None))
        return original(self, *args, **kwargs)

    _process_response_data.__wrapped__ = original  # type: ignore[attr-defined]
    return _process_response_data


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


# -------------------------------------------------------------------------------------------
# streams
# -------------------------------------------------------------------------------------------


def _is_injected_usage_chunk(call: Call, item: Any) -> bool:
    # The chunk we asked for with include_usage has no choices; code written for streams
    # without it does chunk.choices[0], so it must never see this chunk.
    return (
        getattr(item, "usage", None) is not None and not getattr(item, "choices", True) and call in _injected
    )


def _stop_collecting(http_response: Any) -> None:
    tee = getattr(http_response, "stream", None)
    if isinstance(tee, _SyncTee | _AsyncTee):
        tee.collecting = False


def _wrap_sync_stream(original: Callable[..., Any]) -> Callable[..., Any]:
    def __stream__(self: Any) -> Iterator[Any]:
        call = _call_of(self.response)
        if call is None:
            yield from original(self)
            return
        call.stream_started = True
        call.reader = _StreamReader(self)
        _stop_collecting(self.response)
        inner = original(self)
        try:
            for item in inner:
                if not _is_injected_usage_chunk(call, item):
                    yield item
        except GeneratorExit:
            # Closed by the garbage collector (or an explicit close of the generator), maybe
            # inside a ledger's lock: what is left is read at the next safe point.
            if not call.finished:
                call.collected(_GeneratorReader(inner))
            raise
        except BaseException:
            call.stream_ended(completed=False)  # the stream itself failed (connection dropped)
            raise
        call.stream_ended(completed=True)

    __stream__.__wrapped__ = original  # type: ignore[attr-defined]
    return __stream__


def _wrap_async_stream(original: Callable[..., Any]) -> Callable[..., Any]:
    async def __stream__(self: Any) -> AsyncIterator[Any]:
        call = _call_of(self.response)
        if call is None:
            async for item in original(self):
                yield item
            return
        call.stream_started = True
        call.reader = _StreamReader(self)
        _stop_collecting(self.response)
        try:
            async for item in original(self):
                if not _is_injected_usage_chunk(call, item):
                    yield item
        except GeneratorExit:
            if not call.finished:
                call.collected()  # no event loop to read on with: charged from what was seen
            raise
        except BaseException:
            call.stream_ended(completed=False)
            raise
        call.stream_ended(completed=True)

    __stream__.__wrapped__ = original  # type: ignore[attr-defined]
    return __stream__


def _wrap_sync_close(original: Callable[..., Any]) -> Callable[..., Any]:
    def close(self: Any) -> None:
        call = _call_of(self.response)
        if call is None or call.finished:
            original(self)
            return
        try:
            call.close()  # reads on a little first if the end was in sight
        finally:
            original(self)

    close.__wrapped__ = original  # type: ignore[attr-defined]
    return close


def _wrap_async_close(original: Callable[..., Any]) -> Callable[..., Any]:
    async def close(self: Any) -> None:
        call = _call_of(self.response)
        if call is None or call.finished:
            await original(self)
            return
        try:
            await call.aclose()
        finally:
            await original(self)

    close.__wrapped__ = original  # type: ignore[attr-defined]
    return close
