"""The hooks every SDK generated from an OpenAPI spec by the same toolchain shares (openai,
anthropic): the choke points of its ``_base_client`` and ``_streaming`` modules.

The SDKs have no middleware, and patching resource methods misses ``with_raw_response`` and
``.parse()``. These choke points serve every client class and every surface:

- ``SyncAPIClient.request`` / ``AsyncAPIClient.request``: see the JSON body before anything is
  sent; reserve there, or refuse (nothing is sent), or rewrite the body (clamp, stream usage).
- ``BaseClient._build_request``: runs once per attempt, SDK retries included; it tags each
  outgoing request with its :class:`~budgetguard._calls.Call`.
- ``BaseClient._process_response_data``: every parsed body and every SSE event, whenever the
  caller parses it (raw responses are parsed lazily).
- ``Stream.__stream__`` / ``AsyncStream.__stream__``: hide events budgetguard asked for and
  report a stream's end; ``Stream.close`` / ``AsyncStream.close``: the caller stopped.
- A raw response's byte stream is teed, so a body read any way (``.json()``, ``iter_lines()``)
  is metered.

What one SDK's requests and responses mean is its :class:`Wire`; what a call does with them
(reserve, settle, release, drain, defer) is decided in ``budgetguard._calls``. With no active
scope each hook costs one context lookup.
"""

from __future__ import annotations

import contextlib
import contextvars
import importlib
import json
import sys
import threading
import weakref
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from typing import Any

from budgetguard import _context
from budgetguard._calls import Call
from budgetguard._errors import BudgetGuardWarning
from budgetguard._warnings import warn

__all__ = ["Hooks", "Wire"]

_CALL_ATTR = "_budgetguard_call"


class Wire:
    """What one SDK's calls look like on the wire. Subclassed once per SDK."""

    #: The SDK's package (``openai``) and the provider name events carry.
    sdk: str = ""
    provider: str = ""

    def begin(self, client: Any, options: Any, entries: tuple[_context.Entry, ...]) -> Call | None:
        """The call for a request about to be sent, or None when it is not metered."""
        raise NotImplementedError

    def billed(self, options: Any) -> bool:
        """Whether a request is one the provider bills (used to flag calls made with no scope)."""
        raise NotImplementedError

    def observe(self, call: Call, data: Any) -> None:
        """Report one parsed response body or stream event to its call."""
        raise NotImplementedError

    def hides(self, call: Call, item: Any) -> bool:
        """Whether a parsed stream item exists only because budgetguard asked for it."""
        return False


def options_of(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """``options`` in request(cast_to, options, ...), passed by position or by keyword."""
    return args[1] if len(args) >= 2 else kwargs.get("options")


def json_body(options: Any) -> Mapping[str, Any] | None:
    """The JSON body a request will send (``extra_body`` merged), or None if it has none."""
    body = getattr(options, "json_data", None)
    if type(body) is not dict and not isinstance(body, Mapping):
        return None
    extra = getattr(options, "extra_json", None)
    if extra:
        # extra_body fields are sent too (the SDK merges them later): estimate and clamp them.
        body = {**body, **extra}
    return body


# The call whose request() is running: _build_request tags each attempt with it.
_current_call: contextvars.ContextVar[Call | None] = contextvars.ContextVar(
    "budgetguard_current_call", default=None
)
_warned_escape = False


class Hooks:
    """The patches for one SDK: installed once, removable, idempotent."""

    def __init__(self, wire: Wire) -> None:
        self.wire = wire
        self._lock = threading.Lock()
        self._originals: dict[tuple[type, str], Any] = {}

    @property
    def installed(self) -> bool:
        return bool(self._originals)

    def install(self) -> None:
        if self._originals:
            return
        with self._lock:
            if self._originals:
                return
            base = importlib.import_module(f"{self.wire.sdk}._base_client")
            streaming = importlib.import_module(f"{self.wire.sdk}._streaming")
            targets: list[tuple[type, str, Callable[[Any], Any]]] = [
                (base.SyncAPIClient, "request", self._wrap_sync_request),
                (base.AsyncAPIClient, "request", self._wrap_async_request),
                (base.BaseClient, "_build_request", _wrap_build_request),
                (base.BaseClient, "_process_response_data", self._wrap_process_response_data),
                (streaming.Stream, "__stream__", self._wrap_sync_stream),
                (streaming.AsyncStream, "__stream__", self._wrap_async_stream),
                (streaming.Stream, "close", _wrap_sync_close),
                (streaming.AsyncStream, "close", _wrap_async_close),
            ]
            for owner, name, _ in targets:
                if not callable(owner.__dict__.get(name)):
                    raise RuntimeError(
                        f"budgetguard cannot instrument this {self.wire.sdk} version: "
                        f"{owner.__name__}.{name} is missing"
                    )
            patched: dict[tuple[type, str], Any] = {}
            for owner, name, wrap in targets:
                original = owner.__dict__[name]
                patched[(owner, name)] = original
                setattr(owner, name, wrap(original))
            self._originals.update(patched)

    def uninstall(self) -> None:
        with self._lock:
            for (owner, name), original in self._originals.items():
                setattr(owner, name, original)
            self._originals.clear()

    # -- request(): reserve before sending, settle or release after ----------------------------
    def _send(
        self, args: tuple[Any, ...], kwargs: dict[str, Any], options: Any, body: Mapping[str, Any]
    ) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """request()'s arguments, with options carrying ``body`` if budgetguard changed it."""
        if body is options.json_data:  # the usual case: nothing to change
            return args, kwargs
        model_copy = importlib.import_module(f"{self.wire.sdk}._compat").model_copy
        # The SDK copies options per attempt from the object we pass: retries send this body too.
        copied = model_copy(options)
        copied.json_data = body
        copied.extra_json = None  # already merged into body (see json_body)
        if len(args) >= 2:
            return (args[0], copied, *args[2:]), kwargs
        return args, {**kwargs, "options": copied}

    def _wrap_sync_request(self, original: Callable[..., Any]) -> Callable[..., Any]:
        wire = self.wire

        def request(client: Any, *args: Any, **kwargs: Any) -> Any:
            entries = _context.active_entries()
            if not entries:
                if _context.entries_open_elsewhere() and not _warned_escape:
                    _warn_escape(wire, options_of(args, kwargs))
                return original(client, *args, **kwargs)
            options = options_of(args, kwargs)
            call = None if _context.is_unmetered() else wire.begin(client, options, entries)
            if call is None:
                return original(client, *args, **kwargs)
            args, kwargs = self._send(args, kwargs, options, call.reserve())
            try:
                token = _current_call.set(call)
                try:
                    result = original(client, *args, **kwargs)
                finally:
                    _current_call.reset(token)
            except BaseException as exc:
                _released(call, exc)
                raise
            _after(wire, call, result)
            return result

        request.__wrapped__ = original  # type: ignore[attr-defined]
        return request

    def _wrap_async_request(self, original: Callable[..., Any]) -> Callable[..., Any]:
        wire = self.wire

        async def request(client: Any, *args: Any, **kwargs: Any) -> Any:
            entries = _context.active_entries()
            if not entries:
                if _context.entries_open_elsewhere() and not _warned_escape:
                    _warn_escape(wire, options_of(args, kwargs))
                return await original(client, *args, **kwargs)
            options = options_of(args, kwargs)
            call = None if _context.is_unmetered() else wire.begin(client, options, entries)
            if call is None:
                return await original(client, *args, **kwargs)
            import asyncio  # already loaded by whoever runs this coroutine; not at import time

            args, kwargs = self._send(args, kwargs, options, await call.reserve_async(asyncio.sleep))
            try:
                token = _current_call.set(call)
                try:
                    result = await original(client, *args, **kwargs)
                finally:
                    _current_call.reset(token)
            except BaseException as exc:
                _released(call, exc)
                raise
            _after(wire, call, result)
            return result

        request.__wrapped__ = original  # type: ignore[attr-defined]
        return request

    # -- parsed data -----------------------------------------------------------------------------
    def _wrap_process_response_data(self, original: Callable[..., Any]) -> Callable[..., Any]:
        observe = self.wire.observe

        def _process_response_data(client: Any, *args: Any, **kwargs: Any) -> Any:
            response = kwargs.get("response", args[2] if len(args) > 2 else None)
            call = call_of(response) if response is not None else None
            if call is not None and not call.finished:
                observe(call, kwargs.get("data", args[0] if args else None))
            return original(client, *args, **kwargs)

        _process_response_data.__wrapped__ = original  # type: ignore[attr-defined]
        return _process_response_data

    # -- streams ---------------------------------------------------------------------------------
    def _wrap_sync_stream(self, original: Callable[..., Any]) -> Callable[..., Any]:
        hides = self.wire.hides

        def __stream__(stream: Any) -> Iterator[Any]:
            call = call_of(stream.response)
            if call is None:
                yield from original(stream)
                return
            call.stream_started = True
            _stop_collecting(stream.response)
            inner = original(stream)
            # Read on through the SDK's own generator: the stream object may be a copy made for
            # iterating (anthropic), whose _iterator would start the body over.
            call.reader = _GeneratorReader(inner)
            try:
                for item in inner:
                    if not hides(call, item):
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

    def _wrap_async_stream(self, original: Callable[..., Any]) -> Callable[..., Any]:
        hides = self.wire.hides

        async def __stream__(stream: Any) -> AsyncIterator[Any]:
            call = call_of(stream.response)
            if call is None:
                async for item in original(stream):
                    yield item
                return
            call.stream_started = True
            _stop_collecting(stream.response)
            inner = original(stream)
            call.reader = _AsyncGeneratorReader(inner)
            try:
                async for item in inner:
                    if not hides(call, item):
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


def _warn_escape(wire: Wire, options: Any) -> None:
    """Once per process: a billed call made with no scope while scopes are entered elsewhere."""
    global _warned_escape
    if _context.is_unmetered() or not wire.billed(options):
        return
    _warned_escape = True
    url = str(getattr(options, "url", ""))
    warn(
        f"an {wire.provider} call ({url}) was made outside every budgetguard scope while a scope "
        "is active in another thread or task: it is not counted. Threads do not inherit scopes: "
        "run the work through budgetguard.propagate(fn) or budgetguard.ScopedThreadPoolExecutor, "
        "or use a process-wide budget (budgetguard.Budget(..., process_wide=True)) that counts "
        "every call",
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


def _after(wire: Wire, call: Call, result: Any) -> None:
    """The SDK returned. Settle now if we can; otherwise hand the call to its reader."""
    if call.finished:
        return
    http_response = getattr(result, "http_response", None)
    if http_response is not None and not call.stream and _body_was_read(http_response):
        # with_raw_response: the caller may never parse the body, so read it ourselves.
        _read_body(wire, call, http_response)
        return
    if call.stream or http_response is not None:
        # A stream, or a raw response whose body the caller will read (maybe as a stream).
        if http_response is None:
            call.reading(_StreamReader(result))
        else:
            _tee(wire, call, http_response)
            call.reading(_RawReader(wire, call, http_response))
        try:
            weakref.finalize(result, _collected, wire, call, http_response)
        except TypeError:
            call.settle_estimated("the response object could not be tracked")
        return
    call.settle_estimated("the response carried no usage")


def _collected(wire: Wire, call: Call, http_response: Any) -> None:
    """The stream or raw response object was garbage-collected (maybe inside a ledger lock:
    the call defers its end). A raw body the caller read is read then (no I/O)."""
    if call.finished or call.stream_started:
        return  # a started stream ends through its generator
    call.collected(_RawReader(wire, call, http_response) if http_response is not None else None)


def _body_was_read(http_response: Any) -> bool:
    try:
        http_response.content  # noqa: B018 - raises if the body is still a stream
    except Exception:
        return False
    return True


def _read_body(wire: Wire, call: Call, http_response: Any) -> None:
    """Read the usage out of a body the caller (or the SDK) read in full."""
    try:
        content = http_response.content
    except Exception:
        content = b""
    _read_bytes(wire, call, content)
    if not call.finished:
        if call.stream:
            call.stream_ended(completed=True)
        else:
            call.settle_estimated("the response carried no usage")


def _read_bytes(wire: Wire, call: Call, content: bytes) -> None:
    """Report the JSON body or the server-sent events in ``content`` to the call."""
    text = content.decode("utf-8", "replace")
    if text.lstrip().startswith("{"):
        with contextlib.suppress(ValueError):
            wire.observe(call, json.loads(text))
        return
    for line in text.splitlines():  # a server-sent event stream read as text
        if line.startswith("data:") and not line.startswith("data: [DONE]"):
            try:
                wire.observe(call, json.loads(line[5:]))
            except ValueError:
                continue


class _SyncTee:
    """Keeps a copy of the bytes a raw response's caller reads (``.json()``, ``.text()``,
    ``iter_lines()``, ...) and reports them to the call when the body is closed, which httpx
    does when the body is read to its end or the response is closed."""

    def __init__(self, inner: Any, wire: Wire, call: Call) -> None:
        self._inner = inner
        self._wire = wire
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
            _raw_body_closed(self)


class _AsyncTee:
    """:class:`_SyncTee` for async responses."""

    def __init__(self, inner: Any, wire: Wire, call: Call) -> None:
        self._inner = inner
        self._wire = wire
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
            _raw_body_closed(self)


def _raw_body_closed(tee: _SyncTee | _AsyncTee) -> None:
    call = tee._call
    if call.finished or not tee.collecting:
        return
    _read_bytes(tee._wire, call, bytes(tee._seen))
    if not call.finished:
        call.abandon(drain=False)  # read in part, or not at all: charged conservatively


# The httpx stream base classes, subclassed per httpx flavour (openai 3.x uses httpx2):
# httpx checks isinstance(response.stream, SyncByteStream) before reading.
_tee_classes: dict[type, type] = {}


def _tee(wire: Wire, call: Call, http_response: Any) -> None:
    stream = getattr(http_response, "stream", None)
    httpx = sys.modules.get(type(http_response).__module__.split(".", 1)[0])
    for base_name, mixin in (("SyncByteStream", _SyncTee), ("AsyncByteStream", _AsyncTee)):
        base = getattr(httpx, base_name, None)
        if isinstance(base, type) and isinstance(stream, base):
            cls = _tee_classes.get(base)
            if cls is None:
                cls = _tee_classes[base] = type(f"Budgetguard{base_name}Tee", (mixin, base), {})
            http_response.stream = cls(stream, wire, call)
            return


def _stop_collecting(http_response: Any) -> None:
    tee = getattr(http_response, "stream", None)
    if isinstance(tee, _SyncTee | _AsyncTee):
        tee.collecting = False


class _RawReader:
    """A raw response: what can be read without I/O is its body, once the caller read it."""

    def __init__(self, wire: Wire, call: Call, http_response: Any) -> None:
        self._wire = wire
        self._call = call
        self._response = http_response

    def pull(self, limit: int) -> None:
        if _body_was_read(self._response):
            _read_body(self._wire, self._call, self._response)

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
    """Reads on from a stream's SDK generator (a stream its caller stopped reading, or one the
    garbage collector took, drained at a safe point), then closes it."""

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


class _AsyncGeneratorReader:
    """:class:`_GeneratorReader` for an async stream (only an event loop can read it)."""

    def __init__(self, inner: AsyncIterator[Any]) -> None:
        self._inner = inner

    def pull(self, limit: int) -> None:
        return  # no event loop here: the caller is charged from what was seen

    async def apull(self, limit: int) -> None:
        try:
            for _ in range(limit):
                await self._inner.__anext__()
        except StopAsyncIteration:
            pass
        finally:
            aclose = getattr(self._inner, "aclose", None)
            if aclose is not None:
                await aclose()


def _wrap_build_request(original: Callable[..., Any]) -> Callable[..., Any]:
    def _build_request(client: Any, *args: Any, **kwargs: Any) -> Any:
        request = original(client, *args, **kwargs)
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


def call_of(response: Any) -> Call | None:
    """The call an httpx response answers, from the tag its request carries."""
    try:
        request = response.request
    except Exception:
        return None
    call = getattr(request, _CALL_ATTR, None)
    if call is None:
        extensions = getattr(request, "extensions", None)
        call = extensions.get(_CALL_ATTR) if isinstance(extensions, dict) else None
    return call if isinstance(call, Call) else None


def _wrap_sync_close(original: Callable[..., Any]) -> Callable[..., Any]:
    def close(stream: Any) -> None:
        call = call_of(stream.response)
        if call is None or call.finished:
            original(stream)
            return
        try:
            call.close()  # reads on a little first if the end was in sight
        finally:
            original(stream)

    close.__wrapped__ = original  # type: ignore[attr-defined]
    return close


def _wrap_async_close(original: Callable[..., Any]) -> Callable[..., Any]:
    async def close(stream: Any) -> None:
        call = call_of(stream.response)
        if call is None or call.finished:
            await original(stream)
            return
        try:
            await call.aclose()
        finally:
            await original(stream)

    close.__wrapped__ = original  # type: ignore[attr-defined]
    return close
