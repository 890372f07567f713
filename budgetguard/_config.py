"""The YAML configuration: named budgets, windows, stores, policies and price overrides.

``load_config(path)`` / ``parse_config(text)`` turn a file into frozen dataclasses, or raise a
``ConfigError`` naming the file, the line and the dotted key (``budgets.daily.max_usd``) of the
first problem: malformed YAML, an unknown key (with a suggestion), a wrong type, a value out of
range, or options that do not work together. The format is documented by the annotated example
``config/budgetguard.yaml`` and the JSON Schema ``config/schema.json``.

YAML is read with ``yaml.safe_load`` semantics, except that floats become ``Decimal`` from the
text as written (``0.1`` is exactly one tenth), duplicate keys are errors, and every key keeps
its line number.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Literal, cast, get_args

import yaml

from budgetguard._errors import ConfigError
from budgetguard._ledger import DEFAULT_STORE, Window, check_store_uri, ledger_schemes
from budgetguard._pricing import ModelRates
from budgetguard._windows import load_zone, parse_window

__all__ = [
    "CONFIG_ENV",
    "CONFIG_VERSION",
    "BudgetConfig",
    "Config",
    "Defaults",
    "OnExceed",
    "PricingConfig",
    "UnknownModel",
    "config_from_env",
    "load_config",
    "parse_config",
]

CONFIG_VERSION = 1
CONFIG_ENV = "BUDGETGUARD_CONFIG"
OnExceed = Literal["raise", "warn", "clamp", "wait"]
UnknownModel = Literal["error", "warn"]
_POLICIES: tuple[str, ...] = get_args(OnExceed)
_UNKNOWN_MODEL: tuple[str, ...] = get_args(UnknownModel)
_BUDGET_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_DEFAULT_HOLD_TTL = 600.0

_TOP_KEYS = ("version", "defaults", "budgets", "pricing")
_DEFAULT_KEYS = (
    "on_exceed", "unknown_model", "fallback_price", "assume_output_tokens", "safety_margin", "store",
    "fail_open", "max_wait", "timezone", "hold_ttl",
)  # fmt: skip
_BUDGET_KEYS = (
    "max_usd", "max_tokens", "max_requests", "window", "rolling", "timezone", "store", "on_exceed",
    "max_wait", "alerts", "keyed", "fail_open", "hold_ttl",
)  # fmt: skip
_PRICING_KEYS = ("models", "aliases", "discount")


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


@dataclass(frozen=True, slots=True)
class PricingConfig:
    """Price overrides (USD per 1M tokens), model aliases and a discount (``pricing:``)."""

    models: dict[str, ModelRates]
    aliases: dict[str, str]
    discount: Decimal = Decimal(0)


@dataclass(frozen=True, slots=True)
class Config:
    version: int
    defaults: Defaults
    budgets: dict[str, BudgetConfig]
    pricing: PricingConfig
    #: Where the configuration came from (a path, or ``<string>``).
    source: str


# --- YAML with line numbers -----------------------------------------------------------------------


class _Map(dict[Any, Any]):
    """A YAML mapping that remembers the line of itself, each key and each value (1-based)."""

    line: int = 1

    def __init__(self) -> None:
        super().__init__()
        self.key_lines: dict[Any, int] = {}
        self.value_lines: dict[Any, int] = {}


class _Seq(list[Any]):
    line: int = 1

    def __init__(self) -> None:
        super().__init__()
        self.item_lines: list[int] = []


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


class _Checker:
    """Reads one mapping of the file, with errors that name the file, line and dotted key."""

    def __init__(self, source: str, data: _Map, path: str) -> None:
        self.source = source
        self.data = data
        self.path = path

    def key(self, name: str) -> str:
        return f"{self.path}.{name}" if self.path else name

    def line(self, name: str | None = None) -> int:
        if name is not None and name in self.data.value_lines:
            return self.data.value_lines[name]
        return self.data.line

    def error(self, message: str, name: str | None = None) -> ConfigError:
        key = self.key(name) if name is not None else (self.path or None)
        return ConfigError(message, source=self.source, line=self.line(name), key=key)

    def only(self, allowed: Sequence[str]) -> None:
        for name in self.data:
            if not isinstance(name, str):
                raise ConfigError(
                    f"keys must be strings, got {name!r}",
                    source=self.source,
                    line=self.data.key_lines.get(name, self.data.line),
                    key=self.path or None,
                )
            if name not in allowed:
                close = difflib.get_close_matches(name, allowed, n=1, cutoff=0.6)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise ConfigError(
                    f"unknown key {name!r}{hint}; allowed here: {', '.join(allowed)}",
                    source=self.source, line=self.data.key_lines[name], key=self.key(name),
                )  # fmt: skip

    def child(self, name: str, *, required: bool = False) -> _Checker | None:
        value = self.data.get(name)
        if value is None:
            if required:
                raise self.error(f"missing required key {name!r}")
            return None
        if not isinstance(value, _Map):
            raise self.error(f"must be a mapping, got {_describe(value)}", name)
        return _Checker(self.source, value, self.key(name))

    def string(self, name: str, *, choices: Sequence[str] | None = None) -> str | None:
        value = self.data.get(name)
        if value is None:
            return None
        if choices is not None and value not in choices:
            close = difflib.get_close_matches(str(value), choices, n=1, cutoff=0.6)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise self.error(f"must be one of {', '.join(choices)}, got {value!r}{hint}", name)
        if not isinstance(value, str) or not value.strip():
            raise self.error(f"must be a non-empty string, got {_describe(value)}", name)
        return value

    def boolean(self, name: str) -> bool | None:
        value = self.data.get(name)
        if value is None or isinstance(value, bool):
            return value
        raise self.error(f"must be true or false, got {_describe(value)}", name)

    def integer(self, name: str, *, minimum: int) -> int | None:
        value = self.data.get(name)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(f"must be a whole number, got {_describe(value)}", name)
        if value < minimum:
            raise self.error(f"must be at least {minimum}, got {value}", name)
        return value

    def decimal(self, name: str, *, money: bool = False) -> Decimal | None:
        value = self.data.get(name)
        if value is None:
            return None
        number: Decimal | None = None
        if isinstance(value, Decimal):
            number = value
        elif isinstance(value, int) and not isinstance(value, bool):
            number = Decimal(value)
        elif isinstance(value, str):
            text = value.strip().replace("_", "")
            if money:
                text = text.removeprefix("$")
            try:
                number = Decimal(text)
            except InvalidOperation:
                number = None
        if number is None or not number.is_finite():
            what = "an amount in USD such as 25 or 0.50" if money else "a number"
            raise self.error(f"must be {what}, got {_describe(value)}", name)
        if number < 0:
            raise self.error(f"must not be negative, got {value}", name)
        return number

    def seconds(self, name: str, *, positive: bool) -> float | None:
        number = self.decimal(name)
        if number is None:
            return None
        if positive and number == 0:
            raise self.error("must be more than 0 seconds", name)
        return float(number)


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


def _store(check: _Checker, name: str) -> str | None:
    uri = check.string(name)
    if uri is None:
        return None
    try:
        check_store_uri(uri)
    except ConfigError as exc:
        raise check.error(_bare(exc), name) from None
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
        raise check.error(str(exc), name) from None
    return zone


def _bare(exc: ConfigError) -> str:
    """A ConfigError's message without the location prefix its constructor added."""
    text = str(exc)
    where = (exc.source or "") + (f":{exc.line}" if exc.source and exc.line is not None else "")
    if exc.key is not None:
        where = f"{where} at {exc.key!r}" if where else f"at {exc.key!r}"
    return text[len(where) + 2 :] if where and text.startswith(where + ": ") else text


def _rates(check: _Checker, name: str, rates: object) -> ModelRates:
    if not isinstance(rates, _Map):
        raise check.error(f"must be a mapping of rates (input, output, ...), got {_describe(rates)}", name)
    try:
        return ModelRates.from_mapping(rates, where="")
    except ConfigError as exc:
        inner = _Checker(check.source, rates, check.key(name))
        field = exc.key or None
        if field is not None and field.startswith("."):  # nested long_context: ".long_context"
            field = field[1:]
        nested = (exc.source or "").lstrip(".")
        if nested:
            field = f"{nested}.{field}" if field else nested
        first = field.split(".")[0] if field else None
        line = rates.key_lines.get(first, check.data.key_lines.get(name, rates.line))
        key = f"{inner.path}.{field}" if field else inner.path
        raise ConfigError(_bare(exc), source=check.source, line=line, key=key) from None


def _alerts(check: _Checker) -> tuple[Decimal, ...]:
    value = check.data.get("alerts")
    if value is None:
        return ()
    if not isinstance(value, _Seq):
        raise check.error(
            f"must be a list of fractions such as [0.5, 0.8, 1.0] or ['80%'], got {_describe(value)}",
            "alerts",
        )
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
            raise ConfigError(
                f"an alert is a fraction of the cap (0.8) or a percentage ('80%'), got {_describe(item)}",
                source=check.source,
                line=line,
                key=key,
            )
        if not 0 < number <= 10:
            raise ConfigError(
                f"an alert must be above 0 and at most 10 (1000%), got {item}",
                source=check.source,
                line=line,
                key=key,
            )
        out.add(number.normalize())
    return tuple(sorted(out))


def _defaults(check: _Checker | None) -> Defaults:
    if check is None:
        return Defaults()
    check.only(_DEFAULT_KEYS)
    fallback_raw = check.data.get("fallback_price")
    fallback = _rates(check, "fallback_price", fallback_raw) if fallback_raw is not None else None
    unknown = check.string("unknown_model", choices=_UNKNOWN_MODEL) or "error"
    if unknown == "warn" and fallback is None:
        raise check.error(
            "unknown_model: warn needs a fallback_price to charge unknown models at", "unknown_model"
        )
    margin = check.decimal("safety_margin")
    if margin is not None and margin > 10:
        raise check.error(
            f"must be a fraction such as 0.1 (10% more), at most 10, got {margin}", "safety_margin"
        )
    store = _store(check, "store")
    fail_open = check.boolean("fail_open")
    hold_ttl = check.seconds("hold_ttl", positive=True)
    return Defaults(
        on_exceed=cast(OnExceed, check.string("on_exceed", choices=_POLICIES) or "raise"),
        unknown_model=cast(UnknownModel, unknown),
        fallback_price=fallback,
        assume_output_tokens=check.integer("assume_output_tokens", minimum=1),
        safety_margin=float(margin) if margin is not None else None,
        store=store if store is not None else DEFAULT_STORE,
        fail_open=fail_open if fail_open is not None else False,
        max_wait=check.seconds("max_wait", positive=False),
        timezone=_timezone(check, "timezone") or "UTC",
        hold_ttl=hold_ttl if hold_ttl is not None else _DEFAULT_HOLD_TTL,
    )


def _budget(name: str, check: _Checker, defaults: Defaults) -> BudgetConfig:
    check.only(_BUDGET_KEYS)
    data = check.data
    window_text = check.string("window")
    rolling = check.boolean("rolling")
    zone = _timezone(check, "timezone")
    window: Window | None = None
    if window_text is None:
        for orphan in ("rolling", "timezone"):
            if orphan in data:
                raise check.error(f"{orphan} has no effect without a window (such as window: 1d)", orphan)
    else:
        if rolling and zone is not None:
            raise check.error(
                "a rolling window counts the last N seconds; a time zone has no effect on it", "timezone"
            )
        try:
            window = parse_window(window_text, tz=zone or defaults.timezone, rolling=bool(rolling))
        except ValueError as exc:
            raise check.error(str(exc), "window") from None

    max_usd = check.decimal("max_usd", money=True)
    max_tokens = check.integer("max_tokens", minimum=0)
    max_requests = check.integer("max_requests", minimum=0)
    on_exceed = cast(OnExceed, check.string("on_exceed", choices=_POLICIES) or defaults.on_exceed)
    if on_exceed == "wait" and window is None:
        raise check.error(
            "on_exceed: wait needs a window: without one, spend never leaves the budget, so waiting "
            "cannot make room (add window: 1h, or choose raise, warn or clamp)",
            "on_exceed" if "on_exceed" in data else None,
        )
    max_wait = check.seconds("max_wait", positive=False)
    if max_wait is not None and on_exceed != "wait":
        raise check.error(
            f"max_wait applies to on_exceed: wait, but this budget's policy is {on_exceed!r}", "max_wait"
        )
    alerts = _alerts(check)
    if alerts and max_usd is None and max_tokens is None and max_requests is None:
        raise check.error(
            "alerts are fractions of a cap, and this budget has none "
            "(set max_usd, max_tokens or max_requests)",
            "alerts",
        )
    store = _store(check, "store") or defaults.store
    fail_open = check.boolean("fail_open")
    if fail_open is None:
        fail_open = defaults.fail_open and _takes_option(store, "fail_open")
    elif fail_open and not _takes_option(store, "fail_open"):
        takes = ", ".join(f"{scheme}://" for scheme in ledger_schemes("fail_open"))
        raise check.error(
            f"fail_open applies to {takes} stores; this budget's store is {store!r}", "fail_open"
        )
    hold_ttl = check.seconds("hold_ttl", positive=True)
    keyed = check.boolean("keyed")
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
        fail_open=fail_open,
        hold_ttl=hold_ttl if hold_ttl is not None else defaults.hold_ttl,
    )


def _pricing(check: _Checker | None) -> PricingConfig:
    if check is None:
        return PricingConfig({}, {})
    check.only(_PRICING_KEYS)
    models: dict[str, ModelRates] = {}
    models_check = check.child("models")
    if models_check is not None:
        for model, rates in models_check.data.items():
            if not isinstance(model, str) or not model.strip():
                raise models_check.error(f"model names must be non-empty strings, got {model!r}")
            models[model] = _rates(models_check, model, rates)
    aliases: dict[str, str] = {}
    aliases_check = check.child("aliases")
    if aliases_check is not None:
        for alias, target in aliases_check.data.items():
            if not isinstance(alias, str) or not alias.strip():
                raise aliases_check.error(f"alias names must be non-empty strings, got {alias!r}")
            if not isinstance(target, str) or not target.strip():
                raise aliases_check.error(
                    f"must name the model to price it as, got {_describe(target)}", alias
                )
            aliases[alias] = target
        for alias in aliases:
            chain, current = [alias], aliases[alias]
            while current in aliases:
                if current in chain:
                    loop = " -> ".join([*chain, current])
                    raise aliases_check.error(f"alias loop: {loop}", alias)
                chain.append(current)
                current = aliases[current]
    discount = check.decimal("discount")
    if discount is not None and discount >= 1:
        raise check.error(f"must be a fraction below 1 (0.15 = 15% off), got {discount}", "discount")
    return PricingConfig(models, aliases, discount if discount is not None else Decimal(0))


def parse_config(text: str, source: str = "<string>") -> Config:
    """Parse and validate configuration text; ``source`` names it in errors."""
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
    top = _Checker(source, data, "")
    top.only(_TOP_KEYS)
    version = data.get("version")
    if version is None:
        raise ConfigError(
            f"missing 'version: {CONFIG_VERSION}' (the format version)", source=source, line=1, key="version"
        )
    if isinstance(version, bool) or version != CONFIG_VERSION:
        raise top.error(
            f"unsupported configuration version {version!r}; this budgetguard reads version {CONFIG_VERSION}",
            "version",
        )
    defaults = _defaults(top.child("defaults"))
    budgets: dict[str, BudgetConfig] = {}
    budgets_check = top.child("budgets")
    if budgets_check is not None:
        for name in budgets_check.data:
            if isinstance(name, bool):
                raise ConfigError(
                    f"YAML reads this budget name as {str(name).lower()} (on/off/yes/no are booleans): "
                    "quote the name",
                    source=source, line=budgets_check.data.key_lines.get(name), key="budgets",
                )  # fmt: skip
            if not isinstance(name, str) or not _BUDGET_NAME.match(name):
                raise ConfigError(
                    f"invalid budget name {name!r}: use letters, digits, '_', '-' and '.', starting with "
                    "a letter or digit",
                    source=source, line=budgets_check.data.key_lines.get(name), key=f"budgets.{name}",
                )  # fmt: skip
            check = budgets_check.child(name)
            if check is None:
                raise budgets_check.error("a budget needs settings (max_usd, window, ...), not null", name)
            budgets[name] = _budget(name, check, defaults)
    pricing = _pricing(top.child("pricing"))
    return Config(CONFIG_VERSION, defaults, budgets, pricing, source)


def load_config(path: str | os.PathLike[str]) -> Config:
    """Read and validate a YAML configuration file."""
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError("configuration file not found", source=source) from None
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"the file is not UTF-8 text ({exc.reason} at byte {exc.start})", source=source
        ) from None
    except OSError as exc:
        raise ConfigError(f"cannot read the configuration file: {exc.strerror}", source=source) from None
    return parse_config(text, source)


def config_from_env() -> Config | None:
    """The configuration named by ``$BUDGETGUARD_CONFIG``, or None when it is not set."""
    path = os.environ.get(CONFIG_ENV, "").strip()
    if not path:
        return None
    try:
        return load_config(path)
    except ConfigError as exc:
        if exc.line is None and "not found" in str(exc):
            raise ConfigError(f"configuration file not found (named by ${CONFIG_ENV})", source=path) from None
        raise
