"""The loopback HTTP server and the ``Simulator`` that owns it.

A ``ThreadingHTTPServer`` speaking HTTP/1.1 with keep-alive: one daemon thread per
connection, a listen backlog large enough for hundreds of simultaneous connects, and
TCP_NODELAY so small SSE frames are not held back. Stopping the simulator closes every open
connection, so no handler thread outlives it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import socket
import socketserver
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self
from urllib.parse import unquote, urlsplit

from budgetguard._errors import EstimateError

from ._anthropic import (
    AnthropicRequest,
    AnthropicState,
    BytesOutcome,
    anthropic_fault_outcome,
    is_anthropic_path,
    route_anthropic,
)
from ._chat import chat_completions
from ._completions import completions
from ._counting import count_prompt_tokens
from ._embeddings import embeddings
from ._eventstream import chunk_from_sse
from ._models import get_model, list_models
from ._recordings import Recordings, RecordingsSource
from ._responses import input_tokens, responses
from ._script import Fault, ReceivedRequest, Reply, Script
from ._wire import (
    JsonOutcome,
    Outcome,
    PromptCounter,
    PromptUsage,
    RequestError,
    StreamOutcome,
    Turn,
    error_outcome,
    fault_outcome,
)

__all__ = ["Simulator"]

log = logging.getLogger("budgetguard.testing")

_ROUTES: dict[str, tuple[str, Callable[[Turn], Outcome]]] = {
    "/chat/completions": ("chat.completions", chat_completions),
    "/completions": ("completions", completions),
    "/responses": ("responses", responses),
    "/responses/input_tokens": ("responses", input_tokens),
    "/embeddings": ("embeddings", embeddings),
}
_API_PREFIX = "/v1"
_AZURE_PATH = re.compile(r"/openai/deployments/([^/]+)/(.+)")


class _State:
    def __init__(
        self,
        counter: PromptCounter,
        recordings: Recordings | None,
        default_tokens: int,
        anthropic_counter: PromptCounter | None = None,
    ) -> None:
        self.script = Script()
        self.counter = counter
        self.anthropic = AnthropicState(anthropic_counter)  # prompt cache and batches
        self.recordings = recordings
        self.default_tokens = default_tokens
        self.stopping = threading.Event()

    def recorded(self, endpoint: str, body: dict[str, Any]) -> PromptUsage | None:
        return self.recordings.lookup(endpoint, body) if self.recordings is not None else None


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024  # the listen backlog: many clients connect at once

    def __init__(self, state: _State) -> None:
        self.state = state
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind resolves the host name (a reverse DNS lookup); skip that.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = "127.0.0.1", self.server_address[1]

    def track(self, connection: socket.socket) -> None:
        with self._connections_lock:
            self._connections.add(connection)

    def untrack(self, connection: socket.socket) -> None:
        with self._connections_lock:
            self._connections.discard(connection)

    def close_connections(self) -> None:
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            # Wakes a handler blocked reading the next request of a keep-alive connection.
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients hang up mid-response on purpose (timeouts, early breaks); that is not news.
        log.debug("simulator connection from %s ended with an error", client_address, exc_info=True)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.track(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.untrack(self.connection)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # no access log on stderr

    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def do_PUT(self) -> None:
        self._handle()

    def do_PATCH(self) -> None:
        self._handle()

    def do_DELETE(self) -> None:
        self._handle()

    def _handle(self) -> None:
        state = self.server.state
        # Collapse "//": clients that join f"{sim.base_url}/models" by hand still reach the route.
        path = re.sub("/{2,}", "/", unquote(urlsplit(self.path).path))
        try:
            raw = self._read_body()
        except ValueError as exc:
            self.close_connection = True  # the framing is broken; the connection cannot be reused
            self._send(error_outcome(400, f"could not read the request body: {exc}"))
            return
        body, problem = _parse_json(raw)
        headers = {name.lower(): value for name, value in self.headers.items()}
        state.script.record(ReceivedRequest(self.command, path, headers, body if problem is None else {}))

        fault = state.script.take_fault()
        outcome: Outcome | BytesOutcome
        if fault is not None:
            outcome = anthropic_fault_outcome(fault) if is_anthropic_path(path) else fault_outcome(fault)
        else:
            outcome = self._route(path, body, problem)
        if outcome.delay and state.stopping.wait(outcome.delay):
            self.close_connection = True  # the simulator is stopping: hang up
            return
        self._send(outcome)

    def _route(self, path: str, body: dict[str, Any], problem: str | None) -> Outcome | BytesOutcome:
        state = self.server.state
        if is_anthropic_path(path):  # the Anthropic Messages API: /v1/messages...
            request = AnthropicRequest(
                method=self.command,
                path=path,
                body=body,
                problem=problem,
                script=state.script,
                default_tokens=state.default_tokens,
                base_url=f"http://127.0.0.1:{self.server.server_port}",
            )
            return route_anthropic(state.anthropic, request)
        sub = path[len(_API_PREFIX) :] if path.startswith(_API_PREFIX + "/") else None
        azure = _AZURE_PATH.fullmatch(path)
        if azure is not None:
            # AzureOpenAI clients: /openai/deployments/{deployment}/chat/completions?api-version=...
            sub = "/" + azure.group(2)
        invalid = error_outcome(404, f"Invalid URL ({self.command} {path})")
        if sub is None:
            return invalid
        if self.command == "GET":
            if sub == "/models":
                return list_models()
            if sub.startswith("/models/") and len(sub) > len("/models/"):
                return get_model(sub[len("/models/") :])
            return invalid
        route = _ROUTES.get(sub)
        if route is None or self.command != "POST":
            return invalid
        if problem is not None:
            return error_outcome(400, problem)
        endpoint, build = route
        turn = Turn(
            endpoint=endpoint,
            body=body,
            take_reply=state.script.take_reply,
            counter=state.counter,
            new_id=state.script.new_id,
            default_tokens=state.default_tokens,
            recorded=state.recorded,
        )
        try:
            return build(turn)
        except RequestError as exc:
            return error_outcome(exc.status, exc.message, param=exc.param, code=exc.code)
        except EstimateError as exc:  # a custom prompt_counter built on budgetguard's estimator
            return error_outcome(400, f"the request body is malformed for {endpoint}: {exc}")
        except Exception as exc:
            log.exception("the simulator failed on %s %s", self.command, path)
            return error_outcome(
                500,
                f"the simulator failed on {self.command} {path}: {type(exc).__name__}: {exc}",
                headers={"x-should-retry": "false"},  # a bug here does not go away on retry
            )

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            return self._read_chunked()
        length = self.headers.get("Content-Length")
        if length is None:
            return b""
        if not length.isdigit():
            raise ValueError(f"bad Content-Length {length!r}")
        return self.rfile.read(int(length))

    def _read_chunked(self) -> bytes:
        parts: list[bytes] = []
        while True:
            line = self.rfile.readline(1024).split(b";", 1)[0].strip()
            try:
                size = int(line, 16)
            except ValueError:
                raise ValueError(f"bad chunk size {line!r}") from None
            if size == 0:
                while self.rfile.readline(1024).strip():  # trailers
                    pass
                return b"".join(parts)
            parts.append(self.rfile.read(size))
            self.rfile.readline(3)

    def _send(self, outcome: Outcome | BytesOutcome) -> None:
        request_id = self.server.state.script.new_id("req_")
        try:
            if isinstance(outcome, JsonOutcome):
                self._send_json(outcome, request_id)
            elif isinstance(outcome, BytesOutcome):
                self._send_bytes(outcome, request_id)
            else:
                self._send_stream(outcome, request_id)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client left (timeout, early close)

    def _send_json(self, outcome: JsonOutcome, request_id: str) -> None:
        payload = json.dumps(outcome.body).encode()
        self.send_response(outcome.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("x-request-id", request_id)
        self.send_header("request-id", request_id)  # the Anthropic SDK's name
        for name, value in outcome.headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(payload)

    def _send_bytes(self, outcome: BytesOutcome, request_id: str) -> None:
        self.send_response(outcome.status)
        self.send_header("Content-Type", outcome.content_type)
        self.send_header("Content-Length", str(len(outcome.content)))
        self.send_header("x-request-id", request_id)
        self.send_header("request-id", request_id)
        for name, value in outcome.headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(outcome.content)

    def _send_stream(self, outcome: StreamOutcome, request_id: str) -> None:
        frames = outcome.frames_to_send()
        self.send_response(200)
        if outcome.framing == "aws-eventstream":
            self.send_header("Content-Type", "application/vnd.amazon.eventstream")
            frames = [chunk_from_sse(frame) for frame in frames]
        else:
            self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("x-request-id", request_id)
        self.send_header("request-id", request_id)
        self.end_headers()
        data = b"".join(b"%x\r\n%s\r\n" % (len(frame), frame) for frame in frames)
        cut = outcome.cut_after_tokens is not None
        # A cut stream never sends the terminating chunk: the client sees the body end early.
        self.wfile.write(data if cut else data + b"0\r\n\r\n")
        if cut:
            self.close_connection = True


def _parse_json(raw: bytes) -> tuple[dict[str, Any], str | None]:
    """The body as a JSON object, or ``({}, what is wrong with it)``."""
    try:
        value = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        return {}, f"We could not parse the JSON body of your request ({exc}). The API expects a JSON object."
    if not isinstance(value, dict):
        return {}, f"The request body must be a JSON object, not a JSON {type(value).__name__}."
    return value, None


class Simulator:
    """An OpenAI-compatible API on 127.0.0.1, for tests and demos.

    A real HTTP server (JSON and SSE) in a background thread, so any OpenAI client, sync or
    async, of any SDK version, talks to it as it would to the API::

        with Simulator() as sim:
            client = OpenAI(base_url=sim.base_url, api_key="sim")
            sim.script(Reply(content="hi"))
            client.chat.completions.create(model="gpt-4o", messages=[...])
            assert sim.requests[0].path == "/v1/chat/completions"

    The same server also speaks Anthropic's Messages API (``/v1/messages``, streaming,
    ``count_tokens``, batches) to ``anthropic.Anthropic(base_url=sim.anthropic_base_url)``;
    scripted replies and faults are shared by both APIs, in one queue each.

    Usage is computed from the request, independently of budgetguard's own estimator, so an
    estimate that is wrong shows up as a budget that is wrong:

    - prompt tokens: a body found in ``recorded_usage`` is billed what the real API billed it
      (its prompt / input tokens and their details, such as ``cached_tokens``); any other body
      is counted by ``prompt_counter``, by default the simulator's own counter written from
      OpenAI's public rules (``budgetguard.testing._counting`` lists them).
    - completion tokens: tiktoken over the generated text and tool-call arguments.

    ``recorded_usage`` is a JSONL file's path or an iterable of recordings (objects with
    ``endpoint``, ``request`` and ``usage``); ``budgetguard.testing._recordings`` says how
    bodies are matched. Without a scripted reply the answer is ``default_tokens`` tokens of
    fixed text (fewer under a cap), or a minimal JSON instance of a requested schema.
    """

    def __init__(
        self,
        *,
        prompt_counter: PromptCounter | None = None,
        recorded_usage: RecordingsSource | None = None,
        default_tokens: int = 16,
    ) -> None:
        if default_tokens < 1:
            raise ValueError(f"default_tokens must be >= 1, not {default_tokens}")
        recordings = Recordings(recorded_usage) if recorded_usage is not None else None
        counter = prompt_counter or count_prompt_tokens
        # The Anthropic routes use a custom counter too, else their own (_anthropic_counting).
        self._state = _State(counter, recordings, default_tokens, anthropic_counter=prompt_counter)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> Self:
        """Listen on a free loopback port and serve in a daemon thread."""
        if self._server is not None:
            raise RuntimeError("this Simulator is already running")
        self._state.stopping.clear()
        self._server = _Server(self._state)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},  # how long stop() may wait for the accept loop
            name=f"budgetguard-simulator-{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, hang up every open connection and free the port. Idempotent."""
        server, thread = self._server, self._thread
        if server is None:
            return
        self._state.stopping.set()  # wakes handlers sleeping on a scripted delay
        server.shutdown()
        server.close_connections()
        server.server_close()
        if thread is not None:
            thread.join(timeout=5)
        self._server = self._thread = None

    @property
    def port(self) -> int:
        """The port the server listens on (only while running)."""
        if self._server is None:
            raise RuntimeError("the Simulator is not running: use `with Simulator() as sim:` or call start()")
        return self._server.server_port

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>/v1/``: pass it as the client's ``base_url``.

        The trailing slash matters to the openai module-level client (``openai.base_url = ...``),
        which, unlike ``OpenAI(base_url=...)``, does not add one before joining paths.
        """
        return f"http://127.0.0.1:{self.port}{_API_PREFIX}/"

    @property
    def anthropic_base_url(self) -> str:
        """``http://127.0.0.1:<port>``: pass it as ``anthropic.Anthropic(base_url=...)``.

        The Anthropic SDK's paths already start with ``/v1/`` (``/v1/messages``), so its base
        URL is the server's root, not ``base_url``. ``budgetguard.testing._anthropic`` lists
        the routes and how they answer.
        """
        return f"http://127.0.0.1:{self.port}"

    def script(self, *replies: Reply) -> None:
        """Queue replies, answered in order by chat, legacy-completions, Responses and Anthropic
        Messages requests (one queue for all of them)."""
        self._state.script.push(replies)

    def fail_next(
        self,
        status: int = 500,
        *,
        times: int = 1,
        retry_after: float | None = None,
        message: str | None = None,
        code: str | None = None,
    ) -> None:
        """Answer the next ``times`` requests (any endpoint) with an OpenAI-shaped HTTP error.

        On the Anthropic routes the error has Anthropic's shape, and ``code`` (if given) is its
        ``error.type`` (default by status: ``rate_limit_error``, ``overloaded_error``, ...).

        ``retry_after`` (seconds) is sent as ``retry-after`` and ``retry-after-ms``, which the
        SDKs honour between retries. Faults come before scripted replies and consume none.
        """
        if times < 1:
            raise ValueError(f"fail_next(times=...) must be >= 1, not {times}")
        self._state.script.add_faults(Fault(status, retry_after, message, code), times)

    @property
    def requests(self) -> list[ReceivedRequest]:
        """Every request received so far, in arrival order (a copy)."""
        return self._state.script.requests()

    @property
    def pending_replies(self) -> int:
        """Scripted replies not yet consumed."""
        return self._state.script.pending()[0]

    def reset(self) -> None:
        """Forget scripted replies, pending faults, the request log, the Anthropic prompt cache
        and the Anthropic batches."""
        self._state.script.reset()
        self._state.anthropic.reset()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    async def __aenter__(self) -> Self:
        return self.start()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await asyncio.to_thread(self.stop)  # stop() waits for the accept loop; keep the event loop free
