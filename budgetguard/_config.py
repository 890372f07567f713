"""The YAML configuration: named budgets, windows, stores, policies and price overrides.

``load_config(path)`` / ``parse_config(text)`` turn a file into frozen dataclasses, or raise a
``ConfigError`` naming the file, the line and the dotted key (``budgets.daily.max_usd``) of the
problem: malformed YAML, an unknown key (with a suggestion), a wrong type, a value out of range,
or options that do not work together. A file with several problems raises ``ConfigErrors``,
which lists every one. The format is documented by the annotated example
``config/budgetguard.yaml`` and the JSON Schema ``config/schema.json``.

Each option has one reader, used both for the file and for ``configure()``'s keyword arguments
(``check_options``): the two cannot disagree.

YAML is read with ``yaml.safe_load`` semantics, except that floats become ``Decimal`` from the
text as written (``0.1`` is exactly one tenth), duplicate keys are errors, and every key keeps
its line number.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Literal, cast, get_args

import yaml

from budgetguard._errors import BudgetGuardError, ConfigError
from budgetguard._ledger import DEFAULT_STORE, Window, check_store_uri, ledger_schemes
from budgetguard._pricing import ModelRates
from budgetguard._windows import load_zone, parse_window

__all__ = [
    "CONFIGURE_OPTIONS",
    "CONFIG_ENV",
    "CONFIG_VERSION",
    "BudgetConfig",
    "Config",
    "ConfigErrors",
    "Defaults",
    "OnExceed",
    "PricingConfig",
    "TelemetryConfig",
    "UnknownModel",
    "check_options",
    "config_from_env",
    "config_problems",
    "load_config",
    "parse_config",
    "store_file",
    "to_decimal",
    "usd_argument",
]

CONFIG_VERSION = 1
CONFIG_ENV = "BUDGETGUARD_CONFIG"
OnExceed = Literal["raise", "warn", "clamp", "wait"]
UnknownModel = Literal["error", "warn"]
_POLICIES: tuple[str, ...] = get_args(OnExceed)
_UNKNOWN_MODEL: tuple[str, ...] = get_args(UnknownModel)
_BUDGET_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_DEFAULT_HOLD_TTL = 600.0

_TOP_KEYS = ("version", "defaults", "budgets", "pricing", "telemetry")
_BUDGET_KEYS = (
    "max_usd", "max_tokens", "max_requests", "window", "rolling", "timezone", "store", "on_exceed",
    "max_wait", "alerts", "keyed", "fail_open", "hold_ttl", "process_wide", "auto_output_cap",
    "lease_usd", "lease_tokens", "lease_requests", "lease_fraction", "lease_flush", "on_alert",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Defaults:
    """Settings every budget inherits unless it sets its own (``defaults:``)."""

    on_exceed: OnExceed = "raise"
    unknown_model: UnknownModel = "error"
    fallback_price: ModelRates | None = None
    assume_output_tokens: int | None = None
    safety_margin: float | None = None
    store: str = DEFAULT_STORE
    #: Inherited by the budgets whose store takes it (``ledger_schemes("fail_open")``).
    fail_open: bool = False
    max_wait: float | None = None
    #: The zone of calendar windows that do not name one.
    timezone: str = "UTC"
    hold_ttl: float = _DEFAULT_HOLD_TTL


@dataclass(frozen=True, slots=True)
class BudgetConfig:
    """One named budget (``budgets.<name>:``), with the defaults applied."""

    name: str
    max_usd: Decimal | None
    max_tokens: int | None
    max_requests: int | None
    window: Window | None
    #: The window as written (``"1d"``), or None.
    window_text: str | None
    store: str
    on_exceed: OnExceed
    max_wait: float | None
    #: Fractions of the caps at which alerts fire, ascending (``80%`` is ``Decimal("0.8")``).
    alerts: tuple[Decimal, ...]
    #: One cap per key (user, tenant): ``Budget.named(name, key=...)``.
    keyed: bool
    #: Whether the store fails open: only ever true for a store whose backend takes ``fail_open``
    #: (a budget's own ``fail_open: true`` on another store is an error; the default is not inherited).
    fail_open: bool
    hold_ttl: float
    #: Once entered, charged for every call in the process, whatever thread makes it.
    process_wide: bool = False
    #: Give requests without an output cap the cap that fits (False: refuse them instead).
    auto_output_cap: bool = True
    #: Options for opening the store (``lease_usd``, ...: see ``open_ledger``).
    store_options: tuple[tuple[str, Any], ...] = ()
    #: A webhook URL each alert is posted to (``Budget(on_alert=URL)``), or None.
    on_alert: str | None = None


@dataclass(frozen=True, slots=True)
class PricingConfig:
    """Price overrides (USD per 1M tokens), model aliases and a discount (``pricing:``)."""

    models: dict[str, ModelRates]
    aliases: dict[str, str]
    discount: Decimal = Decimal(0)
    #: Check for newer genai-prices data at most once a day, in the background (opt-in).
    auto_update: bool = False


@dataclass(frozen=True, slots=True)
class TelemetryConfig:
    """``telemetry:``: ``otel: true`` reports calls to OpenTelemetry once ``configure()`` loads
    the file (false switches it off; absent leaves it as it is)."""

    otel: bool | None = None


@dataclass(frozen=True, slots=True)
class Config:
    version: int
    defaults: Defaults
    budgets: dict[str, BudgetConfig]
    pricing: PricingConfig
    #: Where the configuration came from (a path, or ``<string>``).
    source: str
    telemetry: TelemetryConfig = TelemetryConfig()


# --- YAML with line numbers -----------------------------------------------------------------------


class _Map(dict[Any, Any]):
    """A YAML mapping that remembers the line of itself, each key and each value (1-based)."""

    #: None for values that come from Python (``configure()``), not from a file.
    line: int | None = 1

    def __init__(self) -> None:
        super().__init__()
        self.key_lines: dict[Any, int] = {}
        self.value_lines: dict[Any, int] = {}


class _Seq(list[Any]):
    line: int | None = 1

    def __init__(self) -> None:
        super().__init__()
        self.item_lines: list[int | None] = []


class _Loader(yaml.SafeLoader):
    source = "<string>"


def _construct_map(loader: _Loader, node: yaml.MappingNode) -> _Map:
    explicit = {id(key_node) for key_node, _ in node.value}
    loader.flatten_mapping(node)  # YAML merge keys (<<: *anchor): merged pairs come first
    result = _Map()
    result.line = node.start_mark.line + 1
    merged: set[Any] = set()
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        line = key_node.start_mark.line + 1
        try:
            duplicate = key in result and key not in merged  # a key written here overrides a merged one
        except TypeError:
            raise ConfigError(
                f"a key must be a plain value, got {type(key).__name__}", source=loader.source, line=line
            ) from None
        if duplicate:
            raise ConfigError(
                f"duplicate key {key!r} (first on line {result.key_lines[key]})",
                source=loader.source,
                line=line,
            )
        result[key] = loader.construct_object(value_node, deep=True)
        if id(key_node) in explicit:
            merged.discard(key)
        else:
            merged.add(key)
        result.key_lines[key] = line
        result.value_lines[key] = value_node.start_mark.line + 1
    return result


def _construct_seq(loader: _Loader, node: yaml.SequenceNode) -> _Seq:
    result = _Seq()
    result.line = node.start_mark.line + 1
    for item in node.value:
        result.append(loader.construct_object(item, deep=True))
        result.item_lines.append(item.start_mark.line + 1)
    return result


def _construct_decimal(loader: _Loader, node: yaml.ScalarNode) -> Decimal:
    # Money must be exact: read the digits as written, never through a binary float.
    text = str(loader.construct_scalar(node)).replace("_", "").strip()
    special = {".inf": "Infinity", "+.inf": "Infinity", "-.inf": "-Infinity", ".nan": "NaN"}
    try:
        return Decimal(special.get(text.lower(), text))
    except InvalidOperation:  # YAML 1.1 base-60 floats (1:30.5): rare enough to go through float
        return Decimal(repr(loader.construct_yaml_float(node)))


_Loader.add_constructor("tag:yaml.org,2002:map", _construct_map)
_Loader.add_constructor("tag:yaml.org,2002:seq", _construct_seq)
_Loader.add_constructor("tag:yaml.org,2002:float", _construct_decimal)


def _load_yaml(text: str, source: str) -> Any:
    loader = _Loader(text)
    loader.source = source
    try:
        return loader.get_single_data()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        detail = str(exc.problem or "")
        if exc.context:
            started = exc.context_mark
            where = f" (line {started.line + 1})" if started is not None and started.line + 1 != line else ""
            detail = f"{exc.context}{where}: {detail}"
        raise ConfigError(
            f"invalid YAML: {detail}", source=source, line=line, key=_key_near(text, line) if line else None
        ) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"invalid YAML: {exc}", source=source) from None
    finally:
        loader.dispose()


def _key_near(text: str, line: int) -> str | None:
    """The dotted key whose block contains ``line``, from indentation (for YAML syntax errors)."""
    stack: list[tuple[int, str]] = []
    for raw in text.splitlines()[:line]:
        match = re.match(r"^(\s*)(?:-\s+)?([^\s#:'\"][^:#]*?|'[^']*'|\"[^\"]*\")\s*:(\s|$)", raw)
        if match is None:
            continue
        indent = len(match.group(1))
        while stack and stack[-1][0] >= indent:
            stack.pop()
        stack.append((indent, match.group(2).strip("'\"")))
    return ".".join(name for _, name in stack) or None


# --- validation -----------------------------------------------------------------------------------
#
# Every option is read by one reader, ``(checker, key) -> value or None``: the YAML loader and
# ``configure()``'s keyword arguments (``check_options``) call the same readers. A reader never
# raises: it records the problem in its checker (file, line, dotted key) and returns None, so one
# pass finds every problem in a file; ``parse_config`` raises them together at the end.


class ConfigErrors(ConfigError):
    """Several problems in one configuration: ``problems`` holds each, in file order.

    ``source``, ``line`` and ``key`` are those of the first; the message lists them all, one a line.
    A configuration with a single problem raises that ``ConfigError`` itself.
    """

    def __init__(self, problems: Sequence[ConfigError]) -> None:
        self.problems = tuple(problems)
        first = self.problems[0]
        self.source, self.line, self.key = first.source, first.line, first.key
        BudgetGuardError.__init__(self, "\n".join(str(problem) for problem in self.problems))


def config_problems(exc: ConfigError) -> tuple[ConfigError, ...]:
    """Each problem a ``ConfigError`` reports (one, unless it is a ``ConfigErrors``)."""
    return exc.problems if isinstance(exc, ConfigErrors) else (exc,)


def _raise_problems(problems: list[ConfigError]) -> None:
    if not problems:
        return
    ordered = sorted(problems, key=lambda problem: problem.line or 0)  # stable: same line, read order
    if len(ordered) == 1:
        raise ordered[0]
    raise ConfigErrors(ordered)


class _Checker:
    """Reads one mapping of the file; a problem is recorded with the file, line and dotted key.

    Child checkers share the list of problems. ``failed`` holds this mapping's keys that had one,
    so that a rule relating two keys stays silent when one of them is already wrong. With
    ``local``, what a value names on this host is checked too (the directory of an SQLite store).
    """

    def __init__(
        self,
        source: str,
        data: _Map,
        path: str,
        problems: list[ConfigError] | None = None,
        *,
        local: bool = False,
    ) -> None:
        self.source = source
        self.data = data
        self.path = path
        self.problems: list[ConfigError] = [] if problems is None else problems
        self.failed: set[str] = set()
        self.local = local

    def key(self, name: str) -> str:
        return f"{self.path}.{name}" if self.path else name

    def line(self, name: str | None = None) -> int | None:
        if name is not None and name in self.data.value_lines:
            return self.data.value_lines[name]
        return self.data.line

    def error(self, message: str, name: str | None = None) -> ConfigError:
        key = self.key(name) if name is not None else (self.path or None)
        return ConfigError(message, source=self.source, line=self.line(name), key=key)

    def fail(self, message: str, name: str | None = None) -> None:
        """Record a problem with ``name`` (this mapping itself when None)."""
        self.problems.append(self.error(message, name))
        if name is not None:
            self.failed.add(name)

    def report(self, problem: ConfigError, name: str | None = None) -> None:
        """Record a problem whose location is already set."""
        self.problems.append(problem)
        if name is not None:
            self.failed.add(name)

    def bad(self, *names: str) -> bool:
        return any(name in self.failed for name in names)

    def nested(self, data: _Map, name: str) -> _Checker:
        return _Checker(self.source, data, self.key(name), self.problems, local=self.local)

    def only(self, allowed: Sequence[str]) -> None:
        for name in list(self.data):
            if not isinstance(name, str):
                self.report(
                    ConfigError(
                        f"keys must be strings, got {name!r}",
                        source=self.source,
                        line=self.data.key_lines.get(name, self.data.line),
                        key=self.path or None,
                    )
                )
                continue
            if name not in allowed:
                close = difflib.get_close_matches(name, allowed, n=1, cutoff=0.6)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                self.report(
                    ConfigError(
                        f"unknown key {name!r}{hint}; allowed here: {', '.join(allowed)}",
                        source=self.source, line=self.data.key_lines.get(name, self.data.line),
                        key=self.key(name),
                    ),
                    name,
                )  # fmt: skip

    def child(self, name: str) -> _Checker | None:
        value = self.data.get(name)
        if value is None:
            return None
        if not isinstance(value, _Map):
            self.fail(f"must be a mapping, got {_describe(value)}", name)
            return None
        return self.nested(value, name)

    def string(self, name: str, *, choices: Sequence[str] | None = None) -> str | None:
        value = self.data.get(name)
        if value is None:
            return None
        if choices is not None and value not in choices:
            close = difflib.get_close_matches(str(value), choices, n=1, cutoff=0.6)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            self.fail(f"must be one of {', '.join(choices)}, got {value!r}{hint}", name)
            return None
        if not isinstance(value, str) or not value.strip():
            self.fail(f"must be a non-empty string, got {_describe(value)}", name)
            return None
        return value

    def boolean(self, name: str) -> bool | None:
        value = self.data.get(name)
        if value is None or isinstance(value, bool):
            return value
        self.fail(f"must be true or false, got {_describe(value)}", name)
        return None

    def integer(self, name: str, *, minimum: int) -> int | None:
        value = self.data.get(name)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(f"must be a whole number, got {_describe(value)}", name)
            return None
        if value < minimum:
            self.fail(f"must be at least {minimum}, got {value}", name)
            return None
        return value

    def decimal(self, name: str, *, money: bool = False) -> Decimal | None:
        value = self.data.get(name)
        if value is None:
            return None
        number = to_decimal(value, money=money)
        if number is None or not number.is_finite():
            what = "an amount in USD such as 25 or 0.50" if money else "a number"
            self.fail(f"must be {what}, got {_describe(value)}", name)
            return None
        if number < 0:
            self.fail(f"must not be negative, got {value}", name)
            return None
        return number

    def seconds(self, name: str, *, positive: bool) -> float | None:
        number = self.decimal(name)
        if number is None:
            return None
        if positive and number == 0:
            self.fail("must be more than 0 seconds", name)
            return None
        return float(number)


def to_decimal(value: object, *, money: bool = False) -> Decimal | None:
    """A number as written (int, Decimal, or text such as ``"1_000.5"``, ``"$2"`` for money), or
    None when it is not one. Floats are read through their shortest repr (``0.1`` is one tenth)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, Decimal):
        return value
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, float):
        return Decimal(repr(value))
    if isinstance(value, str):
        text = value.strip().replace("_", "")
        if money:
            text = text.removeprefix("$")
        try:
            return Decimal(text)
        except InvalidOperation:
            return None
    return None


def usd_argument(text: str) -> Decimal:
    """A dollar amount given on a command line or in code: exact, finite, not negative; else
    ``ConfigError`` (the rule of ``max_usd`` in the configuration file)."""
    number = to_decimal(text, money=True)
    if number is None or not number.is_finite():
        raise ConfigError(f"must be an amount in USD such as 25 or 0.50, got {text!r}")
    if number < 0:
        raise ConfigError(f"must not be negative, got {text}")
    return number


def _describe(value: object) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, _Map):
        return "a mapping"
    if isinstance(value, _Seq):
        return "a list"
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, Decimal | int):
        return str(value)
    return f"{value!r} ({type(value).__name__})"


def store_file(uri: str) -> str | None:
    """The file on this host a store keeps its data in (an SQLite database), or None.

    Raises ``ConfigError`` for an invalid URI.
    """
    backend = check_store_uri(uri)
    from budgetguard._ledger._sqlite import SQLiteLedger

    if not issubclass(backend, SQLiteLedger):
        return None
    path = backend.check_uri(uri)
    return None if path == ":memory:" else path


def _missing_directory(uri: str) -> str | None:
    """Why the store ``uri`` (a valid URI) cannot be opened on this host, or None."""
    path = store_file(uri)
    if path is None:
        return None
    directory = os.path.dirname(path)
    if os.path.isdir(directory):
        return None
    relative = not uri.partition("://")[2].startswith(("//", "/~"))
    where = " (a relative path is relative to the working directory)" if relative else ""
    return f"the directory of this store does not exist: {directory}{where}"


# --- one reader per option: (checker, key) -> value or None --------------------------------------


def _store(check: _Checker, name: str) -> str | None:
    uri = check.string(name)
    if uri is None:
        return None
    try:
        check_store_uri(uri)
    except ConfigError as exc:
        check.fail(_bare(exc), name)
        return None
    if check.local:
        missing = _missing_directory(uri)
        if missing is not None:
            check.fail(missing, name)
    return uri


def _takes_option(store: str, option: str) -> bool:
    """Whether the backend of ``store`` (a URI already checked) takes ``option=True``."""
    try:
        check_store_uri(store, **{option: True})
    except ConfigError:
        return False
    return True


def _timezone(check: _Checker, name: str) -> str | None:
    zone = check.string(name)
    if zone is None:
        return None
    try:
        load_zone(zone)
    except ValueError as exc:
        check.fail(str(exc), name)
        return None
    return zone


def _bare(exc: ConfigError) -> str:
    """A ConfigError's message without the location prefix its constructor added."""
    text = str(exc)
    where = (exc.source or "") + (f":{exc.line}" if exc.source and exc.line is not None else "")
    if exc.key is not None:
        where = f"{where} at {exc.key!r}" if where else f"at {exc.key!r}"
    return text[len(where) + 2 :] if where and text.startswith(where + ": ") else text


def _rates(check: _Checker, name: str, rates: object) -> ModelRates | None:
    if isinstance(rates, ModelRates):  # configure(prices={"m": ModelRates(...)})
        return rates
    if not isinstance(rates, _Map):
        check.fail(f"must be a mapping of rates (input, output, ...), got {_describe(rates)}", name)
        return None
    try:
        return ModelRates.from_mapping(rates, where="")
    except ConfigError as exc:
        field = exc.key or None
        if field is not None and field.startswith("."):  # nested long_context: ".long_context"
            field = field[1:]
        nested = (exc.source or "").lstrip(".")
        if nested:
            field = f"{nested}.{field}" if field else nested
        first = field.split(".")[0] if field else None
        line = rates.key_lines.get(first, check.data.key_lines.get(name, rates.line))
        key = f"{check.key(name)}.{field}" if field else check.key(name)
        check.report(ConfigError(_bare(exc), source=check.source, line=line, key=key), name)
        return None


def _rates_option(check: _Checker, name: str) -> ModelRates | None:
    value = check.data.get(name)
    return None if value is None else _rates(check, name, value)


def _policy(check: _Checker, name: str) -> OnExceed | None:
    return cast("OnExceed | None", check.string(name, choices=_POLICIES))


def _unknown_model(check: _Checker, name: str) -> UnknownModel | None:
    return cast("UnknownModel | None", check.string(name, choices=_UNKNOWN_MODEL))


def _output_tokens(check: _Checker, name: str) -> int | None:
    return check.integer(name, minimum=1)


def _safety_margin(check: _Checker, name: str) -> float | None:
    margin = check.decimal(name)
    if margin is not None and margin > 10:
        check.fail(f"must be a fraction such as 0.1 (10% more), at most 10, got {margin}", name)
        return None
    return float(margin) if margin is not None else None


def _flag(check: _Checker, name: str) -> bool | None:
    return check.boolean(name)


def _wait_seconds(check: _Checker, name: str) -> float | None:
    return check.seconds(name, positive=False)


def _ttl(check: _Checker, name: str) -> float | None:
    return check.seconds(name, positive=True)


def _check_unknown_model(
    check: _Checker, unknown: str | None, fallback: ModelRates | None, *, name: str = "unknown_model"
) -> None:
    """``unknown_model: warn`` charges the fallback price: it needs one."""
    if unknown == "warn" and fallback is None and not check.bad("fallback_price", "prices"):
        check.fail("unknown_model: warn needs a fallback_price to charge unknown models at", name)


def _price_models(check: _Checker, name: str) -> dict[str, ModelRates]:
    models: dict[str, ModelRates] = {}
    models_check = check.child(name)
    if models_check is None:
        return models
    for model, rates in models_check.data.items():
        if not isinstance(model, str) or not model.strip():
            models_check.fail(f"model names must be non-empty strings, got {model!r}")
            continue
        parsed = _rates(models_check, model, rates)
        if parsed is not None:
            models[model] = parsed
    return models


def _aliases(check: _Checker, name: str) -> dict[str, str]:
    aliases: dict[str, str] = {}
    aliases_check = check.child(name)
    if aliases_check is None:
        return aliases
    for alias, target in aliases_check.data.items():
        if not isinstance(alias, str) or not alias.strip():
            aliases_check.fail(f"alias names must be non-empty strings, got {alias!r}")
        elif not isinstance(target, str) or not target.strip():
            aliases_check.fail(f"must name the model to price it as, got {_describe(target)}", alias)
        else:
            aliases[alias] = target
    _alias_loops(aliases_check, aliases)
    return aliases


def _alias_loops(check: _Checker, aliases: dict[str, str]) -> None:
    for alias in aliases:
        chain, current = [alias], aliases[alias]
        while current in aliases:
            if current in chain:
                loop = " -> ".join([*chain, current])
                check.fail(f"alias loop: {loop}", alias)
                return
            chain.append(current)
            current = aliases[current]


def _discount(check: _Checker, name: str) -> Decimal | None:
    discount = check.decimal(name)
    if discount is not None and discount >= 1:
        check.fail(f"must be a fraction below 1 (0.15 = 15% off), got {discount}", name)
        return None
    return discount


_Reader = Callable[[_Checker, str], Any]

#: ``defaults:``, key by key.
_DEFAULT_OPTIONS: dict[str, _Reader] = {
    "on_exceed": _policy,
    "unknown_model": _unknown_model,
    "fallback_price": _rates_option,
    "assume_output_tokens": _output_tokens,
    "safety_margin": _safety_margin,
    "store": _store,
    "fail_open": _flag,
    "max_wait": _wait_seconds,
    "timezone": _timezone,
    "hold_ttl": _ttl,
}
_DEFAULT_KEYS = tuple(_DEFAULT_OPTIONS)
_PRICING_OPTIONS: dict[str, _Reader] = {
    "models": _price_models,
    "aliases": _aliases,
    "discount": _discount,
    "auto_update": _flag,
}
_PRICING_KEYS = tuple(_PRICING_OPTIONS)

#: ``configure()``'s keyword arguments: each is read by the reader of the YAML key it stands for.
CONFIGURE_OPTIONS: dict[str, _Reader] = {
    "prices": _price_models,  # pricing.models
    "aliases": _aliases,  # pricing.aliases
    "discount": _discount,  # pricing.discount
    "unknown_model": _unknown_model,  # defaults.*
    "fallback_price": _rates_option,
    "assume_output_tokens": _output_tokens,
    "safety_margin": _safety_margin,
    "exact_estimates": _flag,
}


def _alerts(check: _Checker) -> tuple[Decimal, ...]:
    value = check.data.get("alerts")
    if value is None:
        return ()
    if not isinstance(value, _Seq):
        check.fail(
            f"must be a list of fractions such as [0.5, 0.8, 1.0] or ['80%'], got {_describe(value)}",
            "alerts",
        )
        return ()
    out: set[Decimal] = set()
    for index, item in enumerate(value):
        line = value.item_lines[index]
        key = check.key(f"alerts[{index}]")
        number: Decimal | None = None
        if isinstance(item, Decimal) or (isinstance(item, int) and not isinstance(item, bool)):
            number = Decimal(item)
        elif isinstance(item, str) and item.strip().endswith("%"):
            try:
                number = Decimal(item.strip()[:-1].strip()) / 100
            except InvalidOperation:
                number = None
        if number is None or not number.is_finite():
            check.report(
                ConfigError(
                    f"an alert is a fraction of the cap (0.8) or a percentage ('80%'), got {_describe(item)}",
                    source=check.source, line=line, key=key,
                ),
                "alerts",
            )  # fmt: skip
        elif not 0 < number <= 10:
            check.report(
                ConfigError(
                    f"an alert must be above 0 and at most 10 (1000%), got {item}",
                    source=check.source, line=line, key=key,
                ),
                "alerts",
            )  # fmt: skip
        else:
            out.add(number.normalize())
    return tuple(sorted(out))


def _defaults(check: _Checker | None) -> Defaults:
    if check is None:
        return Defaults()
    check.only(_DEFAULT_KEYS)
    values = {name: read(check, name) for name, read in _DEFAULT_OPTIONS.items()}
    _check_unknown_model(check, values["unknown_model"], values["fallback_price"])
    given = {name: value for name, value in values.items() if value is not None}
    return Defaults(**given)


def _budget(name: str, check: _Checker, defaults: Defaults) -> BudgetConfig:
    check.only(_BUDGET_KEYS)
    data = check.data
    window_text = check.string("window")
    rolling = check.boolean("rolling")
    zone = _timezone(check, "timezone")
    window: Window | None = None
    if window_text is None:
        if not check.bad("window"):
            for orphan in ("rolling", "timezone"):
                if orphan in data and not check.bad(orphan):
                    check.fail(f"{orphan} has no effect without a window (such as window: 1d)", orphan)
    elif rolling and zone is not None:
        check.fail("a rolling window counts the last N seconds; a time zone has no effect on it", "timezone")
    elif not check.bad("rolling", "timezone"):
        try:
            window = parse_window(window_text, tz=zone or defaults.timezone, rolling=bool(rolling))
        except ValueError as exc:
            check.fail(str(exc), "window")

    max_usd = check.decimal("max_usd", money=True)
    max_tokens = check.integer("max_tokens", minimum=0)
    max_requests = check.integer("max_requests", minimum=0)
    on_exceed = _policy(check, "on_exceed") or defaults.on_exceed
    if on_exceed == "wait" and window is None and not check.bad("window", "rolling", "timezone", "on_exceed"):
        check.fail(
            "on_exceed: wait needs a window: without one, spend never leaves the budget, so waiting "
            "cannot make room (add window: 1h, or choose raise, warn or clamp)",
            "on_exceed" if "on_exceed" in data else None,
        )
    max_wait = check.seconds("max_wait", positive=False)
    if max_wait is not None and on_exceed != "wait" and not check.bad("on_exceed"):
        check.fail(
            f"max_wait applies to on_exceed: wait, but this budget's policy is {on_exceed!r}", "max_wait"
        )
    alerts = _alerts(check)
    no_caps = max_usd is None and max_tokens is None and max_requests is None
    if alerts and no_caps and not check.bad("max_usd", "max_tokens", "max_requests"):
        check.fail(
            "alerts are fractions of a cap, and this budget has none "
            "(set max_usd, max_tokens or max_requests)",
            "alerts",
        )
    store = _store(check, "store") or defaults.store
    fail_open = check.boolean("fail_open")
    if fail_open is None:
        fail_open = defaults.fail_open and _takes_option(store, "fail_open")
    elif fail_open and not check.bad("store") and not _takes_option(store, "fail_open"):
        takes = ", ".join(f"{scheme}://" for scheme in ledger_schemes("fail_open"))
        check.fail(f"fail_open applies to {takes} stores; this budget's store is {store!r}", "fail_open")
    hold_ttl = check.seconds("hold_ttl", positive=True)
    keyed = check.boolean("keyed")
    process_wide = check.boolean("process_wide")
    auto_output_cap = check.boolean("auto_output_cap")
    leases: dict[str, Any] = {}
    for key in ("lease_usd", "lease_fraction"):
        amount = check.decimal(key, money=key == "lease_usd")
        if amount is not None:
            leases[key] = amount
    for key in ("lease_tokens", "lease_requests"):
        count = check.integer(key, minimum=1)
        if count is not None:
            leases[key] = count
    flush = check.seconds("lease_flush", positive=False)
    if flush is not None:
        leases["lease_flush"] = flush
    if leases and not check.bad("store", *leases):
        try:
            check_store_uri(store, **leases)  # the store's backend decides whether it leases
        except ConfigError as exc:
            check.fail(str(exc), next(iter(leases)))
    return BudgetConfig(
        name=name,
        max_usd=max_usd,
        max_tokens=max_tokens,
        max_requests=max_requests,
        window=window,
        window_text=window_text,
        store=store,
        on_exceed=on_exceed,
        max_wait=max_wait if max_wait is not None else (defaults.max_wait if on_exceed == "wait" else None),
        alerts=alerts,
        keyed=bool(keyed),
        fail_open=bool(fail_open),
        hold_ttl=hold_ttl if hold_ttl is not None else defaults.hold_ttl,
        process_wide=bool(process_wide),
        auto_output_cap=auto_output_cap is not False,
        on_alert=_webhook(check, "on_alert"),
        store_options=tuple(sorted(leases.items())),
    )


def _telemetry(check: _Checker | None) -> TelemetryConfig:
    if check is None:
        return TelemetryConfig()
    check.only(("otel",))
    otel = check.boolean("otel")
    if otel and check.local:
        import importlib.util

        if importlib.util.find_spec("opentelemetry.trace") is None:
            check.fail("OpenTelemetry is not installed: pip install 'budgetguard-sdk[otel]'", "otel")
    return TelemetryConfig(otel)


def _webhook(check: _Checker, name: str) -> str | None:
    url = check.string(name)
    if url is None:
        return None
    from budgetguard._webhooks import check_webhook_url

    try:
        return check_webhook_url(url)
    except ConfigError as exc:
        check.fail(_bare(exc), name)
        return None


def _pricing(check: _Checker | None) -> PricingConfig:
    if check is None:
        return PricingConfig({}, {})
    check.only(_PRICING_KEYS)
    models = _price_models(check, "models")
    aliases = _aliases(check, "aliases")
    discount = _discount(check, "discount")
    auto_update = _flag(check, "auto_update")
    return PricingConfig(
        models, aliases, discount if discount is not None else Decimal(0), auto_update is True
    )


def parse_config(text: str, source: str = "<string>", *, check_stores: bool = False) -> Config:
    """Parse and validate configuration text; ``source`` names it in errors.

    Raises a ``ConfigError`` naming the file, line and key of the problem, or ``ConfigErrors``
    listing every problem when there are several. With ``check_stores``, an SQLite store whose
    directory does not exist on this host is a problem too.
    """
    data = _load_yaml(text, source)
    if data is None:
        raise ConfigError(
            f"the configuration is empty; start with 'version: {CONFIG_VERSION}'", source=source, line=1
        )
    if not isinstance(data, _Map):
        raise ConfigError(
            f"the configuration must be a mapping of keys ({', '.join(_TOP_KEYS)}), got {_describe(data)}",
            source=source,
            line=1,
        )
    top = _Checker(source, data, "", local=check_stores)
    top.only(_TOP_KEYS)
    version = data.get("version")
    if version is None:
        top.report(
            ConfigError(
                f"missing 'version: {CONFIG_VERSION}' (the format version)",
                source=source,
                line=1,
                key="version",
            )
        )
    elif isinstance(version, bool) or version != CONFIG_VERSION:
        top.fail(
            f"unsupported configuration version {version!r}; this budgetguard reads version {CONFIG_VERSION}",
            "version",
        )
    defaults = _defaults(top.child("defaults"))
    budgets: dict[str, BudgetConfig] = {}
    budgets_check = top.child("budgets")
    if budgets_check is not None:
        for name in budgets_check.data:
            line = budgets_check.data.key_lines.get(name)
            if isinstance(name, bool):
                budgets_check.report(
                    ConfigError(
                        f"YAML reads this budget name as {str(name).lower()} (on/off/yes/no are booleans): "
                        "quote the name",
                        source=source, line=line, key="budgets",
                    )
                )  # fmt: skip
                continue
            if not isinstance(name, str) or not _BUDGET_NAME.match(name):
                budgets_check.report(
                    ConfigError(
                        f"invalid budget name {name!r}: use letters, digits, '_', '-' and '.', starting "
                        "with a letter or digit",
                        source=source, line=line, key=f"budgets.{name}",
                    )
                )  # fmt: skip
                continue
            if budgets_check.data[name] is None:
                budgets_check.fail("a budget needs settings (max_usd, window, ...), not null", name)
                continue
            check = budgets_check.child(name)
            if check is not None:
                budgets[name] = _budget(name, check, defaults)
    pricing = _pricing(top.child("pricing"))
    telemetry = _telemetry(top.child("telemetry"))
    _raise_problems(top.problems)
    return Config(CONFIG_VERSION, defaults, budgets, pricing, source, telemetry)


def load_config(path: str | os.PathLike[str], *, check_stores: bool = False) -> Config:
    """Read and validate a YAML configuration file (see ``parse_config``)."""
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError("configuration file not found", source=source) from None
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"the file is not UTF-8 text ({exc.reason} at byte {exc.start})", source=source
        ) from None
    except IsADirectoryError:
        raise ConfigError("this is a directory, not a configuration file", source=source) from None
    except OSError as exc:
        raise ConfigError(f"cannot read the configuration file: {exc.strerror}", source=source) from None
    return parse_config(text, source, check_stores=check_stores)


def config_from_env(*, check_stores: bool = False) -> Config | None:
    """The configuration named by ``$BUDGETGUARD_CONFIG``, or None when it is not set."""
    path = os.environ.get(CONFIG_ENV, "").strip()
    if not path:
        return None
    try:
        return load_config(path, check_stores=check_stores)
    except ConfigError as exc:
        if exc.line is None and "not found" in str(exc):
            raise ConfigError(f"configuration file not found (named by ${CONFIG_ENV})", source=path) from None
        raise


# --- configure() keyword arguments ---------------------------------------------------------------


def _from_python(value: object) -> object:
    """Python values as the YAML loader would produce them, with no line numbers."""
    if isinstance(value, Mapping) and not isinstance(value, _Map):
        result = _Map()
        result.line = None
        for key, item in value.items():
            result[key] = _from_python(item)
        return result
    if isinstance(value, list | tuple) and not isinstance(value, _Seq):
        seq = _Seq()
        seq.line = None
        for item in value:
            seq.append(_from_python(item))
            seq.item_lines.append(None)
        return seq
    if isinstance(value, float):
        return Decimal(repr(value))  # nan and inf too: the readers refuse them
    return value


def check_options(
    options: Mapping[str, object], *, config: Config | None = None, source: str = "configure()"
) -> dict[str, Any]:
    """Validate ``configure()``'s keyword arguments (those not None) with the readers of the YAML
    loader: the same rules and messages, located as ``configure() at 'safety_margin'``.

    Rules that relate two options also see what ``config`` (the file being configured) set.
    Returns the values as the loader reads them (``prices`` -> ``ModelRates``, ``safety_margin``
    -> float, ``discount`` -> Decimal); raises ``ConfigError`` / ``ConfigErrors``.
    """
    unknown = sorted(set(options) - set(CONFIGURE_OPTIONS))
    if unknown:
        raise TypeError(f"configure() got unexpected keyword arguments: {', '.join(unknown)}")
    data = _from_python({name: value for name, value in options.items() if value is not None})
    assert isinstance(data, _Map)
    check = _Checker(source, data, "")
    values = {name: CONFIGURE_OPTIONS[name](check, name) for name in data}
    if "unknown_model" in values or "fallback_price" in values:
        _check_unknown_model(
            check,
            values.get("unknown_model") or (config.defaults.unknown_model if config else None),
            values.get("fallback_price") or (config.defaults.fallback_price if config else None),
            name="unknown_model" if "unknown_model" in values else "fallback_price",
        )
    if values.get("aliases") and config is not None and config.pricing.aliases:
        _alias_loops(
            check.nested(data["aliases"], "aliases"), {**config.pricing.aliases, **values["aliases"]}
        )
    _raise_problems(check.problems)
    return {name: value for name, value in values.items() if value is not None}
