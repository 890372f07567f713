"""Never a prompt, a completion, a header or an API key: not in logs, warnings, spans, metrics,
alert webhooks, ledgers or reports.

A unique secret goes into every prompt, another into every completion, and a unique API key
onto the client; tracked and budgeted calls (plain, streamed, Responses, legacy completions,
embeddings, a refusal, a cut stream, an under-reservation) then run with everything budgetguard
can write switched on. Every output is searched for the three strings.
"""

from __future__ import annotations

import json
import logging
import uuid
import warnings
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from threading import Thread
from typing import Any

import httpx
import openai
import pytest

pytest.importorskip("opentelemetry.sdk", reason="the OpenTelemetry SDK is a test dependency (dev extra)")

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import budgetguard as bg
from budgetguard import _webhooks
from budgetguard._cli import main
from budgetguard.testing import Reply, Simulator

PROMPT_SECRET = f"prompt-secret-{uuid.uuid4().hex}"
COMPLETION_SECRET = f"completion-secret-{uuid.uuid4().hex}"
API_KEY = f"sk-budgetguard-test-{uuid.uuid4().hex}"
SECRETS = {"a prompt": PROMPT_SECRET, "a completion": COMPLETION_SECRET, "the API key": API_KEY}
MESSAGES = [{"role": "user", "content": f"Remember {PROMPT_SECRET} and say it back"}]
ANSWER = f"You said {COMPLETION_SECRET} to me"


class Everything(logging.Handler):
    """Every record of the ``budgetguard`` logger, with every attribute (``extra`` included)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        fields = {**record.__dict__, "message": record.getMessage(), "formatted": self.format(record)}
        self.records.append(json.dumps(fields, default=repr))


@pytest.fixture
def logs() -> Iterator[Everything]:
    handler = Everything()
    logger = logging.getLogger("budgetguard")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(level)


@pytest.fixture
def webhook() -> Iterator[tuple[str, list[bytes]]]:
    """A webhook receiver on loopback: its URL, and the alerts posted to it (headers too)."""
    bodies: list[bytes] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            bodies.append(self.rfile.read(int(self.headers["Content-Length"])) + str(self.headers).encode())
            self.send_response(200)
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook", bodies
    server.shutdown()
    server.server_close()


def _run_every_kind_of_call(client: Any, sim: Simulator, store: str, hook: str) -> list[str]:
    """The calls; returns the text of what they raised and warned."""
    said: list[str] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with bg.track_usage(name="tracked"):
            sim.script(Reply(content=ANSWER))
            client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
            sim.script(Reply(content=ANSWER))
            for _ in client.responses.create(model="gpt-4o-mini", input=MESSAGES[0]["content"], stream=True):
                pass
        with bg.Budget(max_usd=1, name="run", store=store, alerts=["0.0001%"], on_alert=hook):
            sim.script(Reply(content=ANSWER))
            for _ in client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True):
                pass
            sim.script(Reply(content=ANSWER))
            client.responses.create(model="gpt-4o-mini", input=MESSAGES[0]["content"], max_output_tokens=64)
            sim.script(Reply(content=ANSWER))
            client.completions.create(
                model="gpt-3.5-turbo-instruct", prompt=MESSAGES[0]["content"], max_tokens=32
            )
            client.embeddings.create(model="text-embedding-3-small", input=[MESSAGES[0]["content"]])
            sim.script(Reply(content=ANSWER, cut_stream_after=2))  # charged from an estimate
            with pytest.raises((openai.APIConnectionError, httpx.TransportError)) as cut:
                for _ in client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True):
                    pass
            said.append(repr(cut.value))
            sim.script(Reply(content=ANSWER, usage={"prompt_tokens": 50_000, "completion_tokens": 10}))
            client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, max_tokens=10)
        with bg.Budget(max_usd="0.0000001", name="tiny"), pytest.raises(bg.BudgetExceeded) as refused:
            client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        said.extend((str(refused.value), repr(refused.value)))
    said.extend(f"{w.category.__name__}: {w.message}" for w in caught)
    return said


def test_no_prompt_completion_or_api_key_reaches_any_output_of_budgetguard(
    sim: Simulator,
    logs: Everything,
    webhook: tuple[str, list[bytes]],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    exporter, reader = InMemorySpanExporter(), InMemoryMetricReader()
    tracer_provider, meter_provider = TracerProvider(), MeterProvider(metric_readers=[reader])
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    hook, alert_bodies = webhook
    database = tmp_path / "spend.db"
    store = f"sqlite:///{database}"

    bg.enable_telemetry(tracer_provider=tracer_provider, meter_provider=meter_provider)
    try:
        with openai.OpenAI(base_url=sim.base_url, api_key=API_KEY, max_retries=0, timeout=20) as client:
            raised_and_warned = _run_every_kind_of_call(client, sim, store, hook)
    finally:
        bg.disable_telemetry()
    assert _webhooks.flush(20)
    bg.close_ledgers()

    # The secrets did travel: to the server and back.
    assert any(PROMPT_SECRET in json.dumps(r.body) for r in sim.requests)
    assert all(r.headers.get("authorization") == f"Bearer {API_KEY}" for r in sim.requests)

    capsys.readouterr()
    reports: dict[str, str] = {}
    for fmt in ("table", "json", "csv"):
        flags = [] if fmt == "table" else [f"--{fmt}"]
        assert main(["report", "--store", store, *flags]) == 0
        reports[fmt] = capsys.readouterr().out

    spans = exporter.get_finished_spans()
    outputs: dict[str, bytes] = {
        "log records": "\n".join(logs.records).encode(),
        "exceptions and warnings": "\n".join(raised_and_warned).encode(),
        "spans": "\n".join(span.to_json() for span in spans).encode(),
        "metrics": reader.get_metrics_data().to_json().encode(),  # type: ignore[union-attr]
        "alert webhook posts": b"\n".join(alert_bodies),
        **{f"report ({fmt})": text.encode() for fmt, text in reports.items()},
    }
    for path in sorted(tmp_path.glob("spend.db*")):  # the database, and its WAL if one is left
        outputs[f"SQLite file {path.name}"] = path.read_bytes()

    # Nothing is vacuous: every output holds what it should.
    assert len(logs.records) >= 9 and any("refused" in r for r in logs.records)
    assert len(spans) >= 9 and alert_bodies
    assert all("gpt-4o-mini" in text for text in reports.values())
    assert b"gpt-4o-mini" in outputs["SQLite file spend.db"]
    assert any("EstimatedUsageWarning" in text for text in raised_and_warned)

    for output, data in outputs.items():
        for what, secret in SECRETS.items():
            assert secret.encode() not in data, f"{what} leaked into the {output}"
