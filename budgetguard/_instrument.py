"""The hook on the openai SDK. The only module that knows the SDK's internals.

The SDK has no middleware, and patching resource methods misses ``with_raw_response`` and
``.parse()``. These choke points serve every client class (OpenAI, AsyncOpenAI, AzureOpenAI,
``with_options()`` copies, the module-level client) and every surface, in openai 1.x-3.x:

- ``SyncAPIClient.request`` / ``AsyncAPIClient.request``: see the JSON body before anything is
  sent; reserve there, or refuse (nothing is sent), or rewrite the body (clamp, stream usage).
- ``BaseClient._build_request``: runs once per attempt, SDK retries included; it tags each
  outgoing ``httpx`` request with its :class:`MeteredCall`.
- ``BaseClient._process_response_data``: every parsed body and every SSE event, whenever the
  caller parses it (raw responses are parsed lazily).
- ``Stream.__stream__`` / ``AsyncStream.__stream__``: hide the usage-only chunk we asked for,
  and charge a stream that is broken out of or garbage-collected before its usage came;
  ``Stream.close`` / ``AsyncStream.close``: charge it as soon as the caller closes it.

With no active scope each hook costs one contextvar lookup.
"""

from __future__ import annotations

import asyncio
import atexit
import contextvars
import json
import threading
import weakref
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from typing import Any

from budgetguard import _calls, _scopes
from budgetguard._calls import (
    MeteredCall,
    defer_stream_end,
    endpoint_of,
    settle_deferred,
    unmetered_warning,
)
from budgetguard._scopes import _active

__all__ = ["instrument", "instrumented", "uninstrument", "unmetered"]

_current_call: contextvars.ContextVar[MeteredCall | None] = contextvars.ContextVar(
    "budgetguard_current_call", default=None
)
# Set while budgetguard itself talks to the API (exact-mode token counting).
_unmetered: contextvars.ContextVar[bool] = contextvars.ContextVar("budgetguard_unmetered", default=False)

_CALL_ATTR = "_budgetguard_call"
_lock = threading.Lock()
_originals: dict[tuple[type, str], Any] = {}


def instrumented() -> bool:
    return bool(_originals)


class unmetered:
    """Calls made inside are neither counted nor reserved (budgetguard's own API calls)."""

    def __enter__(self) -> None:
        self._token = _unmetered.set(True)

    def __exit__(self, *exc: object) -> None:
        _unmetered.reset(self._token)


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
        _scopes.scope_ended_hook = _scope_ended


def uninstrument() -> None:
    """Remove the hooks and restore the SDK exactly as it was."""
    with _lock:
        for (owner, name), original in _originals.items():
            setattr(owner, name, original)
        _originals.clear()
        _scopes.scope_ended_hook = None


# -------------------------------------------------------------------------------------------
# request(): reserve before sending, settle or release after
# -------------------------------------------------------------------------------------------


def _begin(client: Any, options: Any) -> MeteredCall | None:
    if _unmetered.get():
        return None
    method, url = str(getattr(options, "method", "")), str(getattr(options, "url", ""))
    endpoint = endpoint_of(method, url)
    if endpoint is None:
        unmetered_warning(method, url, _active.get())
        return None
    body = getattr(options, "json_data", None)
    if type(body) is not dict and not isinstance(body, Mapping):
        return None
    extra = getattr(options, "extra_json", None)
    if extra:
        # extra_body fields are sent too (the SDK merges them later): estimate and clamp them.
        body = {**body, **extra}
    return MeteredCall(endpoint, body, _active.get(), client)


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


def _wrap_sync_request(original: Callable[..., Any]) -> Callable[..., Any]:
    def request(self: Any, *args: Any, **kwargs: Any) -> Any:
        if not _active.get():
            return original(self, *args, **kwargs)
        options = _options_of(args, kwargs)
        call = _begin(self, options)
        if call is None:
            return original(self, *args, **kwargs)
        args, kwargs = _send(args, kwargs, options, call.prepare())
        token = _current_call.set(call)
        try:
            result = original(self, *args, **kwargs)
        except BaseException:
            call.fail()
            raise
        finally:
            _current_call.reset(token)
        _after(call, result)
        return result

    request.__wrapped__ = original  # type: ignore[attr-defined]
    return request


def _wrap_async_request(original: Callable[..., Any]) -> Callable[..., Any]:
    async def request(self: Any, *args: Any, **kwargs: Any) -> Any:
        if not _active.get():
            return await original(self, *args, **kwargs)
        options = _options_of(args, kwargs)
        call = _begin(self, options)
        if call is None:
            return await original(self, *args, **kwargs)
        args, kwargs = _send(args, kwargs, options, await call.prepare_async(asyncio.sleep))
        token = _current_call.set(call)
        try:
            result = await original(self, *args, **kwargs)
        except BaseException:
            call.fail()
            raise
        finally:
            _current_call.reset(token)
        _after(call, result)
        return result

    request.__wrapped__ = original  # type: ignore[attr-defined]
    return request


def _after(call: MeteredCall, result: Any) -> None:
    """The SDK returned. Settle now if we can; otherwise make sure we settle later."""
    if call.finished:
        return
    http_response = getattr(result, "http_response", None)
    if http_response is not None and not call.stream and _body_was_read(http_response):
        # with_raw_response: the caller may never parse the body, so read it ourselves.
        try:
            data = json.loads(http_response.content)
        except (ValueError, TypeError):
            data = None
        call.observe(data)
        if not call.finished:
            call.settle_estimated("the response carried no usage")
        return
    if call.stream or http_response is not None:
        # A stream (or a streaming raw response) settles when it is read to its end or closed;
        # when its scope ends (a stream the caller broke out of); or, never iterated, when it
        # is collected (settled later: a finalizer may run while a ledger lock is held).
        call.raw_response = http_response
        _open_calls.add(call)
        try:
            weakref.finalize(result, _end_if_unread, call)
        except TypeError:
            call.settle_estimated("the response object could not be tracked")
        return
    call.settle_estimated("the response carried no usage")


# Calls whose stream or streaming response may still be read. Weak: a call nobody can read
# any more is ended by its finalizer.
_open_calls: weakref.WeakSet[MeteredCall] = weakref.WeakSet()


def _end_if_unread(call: MeteredCall) -> None:
    if not call.stream_started and not call.finished:
        defer_stream_end(call)


def _scope_ended(scope: Any) -> None:
    """Settle what its scope's end decides: streams broken out of, streaming responses whose
    body was read, and ends deferred from garbage collection."""
    if _calls._deferred:  # usually empty: every scope exit runs this
        settle_deferred()
    if not _open_calls:
        return
    for call in list(_open_calls):
        if call.finished:
            _open_calls.discard(call)
        elif call.scopes and call.scopes[-1] is scope:
            _end_at_scope_exit(call)


def _end_at_scope_exit(call: MeteredCall) -> None:
    raw = call.raw_response
    if raw is not None and not call.stream_started and _body_was_read(raw):
        _observe_body(call, raw)
        if not call.finished:
            call.settle_estimated("the response carried no usage")
    elif call.stream_started:
        # Started and not finished when its scope ends: the caller broke out of it.
        call.stream_ended(completed=False)
    # Never read: it may be read after the scope (a function returning a stream); its end,
    # close or finalizer settles it.
    if call.finished:
        _open_calls.discard(call)


def _observe_body(call: MeteredCall, raw: Any) -> None:
    """Read the usage out of a response body the caller read itself (.json(), .text())."""
    try:
        text = raw.content.decode("utf-8", "replace")
    except Exception:
        return
    if text.lstrip().startswith("{"):
        try:
            call.observe(json.loads(text))
        except ValueError:
            return
        return
    for line in text.splitlines():  # a server-sent event stream read as text
        if line.startswith("data:") and not line.startswith("data: [DONE]"):
            try:
                call.observe(json.loads(line[5:]))
            except ValueError:
                continue
    if not call.finished and call.stream:
        call.stream_ended(completed=True)


@atexit.register
def _settle_at_exit() -> None:
    """Streams still open when the interpreter exits were billed: charge them now."""
    settle_deferred()
    for call in list(_open_calls):
        if not call.finished and (call.stream_started or call.raw_response is not None):
            call.stream_ended(completed=False)


def _body_was_read(http_response: Any) -> bool:
    try:
        http_response.content  # noqa: B018 - raises if the body is still a stream
    except Exception:
        return False
    return True


# -------------------------------------------------------------------------------------------
# attempts and parsed data
# -------------------------------------------------------------------------------------------


def _wrap_build_request(original: Callable[..., Any]) -> Callable[..., Any]:
    def _build_request(self: Any, *args: Any, **kwargs: Any) -> Any:
        request = original(self, *args, **kwargs)
        call = _current_call.get()
        if call is not None:
            call.attempts += 1
            try:
                setattr(request, _CALL_ATTR, call)
            except AttributeError:  # a request class with __slots__: fall back to extensions
                request.extensions[_CALL_ATTR] = call
        return request

    _build_request.__wrapped__ = original  # type: ignore[attr-defined]
    return _build_request


def _call_of(response: Any) -> MeteredCall | None:
    try:
        request = response.request
    except Exception:
        return None
    call = getattr(request, _CALL_ATTR, None)
    if call is None:
        extensions = getattr(request, "extensions", None)
        call = extensions.get(_CALL_ATTR) if isinstance(extensions, dict) else None
    return call if isinstance(call, MeteredCall) else None


def _wrap_process_response_data(original: Callable[..., Any]) -> Callable[..., Any]:
    def _process_response_data(self: Any, *args: Any, **kwargs: Any) -> Any:
        response = kwargs.get("response", args[2] if len(args) > 2 else None)
        call = _call_of(response) if response is not None else None
        if call is not None and not call.finished:
            call.observe(kwargs.get("data", args[0] if args else None))
        return original(self, *args, **kwargs)

    _process_response_data.__wrapped__ = original  # type: ignore[attr-defined]
    return _process_response_data


# -------------------------------------------------------------------------------------------
# streams
# -------------------------------------------------------------------------------------------


def _is_injected_usage_chunk(call: MeteredCall, item: Any) -> bool:
    # The chunk we asked for with include_usage has no choices; code written for streams
    # without it does chunk.choices[0], so it must never see this chunk.
    return (
        call.injected_stream_usage
        and getattr(item, "usage", None) is not None
        and not getattr(item, "choices", True)
    )


def _wrap_sync_stream(original: Callable[..., Any]) -> Callable[..., Any]:
    def __stream__(self: Any) -> Iterator[Any]:
        call = _call_of(self.response)
        if call is None:
            yield from original(self)
            return
        call.stream_started = True
        try:
            for item in original(self):
                if not _is_injected_usage_chunk(call, item):
                    yield item
        except GeneratorExit:
            defer_stream_end(call)  # closed, or collected: maybe inside a ledger's lock
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
        try:
            async for item in original(self):
                if not _is_injected_usage_chunk(call, item):
                    yield item
        except GeneratorExit:
            defer_stream_end(call)  # closed, or collected: maybe inside a ledger's lock
            raise
        except BaseException:
            call.stream_ended(completed=False)  # the stream itself failed (connection dropped)
            raise
        call.stream_ended(completed=True)

    __stream__.__wrapped__ = original  # type: ignore[attr-defined]
    return __stream__


def _wrap_sync_close(original: Callable[..., Any]) -> Callable[..., Any]:
    def close(self: Any) -> None:
        try:
            original(self)
        finally:
            call = _call_of(self.response)
            if call is not None and not call.finished:
                call.stream_ended(completed=False)

    close.__wrapped__ = original  # type: ignore[attr-defined]
    return close


def _wrap_async_close(original: Callable[..., Any]) -> Callable[..., Any]:
    async def close(self: Any) -> None:
        try:
            await original(self)
        finally:
            call = _call_of(self.response)
            if call is not None and not call.finished:
                call.stream_ended(completed=False)

    close.__wrapped__ = original  # type: ignore[attr-defined]
    return close
