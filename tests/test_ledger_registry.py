"""Ledger backends by URI scheme: a backend declares its schemes and opens itself from a URI.

A user-defined backend is a ``Ledger`` subclass with ``schemes`` and ``from_uri``; it is then
reachable from ``open_ledger``, ``Budget(store=...)`` and a YAML configuration, exactly like the
built-in ones.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import budgetguard as bg
from budgetguard._config import parse_config
from budgetguard._errors import ConfigError
from budgetguard._ledger import (
    Amount,
    Hold,
    Ledger,
    Limits,
    MemoryLedger,
    Refused,
    Snapshot,
    SpendRecord,
    Window,
    _base,
    check_store_uri,
    close_ledgers,
    ledger_schemes,
    open_ledger,
)
from budgetguard._ledger._redis import RedisLedger
from budgetguard._ledger._sqlite import SQLiteLedger


class _Base(Ledger):
    """What a backend author writes: the four operations (here kept in a MemoryLedger)."""

    def __init__(self, name: str, *, clock: Callable[[], float], region: str = "eu") -> None:
        self.name = name
        self.region = region
        self.clock = clock
        self.calls: list[str] = []
        self._inner = MemoryLedger(clock=clock)

    def reserve(
        self, budget: str, amount: Amount, limits: Limits, window: Window | None, *, ttl: float = 600.0
    ) -> Hold | Refused:
        self.calls.append("reserve")
        return self._inner.reserve(budget, amount, limits, window, ttl=ttl)

    def settle(self, hold: Hold, actual: Amount, record: SpendRecord | None = None) -> None:
        self.calls.append("settle")
        self._inner.settle(hold, actual, record)

    def release(self, hold: Hold) -> None:
        self._inner.release(hold)

    def snapshot(self, budget: str, window: Window | None) -> Snapshot:
        self.calls.append(f"snapshot {budget}")
        return self._inner.snapshot(budget, window)


@pytest.fixture(autouse=True)
def _restore_registry() -> Iterator[None]:
    """Backends registered by a test are forgotten after it (the built-in ones stay)."""
    _base._load_builtins()
    saved = dict(_base._registry)
    yield
    close_ledgers()
    _base._registry.clear()
    _base._registry.update(saved)


@pytest.fixture
def my_store() -> type[_Base]:
    class MyStore(_Base):
        schemes = ("mystore",)
        uri_examples = ("mystore://name",)
        uri_options = frozenset({"region"})

        @classmethod
        def check_uri(cls, uri: str) -> str:
            name = uri.partition("://")[2]
            if not name.isidentifier():
                raise ConfigError(f"invalid MyStore URI {uri!r}: expected mystore://name")
            return name

        @classmethod
        def from_uri(cls, uri: str, *, clock: Callable[[], float], **options: Any) -> MyStore:
            return cls(cls.check_uri(uri), clock=clock, **options)

    return MyStore


# --- open_ledger -----------------------------------------------------------------------------------


def test_a_custom_backend_is_opened_by_its_scheme_and_shared_per_uri(my_store: type[_Base]) -> None:
    ledger = open_ledger("mystore://spend")
    assert type(ledger) is my_store
    assert (ledger.name, ledger.region) == ("spend", "eu")
    assert open_ledger("mystore://spend") is ledger
    assert open_ledger("MyStore://spend") is ledger  # schemes are case-insensitive
    assert open_ledger("mystore://other") is not ledger
    with_option = open_ledger("mystore://spend", region="us")
    assert with_option is not ledger
    assert isinstance(with_option, my_store)
    assert with_option.region == "us"
    assert check_store_uri("mystore://spend", region="us") is my_store


def test_a_custom_backend_refuses_its_bad_uris_and_options(my_store: type[_Base]) -> None:
    with pytest.raises(ConfigError, match=r"invalid MyStore URI 'mystore://no way': expected mystore://name"):
        open_ledger("mystore://no way")
    with pytest.raises(
        ConfigError, match=r"invalid option for a mystore:// ledger: fail_open \(.*MyStore takes: region\)"
    ):
        open_ledger("mystore://spend", fail_open=True)


def test_an_unknown_scheme_lists_every_registered_one_including_custom_ones(my_store: type[_Base]) -> None:
    message = "unknown store scheme 'postgres' in 'postgres://db': known schemes are " + (
        "memory://, sqlite://, redis://, rediss://, redis+cluster://, rediss+cluster://, mystore://"
    )
    with pytest.raises(ConfigError) as caught:
        open_ledger("postgres://db")
    assert str(caught.value) == message
    with pytest.raises(ConfigError, match=r"expected one of memory://, .*, mystore://name$"):
        open_ledger("spend.db")
    assert ledger_schemes() == (
        "memory",
        "sqlite",
        "redis",
        "rediss",
        "redis+cluster",
        "rediss+cluster",
        "mystore",
    )
    assert ledger_schemes("region") == ("mystore",)


def test_a_custom_backend_is_the_store_of_a_budget(my_store: type[_Base]) -> None:
    budget = bg.Budget(max_usd=1, name="run", store="mystore://spend")
    assert budget.snapshot() == Snapshot(Amount(), Amount())
    assert budget.spent_usd == 0
    ledger = open_ledger("mystore://spend")
    assert budget.ledger is ledger
    assert "snapshot run" in ledger.calls  # type: ignore[attr-defined]


# --- YAML configuration ----------------------------------------------------------------------------


def test_a_custom_backend_is_a_store_in_the_configuration(my_store: type[_Base], tmp_path: Path) -> None:
    text = """version: 1
defaults:
  store: mystore://shared
budgets:
  daily: {max_usd: 1, window: 1d}
  own: {max_usd: 2, store: "mystore://own"}
"""
    config = parse_config(text)
    assert (config.budgets["daily"].store, config.budgets["own"].store) == (
        "mystore://shared",
        "mystore://own",
    )

    path = tmp_path / "budgetguard.yaml"
    path.write_text(text, encoding="utf-8")
    bg.configure(path)
    daily = bg.Budget.named("daily")
    assert daily.snapshot().spent == Amount()
    assert daily.ledger is open_ledger("mystore://shared")


def test_the_configuration_checks_a_custom_uri_with_its_backend(my_store: type[_Base]) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config("version: 1\nbudgets:\n  b:\n    max_usd: 1\n    store: mystore://no way\n")
    assert caught.value.key == "budgets.b.store"
    assert "invalid MyStore URI 'mystore://no way': expected mystore://name" in str(caught.value)
    with pytest.raises(ConfigError, match=r"known schemes are .*mystore://") as unknown:
        parse_config("version: 1\ndefaults:\n  store: nostore://x\n")
    assert unknown.value.key == "defaults.store"


def test_fail_open_is_for_the_backends_that_take_it(my_store: type[_Base]) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config("version: 1\nbudgets:\n  b:\n    store: mystore://x\n    fail_open: true\n")
    assert caught.value.key == "budgets.b.fail_open"
    assert (
        "fail_open applies to redis://, rediss://, redis+cluster://, rediss+cluster:// stores; "
        "this budget's store is 'mystore://x'"
    ) in str(caught.value)

    class OpenStore(_Base):
        schemes = ("openstore",)
        uri_options = frozenset({"fail_open"})

        @classmethod
        def from_uri(cls, uri: str, *, clock: Callable[[], float], **options: Any) -> OpenStore:
            return cls(uri, clock=clock)

    config = parse_config(
        "version: 1\ndefaults:\n  fail_open: true\nbudgets:\n"
        "  a: {store: 'openstore://x'}\n"
        "  b: {store: 'mystore://x'}\n"
        "  c: {store: 'openstore://x', fail_open: false}\n"
    )
    assert [config.budgets[n].fail_open for n in "abc"] == [True, False, False]


# --- registration ----------------------------------------------------------------------------------


def test_a_scheme_registered_to_another_class_is_an_error_naming_both(my_store: type[_Base]) -> None:
    with pytest.raises(
        ValueError, match=r"mystore:// is registered to .*\.MyStore; .*\.OtherStore cannot"
    ) as caught:

        class OtherStore(_Base):
            schemes = ("mystore",)

            @classmethod
            def from_uri(cls, uri: str, *, clock: Callable[[], float], **options: Any) -> Ledger:
                return cls(uri, clock=clock)

    assert "test_ledger_registry" in str(caught.value)
    assert type(open_ledger("mystore://x")) is my_store  # the first registration stands


def test_a_built_in_scheme_cannot_be_taken(my_store: type[_Base]) -> None:
    with pytest.raises(
        ValueError, match=r"redis:// is registered to budgetguard\._ledger\._redis\.RedisLedger"
    ):

        class MyRedis(_Base):
            schemes = ("redis",)

            @classmethod
            def from_uri(cls, uri: str, *, clock: Callable[[], float], **options: Any) -> Ledger:
                return cls(uri, clock=clock)


def test_the_same_class_defined_again_replaces_itself(my_store: type[_Base]) -> None:
    def define() -> type[Ledger]:
        class Again(_Base):
            schemes = ("again",)

            @classmethod
            def from_uri(cls, uri: str, *, clock: Callable[[], float], **options: Any) -> Ledger:
                return cls(uri, clock=clock)

        return Again

    define()
    second = define()  # a module reloaded, a notebook cell run twice
    assert type(open_ledger("again://x")) is second


def test_a_backend_declares_its_schemes_as_a_tuple_and_defines_from_uri() -> None:
    with pytest.raises(TypeError, match=r"schemes must be a tuple of lower-case URI schemes"):

        class Spelled(_Base):
            schemes = "spelled"  # type: ignore[assignment]

            @classmethod
            def from_uri(cls, uri: str, *, clock: Callable[[], float], **options: Any) -> Ledger:
                return cls(uri, clock=clock)

    with pytest.raises(TypeError, match=r"schemes must be .*got \('my://',\)"):

        class WithSlashes(_Base):
            schemes = ("my://",)

            @classmethod
            def from_uri(cls, uri: str, *, clock: Callable[[], float], **options: Any) -> Ledger:
                return cls(uri, clock=clock)

    with pytest.raises(TypeError, match=r"declares schemes \('nouri',\) but does not define from_uri"):

        class NoFromUri(_Base):
            schemes = ("nouri",)

    assert "nouri" not in ledger_schemes()


def test_a_subclass_that_declares_no_schemes_registers_nothing() -> None:
    class CountingMemory(MemoryLedger):
        pass

    assert type(open_ledger("memory://")) is MemoryLedger
    assert ledger_schemes() == ("memory", "sqlite", "redis", "rediss", "redis+cluster", "rediss+cluster")


# --- the built-in backends -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        (
            "spend.db",
            "invalid store URI 'spend.db': expected one of memory://, sqlite:///relative/path.db, "
            "sqlite:////absolute/path.db, redis://host:6379/0, redis+cluster://host:6379,host:6380",
        ),
        (
            "postgres://db/x",
            "unknown store scheme 'postgres' in 'postgres://db/x': known schemes are "
            "memory://, sqlite://, redis://, rediss://, redis+cluster://, rediss+cluster://",
        ),
        (
            "sqlite://spend.db",
            "invalid SQLite store URI 'sqlite://spend.db': use sqlite:///relative/path.db (three slashes), "
            "sqlite:////absolute/path.db (four) or sqlite:///:memory:",
        ),
        (
            "sqlite:///x.db?mode=ro",
            "invalid SQLite store URI 'sqlite:///x.db?mode=ro': query strings are not supported",
        ),
        ("redis:///0", "invalid Redis store URI 'redis:///0': expected redis://host:port/db"),
        (
            "redis://localhost:6380/cache",
            "invalid Redis store URI 'redis://localhost:6380/cache': the database must be a number "
            "(redis://host:6380/0)",
        ),
        (
            "rediss://localhost:port/0",
            "invalid Redis store URI 'rediss://localhost:port/0': "
            "Port could not be cast to integer value as 'port'",
        ),
    ],
)
def test_built_in_uri_messages_are_unchanged(uri: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        check_store_uri(uri)
    assert str(caught.value) == message


def test_built_in_backends_declare_their_schemes() -> None:
    assert MemoryLedger.schemes == ("memory",)
    assert SQLiteLedger.schemes == ("sqlite",)
    assert RedisLedger.schemes == ("redis", "rediss")
    assert ledger_schemes("fail_open") == ("redis", "rediss", "redis+cluster", "rediss+cluster")
    assert check_store_uri("redis://localhost:6379/0", fail_open=True) is RedisLedger
    with pytest.raises(ConfigError, match=r"invalid option for a sqlite:// ledger: fail_open"):
        check_store_uri("sqlite:///x.db", fail_open=True)


def test_import_budgetguard_loads_no_persistent_backend() -> None:
    code = (
        "import sys, budgetguard\n"
        "print(sorted(m for m in ('redis', 'sqlite3', 'budgetguard._ledger._sqlite', "
        "'budgetguard._ledger._redis') if m in sys.modules))\n"
        "from budgetguard._ledger import check_store_uri\n"
        "check_store_uri('memory://')\n"
        "print('budgetguard._ledger._sqlite' in sys.modules)\n"
        "check_store_uri('redis://localhost/0', fail_open=True)\n"
        "print('redis' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split("\n")[:3] == ["[]", "False", "False"]
