"""``budgetguard prices``: the rates, the date of the price data, and ``--update`` (issue 10 item 5).

genai-prices' updater is faked at its boundary: a loopback HTTP server serves a price data file, and
``--url`` (``update_price_data(url=...)``) points the updater at it. The cache directory is a
temporary one (``$BUDGETGUARD_CACHE_DIR``).
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap
import threading
import time
import warnings
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

import budgetguard._pricing as pricing
from budgetguard._cli import main as cli
from budgetguard._errors import BudgetGuardError, BudgetGuardWarning
from budgetguard._pricing import PriceBook, price_data, start_price_updates, update_price_data
from budgetguard._usage import Usage

ONE_M = Usage(prompt_tokens=1_000_000, completion_tokens=1_000_000)

# A newer price list than the installed one, in genai-prices' data format: gpt-4o at $2 / $8.
NEWER_DATA = [
    {
        "id": "openai",
        "name": "OpenAI",
        "api_pattern": "https://api\\.openai\\.com",
        "model_match": {"starts_with": "gpt-"},
        "models": [
            {
                "id": "gpt-4o",
                "match": {"equals": "gpt-4o"},
                "prices": {
                    "input_mtok": 2,
                    "cache_read_mtok": 1,
                    "output_mtok": 8,
                    "web_searches_kcount": 10,
                },
            }
        ],
    }
]


class PriceServer:
    """Serves ``body`` at any path on 127.0.0.1 with ``status``; counts the requests."""

    def __init__(self) -> None:
        self.body: bytes = json.dumps(NEWER_DATA).encode()
        self.status = 200
        self.requests = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.requests += 1
                self.send_response(server.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(server.body)))
                self.end_headers()
                self.wfile.write(server.body)

            def log_message(self, *args: Any) -> None:
                pass

        self._http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._http.server_port}/prices/data.json"
        self._thread = threading.Thread(target=self._http.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._http.shutdown()
        self._http.server_close()


@pytest.fixture
def server() -> Iterator[PriceServer]:
    served = PriceServer()
    yield served
    served.close()


@pytest.fixture
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A fresh cache directory; prices read again from it now and from the defaults afterwards."""
    directory = tmp_path / "cache"
    monkeypatch.setenv("BUDGETGUARD_CACHE_DIR", str(directory))
    monkeypatch.delenv("BUDGETGUARD_CONFIG", raising=False)
    pricing._install_genai_data(None)
    yield directory
    thread = pricing._update_thread
    if thread is not None:
        thread.join(timeout=30)
    pricing._install_genai_data(None)


def write_cache(directory: Path, fetched_at: datetime, providers: Any = NEWER_DATA) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "genai-prices.json"
    envelope = {
        "format": 1,
        "fetched_at": fetched_at.isoformat(),
        "url": "http://mirror",
        "providers": providers,
    }
    path.write_text(json.dumps(envelope), encoding="utf-8")
    return path


# -- the rates and the date of the data in use -------------------------------------------------------


def test_prices_shows_the_rates_and_the_date_of_the_installed_data(
    cache_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import genai_prices

    assert cli(["prices", "gpt-4.1"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert "input_per_1m=2  output_per_1m=8  cached_input_per_1m=0.5" in out[0]
    assert "web_search_per_1k=10  file_search_per_1k=2.5" in out[0]
    installed = price_data().date
    assert installed is not None
    assert out[-1] == (
        f"price data: genai-prices {genai_prices.__version__} (bundled data, installed {installed:%Y-%m-%d})"
    )
    assert cli(["prices", "gpt-4.1", "--json"]) == 0
    line = json.loads(capsys.readouterr().out)
    assert line["price_data_date"] == installed.isoformat(timespec="seconds")
    assert line["price_data"].startswith(f"genai-prices {genai_prices.__version__} (bundled data")


def test_prices_without_a_model_or_update_is_an_error(
    cache_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli(["prices"]) == 2
    assert "name a MODEL" in capsys.readouterr().err
    assert cli(["prices", "gpt-4o", "--url", "http://127.0.0.1:9/x"]) == 2
    assert "pass --update too" in capsys.readouterr().err


# -- --update ----------------------------------------------------------------------------------------


def test_update_fetches_through_genai_prices_updater_caches_with_its_date_and_prices_with_it(
    cache_dir: Path, server: PriceServer, capsys: pytest.CaptureFixture[str]
) -> None:
    book = PriceBook()
    assert book.cost(ONE_M, "gpt-4o") == Decimal("12.5")  # the installed data: $2.50 / $10
    before = datetime.now(UTC)
    assert cli(["prices", "--update", "--url", server.url, "gpt-4o"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert server.requests == 1
    assert out[0].startswith("updated: genai-prices data fetched ")
    assert str(cache_dir / "genai-prices.json") in out[0]
    assert "input_per_1m=2  output_per_1m=8" in out[1]
    assert out[-1].startswith("price data: genai-prices data fetched ")

    envelope = json.loads((cache_dir / "genai-prices.json").read_text(encoding="utf-8"))
    assert envelope["providers"] == NEWER_DATA
    assert envelope["url"] == server.url
    assert before <= datetime.fromisoformat(envelope["fetched_at"]) <= datetime.now(UTC)
    # Books made before the update price with the new data too, and say where it came from.
    assert book.cost(ONE_M, "gpt-4o") == Decimal("10")
    info = price_data()
    assert (info.origin, info.url, info.path) == ("fetched", server.url, str(cache_dir / "genai-prices.json"))
    assert book.resolve("gpt-4o").source == f"genai-prices data of {info.date:%Y-%m-%d}"


def test_update_uses_genai_prices_updater_and_never_starts_its_thread(
    cache_dir: Path, server: PriceServer
) -> None:
    from genai_prices import data_snapshot, update_prices

    assert issubclass(pricing._caching_updater(), update_prices.UpdatePrices)
    update_price_data(url=server.url)
    assert update_prices._shared_updater.ref_count == 0
    assert update_prices._shared_updater.thread is None
    assert data_snapshot._custom_snapshot is None  # genai-prices' global snapshot is left alone


def test_update_with_json_prints_one_object_per_line(
    cache_dir: Path, server: PriceServer, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli(["prices", "--update", "--url", server.url, "--json", "gpt-4o"]) == 0
    first, second = (json.loads(line) for line in capsys.readouterr().out.splitlines())
    assert first["updated"] is True and first["cache"] == str(cache_dir / "genai-prices.json")
    assert second["input_per_1m"] == "2" and second["price_data_date"] == first["price_data_date"]


@pytest.mark.parametrize(
    ("status", "body", "problem"),
    [
        (500, b"{}", "HTTPStatusError"),
        (200, b'{"not": "a list"}', "provider array"),
        (200, b"not json", "JSONDecodeError"),
        (200, json.dumps([{"id": "openai", "models": "nonsense"}]).encode(), "ValidationError"),
    ],
)
def test_a_failed_update_is_an_error_and_changes_nothing(
    cache_dir: Path,
    server: PriceServer,
    capsys: pytest.CaptureFixture[str],
    status: int,
    body: bytes,
    problem: str,
) -> None:
    server.status, server.body = status, body
    assert cli(["prices", "--update", "--url", server.url]) == 2
    err = capsys.readouterr().err
    assert f"could not fetch price data from {server.url}" in err and problem in err
    assert not (cache_dir / "genai-prices.json").exists()
    assert price_data().origin == "installed"
    assert PriceBook().cost(ONE_M, "gpt-4o") == Decimal("12.5")


def test_an_unreachable_server_is_an_error_not_a_hang(cache_dir: Path) -> None:
    with pytest.raises(BudgetGuardError, match="could not fetch price data"):
        update_price_data(url="http://127.0.0.1:9/data.json", timeout=5)


# -- the cache, in later processes -------------------------------------------------------------------


def run_python(code: str, cache: Path) -> str:
    env = {**os.environ, "BUDGETGUARD_CACHE_DIR": str(cache)}
    env.pop("BUDGETGUARD_CONFIG", None)
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=120, env=env,
        check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_a_later_process_prices_with_the_cached_data_and_never_fetches(
    cache_dir: Path, server: PriceServer
) -> None:
    update_price_data(url=server.url)
    out = run_python(
        """
        import socket
        def refuse(*args, **kwargs):
            raise OSError("network is off in this test")
        socket.socket.connect = refuse
        socket.create_connection = refuse

        from budgetguard._pricing import default_price_book, price_data
        from budgetguard._usage import Usage
        book = default_price_book()
        print(book.cost(Usage(prompt_tokens=10**6, completion_tokens=10**6), "gpt-4o"))
        print(price_data().origin, book.resolve("gpt-4o").source)
        """,
        cache_dir,
    )
    cost, origin = out.splitlines()
    assert cost == "10"
    assert origin.startswith("fetched genai-prices data of ")
    assert server.requests == 1


def test_a_cache_older_than_the_installed_package_is_not_used(cache_dir: Path) -> None:
    write_cache(cache_dir, datetime(2000, 1, 1, tzinfo=UTC))
    assert PriceBook().cost(ONE_M, "gpt-4o") == Decimal("12.5")
    assert price_data().origin == "installed"


def test_a_cache_newer_than_the_installed_package_is_used(cache_dir: Path) -> None:
    installed = pricing._installed_date()
    assert installed is not None
    write_cache(cache_dir, installed + timedelta(minutes=1))
    assert PriceBook().cost(ONE_M, "gpt-4o") == Decimal("10")
    info = price_data()
    assert (info.origin, info.url) == ("fetched", "http://mirror")
    assert info.label.startswith("genai-prices data fetched ")


def test_an_unreadable_cache_warns_and_the_installed_data_is_used(cache_dir: Path) -> None:
    write_cache(cache_dir, datetime.now(UTC), providers=[{"id": 3}])
    with pytest.warns(BudgetGuardWarning, match="ignoring the cached price data"):
        assert PriceBook().cost(ONE_M, "gpt-4o") == Decimal("12.5")
    assert price_data().origin == "installed"


# -- checking once a day in the background (opted in by configuration) ------------------------------


def test_background_updates_fetch_at_most_once_per_interval(cache_dir: Path, server: PriceServer) -> None:
    thread = start_price_updates(url=server.url)
    assert thread is not None and thread.daemon
    thread.join(timeout=30)
    assert server.requests == 1
    assert price_data().origin == "fetched"
    assert start_price_updates(url=server.url) is None  # fetched less than a day ago
    assert server.requests == 1
    again = start_price_updates(url=server.url, interval=0)
    assert again is not None
    again.join(timeout=30)
    assert server.requests == 2


def test_a_failed_background_update_is_logged_and_not_retried_within_the_interval(
    cache_dir: Path, server: PriceServer, caplog: pytest.LogCaptureFixture
) -> None:
    server.status = 503
    with caplog.at_level(logging.WARNING, logger="budgetguard"):
        thread = start_price_updates(url=server.url)
        assert thread is not None
        thread.join(timeout=30)
    assert "background price update failed" in caplog.text
    assert price_data().origin == "installed"
    assert (cache_dir / "genai-prices.checked").exists()
    assert start_price_updates(url=server.url) is None
    assert server.requests == 1


def test_pricing_never_checks_for_updates_on_its_own(cache_dir: Path, server: PriceServer) -> None:
    installed = pricing._installed_date()
    assert installed is not None
    stale = write_cache(cache_dir, installed + timedelta(seconds=1))
    os.utime(stale, (time.time() - 10 * 86_400,) * 2)  # last fetched long ago
    book = PriceBook()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert book.cost(ONE_M, "gpt-4o") == Decimal("10")  # the cached data (only gpt-4o in it)
        book.in_region("eu").cost(ONE_M, "gpt-4o")
    assert server.requests == 0
    assert pricing._update_thread is None or not pricing._update_thread.is_alive()


def test_auto_update_in_the_configuration_starts_the_daily_check(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import budgetguard as bg
    from budgetguard import _pricing

    started: list[bool] = []
    monkeypatch.setattr(_pricing, "start_price_updates", lambda **_: started.append(True))
    config = tmp_path / "bg.yaml"
    config.write_text("version: 1\npricing:\n  auto_update: true\n")
    bg.configure(config)
    assert started == [True]
    config.write_text("version: 1\npricing:\n  auto_update: false\n")
    bg.configure(config)
    assert started == [True]
