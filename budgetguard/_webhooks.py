"""Budget alerts posted to a webhook, off the call path.

``Budget(on_alert="https://hooks.slack.com/services/...")`` (or ``on_alert: URL`` in the
configuration) turns the URL into a :class:`WebhookAlert`: each alert is a JSON ``POST`` whose
``text`` field is one readable line (what Slack's, Mattermost's and Rocket.Chat's incoming
webhooks show) and whose ``budgetguard`` field holds the numbers.

Sending never blocks or fails the call that crossed the threshold: the alert is put on a
bounded queue (``QUEUE_SIZE``; when it is full the alert is dropped and a warning logged) and
one daemon thread, started on first use, posts the alerts in order with the standard library
(``urllib``), each with a timeout of ``TIMEOUT`` seconds. A failed post (a refused connection,
an HTTP error, a timeout) is logged at WARNING under the ``budgetguard`` logger and never
retried. At interpreter exit the alerts still queued are given ``EXIT_GRACE`` seconds in all.

A webhook URL is a secret (whoever has a Slack webhook URL can post to the channel): logs and
``repr`` show its scheme and host only.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import queue
import threading
import time
import urllib.parse
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from budgetguard._errors import ConfigError

if TYPE_CHECKING:
    from budgetguard._ledger import Snapshot
    from budgetguard._scopes import Budget

__all__ = [
    "EXIT_GRACE",
    "QUEUE_SIZE",
    "TIMEOUT",
    "WebhookAlert",
    "alert_payload",
    "check_webhook_url",
    "flush",
]

#: Alerts waiting to be sent, at most; more are dropped (with a warning).
QUEUE_SIZE = 256
#: Seconds one post may take (connect and answer).
TIMEOUT = 5.0
#: Seconds the alerts still queued at interpreter exit are given, in all.
EXIT_GRACE = 2.0

logger = logging.getLogger("budgetguard")


def check_webhook_url(url: object) -> str:
    """``url`` if it is an ``http://`` or ``https://`` URL with a host; else ``ConfigError``."""
    if not isinstance(url, str):
        raise ConfigError(f"a webhook must be an http:// or https:// URL, got {type(url).__name__}")
    url = url.strip()
    if any(ch.isspace() or not ch.isprintable() for ch in url):
        raise ConfigError("a webhook URL must not contain spaces or control characters")
    try:
        parts = urllib.parse.urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError as exc:
        raise ConfigError(f"a webhook must be an http:// or https:// URL ({exc})") from None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        shown = f"{parts.scheme}://..." if parts.scheme else "text without a scheme"
        raise ConfigError(f"a webhook must be an http:// or https:// URL with a host, got {shown}")
    return url


def redact(url: str) -> str:
    """The scheme and host of a webhook URL: its path and query may be its secret."""
    parts = urllib.parse.urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}{f':{parts.port}' if parts.port else ''}/..."


class WebhookAlert:
    """An ``on_alert`` callback that posts each alert to ``url`` (see the module docstring)."""

    __slots__ = ("timeout", "url")

    def __init__(self, url: str, *, timeout: float = TIMEOUT) -> None:
        self.url = check_webhook_url(url)
        self.timeout = timeout

    def __call__(self, budget: Budget, threshold: Decimal, snapshot: Snapshot) -> None:
        try:
            body = json.dumps(alert_payload(budget, threshold, snapshot)).encode()
            _sender.submit(self.url, body, self.timeout)
        except Exception as exc:  # an alert never fails the call that crossed the threshold
            logger.warning(
                "budgetguard could not queue an alert for webhook %s: %s", redact(self.url), _why(exc)
            )

    def __eq__(self, other: object) -> bool:
        return isinstance(other, WebhookAlert) and (other.url, other.timeout) == (self.url, self.timeout)

    def __hash__(self) -> int:
        return hash((self.url, self.timeout))

    def __repr__(self) -> str:
        return f"WebhookAlert({redact(self.url)!r})"


def alert_payload(budget: Budget, threshold: Decimal, snapshot: Snapshot) -> dict[str, Any]:
    """The JSON an alert posts: ``text`` (one line) and the numbers under ``budgetguard``."""
    spent, reserved = snapshot.spent, snapshot.reserved
    caps: list[str] = []
    if budget.max_usd is not None:
        caps.append(f"${spent.usd} of ${budget.max_usd}")
    if budget.max_tokens is not None:
        caps.append(f"{spent.tokens:,} of {budget.max_tokens:,} tokens")
    if budget.max_requests is not None:
        caps.append(f"{spent.requests:,} of {budget.max_requests:,} requests")
    who = f"budget {budget.name!r}" + (f" (key {budget.key!r})" if budget.key is not None else "")
    when = " in the current window" if budget.window is not None else ""
    text = f"budgetguard: {who} reached {_percent(threshold)} of its cap{when}: " + ", ".join(caps) + " spent"
    return {
        "text": text,
        "budgetguard": {
            "budget": budget.name,
            "key": budget.key,
            "threshold": str(threshold),
            "spent": {"usd": str(spent.usd), "tokens": spent.tokens, "requests": spent.requests},
            "reserved": {"usd": str(reserved.usd), "tokens": reserved.tokens, "requests": reserved.requests},
            "limits": {
                "usd": None if budget.max_usd is None else str(budget.max_usd),
                "tokens": budget.max_tokens,
                "requests": budget.max_requests,
            },
        },
    }


def _percent(fraction: Decimal) -> str:
    return f"{(fraction * 100).normalize():f}%"


class _Sender:
    """One daemon thread posting queued alerts, in order, one at a time."""

    def __init__(self) -> None:
        self._queue: queue.Queue[tuple[str, bytes, float]]
        self._lock: threading.Lock
        self._thread: threading.Thread | None
        self.reset()

    def reset(self) -> None:
        """A new queue and no thread (also in a forked child: the thread is gone there, and the
        queue's locks may have been held at the fork)."""
        self._queue = queue.Queue(QUEUE_SIZE)
        self._lock = threading.Lock()
        self._thread = None

    def submit(self, url: str, body: bytes, timeout: float) -> None:
        """Queue one post; never blocks (a full queue drops it, with a warning)."""
        self._start()
        try:
            self._queue.put_nowait((url, body, timeout))
        except queue.Full:
            logger.warning(
                "budgetguard dropped an alert for webhook %s: %d alerts are already waiting to be sent",
                redact(url),
                QUEUE_SIZE,
            )

    def _start(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="budgetguard-webhooks", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while True:
            url, body, timeout = self._queue.get()
            try:
                _post(url, body, timeout)
            except BaseException as exc:  # the thread must outlive every failure
                logger.warning(
                    "budgetguard could not send an alert to webhook %s: %s", redact(url), _why(exc)
                )
            finally:
                self._queue.task_done()

    def flush(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for every queued alert to be sent (or to fail)."""
        deadline = time.monotonic() + timeout
        done = self._queue.all_tasks_done
        with done:
            while self._queue.unfinished_tasks:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                done.wait(left)
        return True


def _post(url: str, body: bytes, timeout: float) -> None:
    import urllib.request  # loaded on the first alert: it pulls in http.client, email, ssl

    request = urllib.request.Request(
        url,
        data=body,
        method="POST",
        headers={"Content-Type": "application/json", "User-Agent": "budgetguard"},
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:  # http(s) only: check_webhook_url
        response.read(65536)


def _why(exc: BaseException) -> str:
    """A failure in a few words, never the URL (urllib's messages do not contain it)."""
    import urllib.error

    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code} {exc.reason}"
    if isinstance(exc, urllib.error.URLError):
        return str(exc.reason)
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


_sender = _Sender()


def flush(timeout: float = EXIT_GRACE) -> bool:
    """Wait up to ``timeout`` seconds for the queued alerts; True when none is left."""
    return _sender.flush(timeout)


atexit.register(flush)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_sender.reset)
