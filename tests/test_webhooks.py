"""Alerts posted to a webhook URL: JSON with a Slack-compatible ``text``, sent off the call path.

A tiny ``http.server`` on 127.0.0.1 is the receiver. A receiver that is down or hangs must slow
no request: the tests check the order of events (the request returned while the receiver was
still blocked), never a timing threshold.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
from collections.abc import Iterator
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

import budgetguard as bg
from budgetguard import _webhooks
from budgetguard._config import parse_config
from budgetguard.testing import Simulator

MESSAGES = [{"role": "user", "content": "hi"}]
SAFETY = 20.0  # seconds a test waits for something that happens at once (never reached)


class Receiver:
    """A webhook receiver on loopback: records each POST; can answer an error status or hang."""

    def __init__(self, *, status: int = 200, hang: bool = False) -> None:
        self.posts: list[dict[str, Any]] = []
        self.entered = threading.Event()  # a post has arrived (and, hanging, is held)
        self.release = threading.Event()  # let held posts answer
        self.answered = threading.Event()  # a post has been answered
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.posts.append(
                    {
                        "path": self.path,
                        "content_type": self.headers["Content-Type"],
                        "json": json.loads(body),
                    }
                )
                receiver.entered.set()
                if hang:
                    receiver.release.wait(SAFETY)
                self.send_response(status)
                self.end_headers()
                self.wfile.write(b"ok")
                receiver.answered.set()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/services/T0/B0/SECRET-PATH"

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(autouse=True)
def sender(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """A sender (queue and thread) of each test's own."""
    fresh = _webhooks._Sender()
    monkeypatch.setattr(_webhooks, "_sender", fresh)
    yield fresh
    fresh.flush(SAFETY)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.close()


@pytest.fixture
def hanging() -> Iterator[Receiver]:
    server = Receiver(hang=True)
    yield server
    server.close()


def closed_port_url() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/services/T0/B0/SECRET-PATH"


def _chat(client: Any) -> Any:
    return client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, max_tokens=10)


def test_each_alert_is_a_json_post_with_a_slack_compatible_text(client: Any, receiver: Receiver) -> None:
    with bg.Budget(max_tokens=10_000, name="run", alerts=["0.1%"], on_alert=receiver.url) as run:
        _chat(client)
        first = run.usage  # what was spent when the threshold was crossed
        _chat(client)  # a threshold is crossed once
    assert _webhooks.flush(SAFETY)
    (post,) = receiver.posts
    assert post["path"] == "/services/T0/B0/SECRET-PATH"
    assert post["content_type"] == "application/json"
    assert post["json"]["text"] == (
        f"budgetguard: budget 'run' reached 0.1% of its cap: {first.total_tokens:,} of 10,000 tokens spent"
    )
    numbers = post["json"]["budgetguard"]
    assert Decimal(numbers["spent"]["usd"]) == first.cost_usd > 0
    assert numbers == {
        "budget": "run",
        "key": None,
        "threshold": "0.001",
        "spent": {"usd": numbers["spent"]["usd"], "tokens": first.total_tokens, "requests": 1},
        "reserved": {"usd": "0", "tokens": 0, "requests": 0},
        "limits": {"usd": None, "tokens": 10_000, "requests": None},
    }


def test_a_dollar_cap_alert_names_the_dollars_and_the_key(client: Any, receiver: Receiver) -> None:
    with bg.Budget(max_usd=1, name="per-user", key="alice", alerts=["0.0001%"], on_alert=receiver.url) as b:
        _chat(client)
    assert _webhooks.flush(SAFETY)
    (post,) = receiver.posts
    assert post["json"]["text"] == (
        f"budgetguard: budget 'per-user' (key 'alice') reached 0.0001% of its cap: ${b.spent_usd} of $1 spent"
    )
    assert Decimal(post["json"]["budgetguard"]["spent"]["usd"]) == b.spent_usd


def test_a_soft_cap_passed_posts_the_100_percent_alert(client: Any, receiver: Receiver) -> None:
    with pytest.warns(bg.SoftCapWarning), bg.Budget(max_tokens=1, on_exceed="warn", on_alert=receiver.url):
        _chat(client)
    assert _webhooks.flush(SAFETY)
    (post,) = receiver.posts
    assert "reached 100% of its cap" in post["json"]["text"]


def test_a_configured_budget_posts_to_its_on_alert_url(
    client: Any, receiver: Receiver, tmp_path: Path
) -> None:
    config = tmp_path / "budgetguard.yaml"
    config.write_text(
        f"version: 1\nbudgets:\n  daily:\n    max_tokens: 10000\n    window: 1d\n"
        f"    alerts: ['0.1%']\n    on_alert: {receiver.url}\n"
    )
    bg.configure(config)
    with bg.Budget.named("daily"):
        _chat(client)
    assert _webhooks.flush(SAFETY)
    (post,) = receiver.posts
    assert post["json"]["text"].startswith(
        "budgetguard: budget 'daily' reached 0.1% of its cap in the current window"
    )


@pytest.mark.parametrize(
    "url",
    ["ftp://example.com/hook", "example.com/hook", "http:///no-host", "http://host:port/x", "http://a b/"],
)
def test_on_alert_takes_only_http_and_https_urls(url: str) -> None:
    with pytest.raises(bg.ConfigError, match="webhook"):
        bg.Budget(max_usd=1, alerts=["50%"], on_alert=url)
    with pytest.raises(bg.ConfigError, match=r"at 'budgets.daily.on_alert': a webhook"):
        parse_config(f"version: 1\nbudgets:\n  daily:\n    max_usd: 1\n    on_alert: {json.dumps(url)}\n")


def test_the_url_a_budget_was_given_is_kept_secret_in_its_repr() -> None:
    budget = bg.Budget(max_usd=1, alerts=["50%"], on_alert="https://hooks.slack.com/services/T0/B0/SECRET")
    assert repr(budget.on_alert) == "WebhookAlert('https://hooks.slack.com/...')"


# --- a receiver that is down, failing or hanging ------------------------------------------------


def test_a_closed_port_fails_no_request_and_is_logged_without_the_url_path(
    client: Any, sim: Simulator, caplog: pytest.LogCaptureFixture
) -> None:
    url = closed_port_url()
    with caplog.at_level(logging.WARNING, logger="budgetguard"):
        with bg.Budget(max_tokens=10_000, alerts=["0.1%", "0.2%"], on_alert=url) as run:
            _chat(client)
            _chat(client)
        assert run.usage.requests == 2 and len(sim.requests) == 2
        assert _webhooks.flush(SAFETY)
    failures = [r.getMessage() for r in caplog.records if "could not send an alert" in r.getMessage()]
    assert len(failures) == 2
    port = url.split(":")[2].split("/")[0]
    assert all(f"webhook http://127.0.0.1:{port}/..." in message for message in failures)
    assert not any("SECRET-PATH" in r.getMessage() for r in caplog.records)


def test_an_error_status_is_logged_and_later_alerts_are_still_sent(
    client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    failing = Receiver(status=500)
    try:
        with caplog.at_level(logging.WARNING, logger="budgetguard"):
            with bg.Budget(max_tokens=10_000, alerts=["0.1%", "0.2%"], on_alert=failing.url):
                _chat(client)
                _chat(client)
            assert _webhooks.flush(SAFETY)
    finally:
        failing.close()
    assert len(failing.posts) == 2
    failures = [r.getMessage() for r in caplog.records if "could not send an alert" in r.getMessage()]
    assert len(failures) == 2 and all("HTTP 500" in message for message in failures)


def test_a_hanging_receiver_slows_no_request(
    client: Any, sim: Simulator, hanging: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="budgetguard")
    with bg.Budget(max_tokens=10_000, alerts=["0.1%", "0.2%", "0.3%"], on_alert=hanging.url) as run:
        _chat(client)  # crosses 0.1%: its alert is posted, and the receiver holds the post
        assert hanging.entered.wait(SAFETY)
        _chat(client)  # crosses 0.2% while the receiver still holds the first post
        _chat(client)
        assert not hanging.answered.is_set()  # every request returned while the receiver hung
    assert run.usage.requests == 3 and len(sim.requests) == 3
    assert len(hanging.posts) == 1  # the others wait their turn, off the call path
    hanging.release.set()
    assert _webhooks.flush(SAFETY)
    assert [post["json"]["budgetguard"]["threshold"] for post in hanging.posts] == ["0.001", "0.002", "0.003"]
    # The first post was still waiting for its answer, off the call path, when the requests
    # returned: it was answered, not given up on.
    assert not [r for r in caplog.records if "could not send" in r.getMessage()]


def test_a_full_queue_drops_the_alert_with_a_warning(
    monkeypatch: pytest.MonkeyPatch, hanging: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(_webhooks, "QUEUE_SIZE", 2)
    small = _webhooks._Sender()
    monkeypatch.setattr(_webhooks, "_sender", small)
    with caplog.at_level(logging.WARNING, logger="budgetguard"):
        small.submit(hanging.url, b"{}", 5.0)  # taken by the thread, held by the receiver
        assert hanging.entered.wait(SAFETY)
        for _ in range(3):  # two wait in the queue, the third is dropped at once
            small.submit(hanging.url, b"{}", 5.0)
    (dropped,) = [r for r in caplog.records if "dropped an alert" in r.getMessage()]
    assert dropped.levelno == logging.WARNING and "SECRET-PATH" not in dropped.getMessage()
    hanging.release.set()
    assert small.flush(SAFETY)
    assert len(hanging.posts) == 3


def test_the_sending_thread_survives_any_error(monkeypatch: pytest.MonkeyPatch, receiver: Receiver) -> None:
    calls: list[str] = []
    real_post = _webhooks._post

    def flaky(url: str, body: bytes, timeout: float) -> None:
        calls.append(url)
        if len(calls) == 1:
            raise RuntimeError("boom")
        real_post(url, body, timeout)

    monkeypatch.setattr(_webhooks, "_post", flaky)
    _webhooks._sender.submit(receiver.url, b'{"text": "one"}', 5.0)
    _webhooks._sender.submit(receiver.url, b'{"text": "two"}', 5.0)
    assert _webhooks.flush(SAFETY)
    assert [post["json"]["text"] for post in receiver.posts] == ["two"]
