"""Model name -> rates -> exact cost.

Where rates come from, first match wins:

1. **Overrides** you configure (``PriceBook(overrides=...)``, ``pricing.models`` in YAML), by exact
   model name (then case-insensitively).
2. **Aliases** (``"my-azure-deployment" -> "gpt-4o"``), followed step by step; after each step the
   name is looked up again, so aliases may chain and may point at overrides. A loop is a
   ``ConfigError`` when the book is built.
3. **Provider prefixes** name where a model runs, not what it is: ``openai/``, ``azure/`` and
   ``azure/<region>/`` (``azure/eastus/gpt-4o``) are priced as OpenAI (Azure OpenAI's global
   deployments list OpenAI's prices; put a regional uplift in an override); any other genai-prices
   provider id prices the rest at that provider (``deepseek/deepseek-chat``), and the innermost
   prefix wins, so a router's name for a vendor's model is that model (``openrouter/openai/gpt-4o``
   is ``gpt-4o`` at OpenAI's prices).
4. **genai-prices** (see "Price data" below for which copy). The version is in every
   ``ResolvedPrice.source`` (``"genai-prices 0.2.3"``). Names are matched by genai-prices' own rules
   (exact names, dated snapshots it lists, ``starts_with`` families, compact ``-20251211`` dates),
   against provider ``openai`` first. A name OpenAI does not know is last matched by genai-prices'
   provider detection (``deepseek-chat`` through an OpenAI-compatible server gets DeepSeek's
   prices); the provider is then named in ``source``. An Amazon Bedrock model id
   (``anthropic.claude-sonnet-4-5-20250929-v1:0``, with its inference-profile region,
   ``us.anthropic...``, or not) is matched against genai-prices' ``aws`` provider, whose
   regional profiles carry their uplift. Prices genai-prices dates (a change on a given day) are
   re-read on that day.
5. **Fine-tunes** (OpenAI's ``ft:BASE:org:name:id`` and Azure's ``BASE.ft-ID``) are billed at
   OpenAI's fine-tuned inference rates, not BASE's (``ft:gpt-4.1-*`` 1.5x, ``ft:gpt-4.1-mini-*``
   and ``-nano-*`` 2x, ``ft:o4-mini-*`` 3.6x the base). genai-prices' own fine-tuned rates first;
   rates it does not give (the cached-input rate, batch rates) and fine-tunes it does not know come
   from OpenAI's published fine-tuning table shipped in ``budgetguard/_data/openai_prices.json``
   (source and date inside). A fine-tune of a base in neither is priced at BASE's rates with an
   ``UnknownModelWarning`` once per name (fine-tuned rates are 1.5x to 6x their base model's):
   add an override for the ``ft:`` name to charge it exactly.
6. **Other spellings**: Azure's ``gpt-35-*`` names are OpenAI's ``gpt-3.5-*``; an OpenAI
   ``*-latest`` alias genai-prices does not list is priced as its target (``X-latest`` as ``X``,
   ``X-chat-latest`` as ``X`` when ``X-chat`` is not known either).
7. **Dated snapshots** genai-prices does not list (``gpt-5-mini-2031-01-01``) are priced as the
   undated model; a snapshot it does list with its own price (``gpt-4o-2024-05-13``) keeps it.
8. Otherwise the model is **unknown**: ``UnknownModelError`` naming it with close known names
   (``unknown_model="error"``, the default), or the configured ``fallback`` rates with an
   ``UnknownModelWarning`` once per name (``unknown_model="warn"``). Never a silent $0. A model
   genai-prices prices only per audio hour or per character (``whisper-1``, ``tts-1``) is unknown
   here too: those calls have no token usage to price.

How a ``Usage`` is priced (rates are USD per 1,000,000 tokens):

* Prompt: cached tokens at ``cached_input``, cache-write tokens at ``cache_write``, input audio and
  image tokens at their own rates, the rest at ``input``. A rate that is ``None`` means "not priced
  separately": the part is billed at ``input`` (``output`` for output parts). Parts never bill more
  tokens than the total: if they overlap (cached audio), cached wins and the audio/image counts
  are cut to what is left.
* Completion: reasoning tokens are ordinary output tokens (OpenAI bills them as output); output
  audio and image tokens at their own rates; the rest at ``output``. A model priced for input only
  (embeddings) has an output rate of 0.
* Tool calls: ``web_search_requests`` at ``web_search`` and ``file_search_requests`` (when the usage
  has that field) at ``file_search``, both USD per 1,000 calls, as genai-prices lists them
  (OpenAI: $10 per 1,000 web searches, $2.50 per 1,000 file searches; Anthropic: $10 per 1,000
  web searches). ``None``: free.
* Long context: when the prompt (all of it, cached included) has more than
  ``long_context_threshold`` tokens, *every* token of the call is billed at ``long_context`` rates
  (OpenAI's >272k tier on gpt-5.4/5.5: 2x input, 1.5x output). genai-prices' tiers map to this.
* ``service_tier`` as the *response* reports it: ``None``/``"default"``/``"auto"``/``"standard"``
  are standard rates. ``"flex"``, ``"priority"`` and ``"fast"`` use genai-prices' per-model
  variants (OpenAI's published flex and priority tables, e.g. gpt-4o priority $4.25/$17, gpt-5
  flex $0.625/$5) when the model has one. Without one: flex is 50% (OpenAI prices flex at batch
  rates), priority and fast are ``PRIORITY_MULTIPLIER`` = 2x standard (OpenAI's published priority
  prices are 1.67x-2.5x standard; 2x is the most common, gpt-5/5.1/5.2/5.4). Any other tier
  (``"scale"``) is priced as standard with a ``BudgetGuardWarning`` once per tier.
* ``batch=True``: genai-prices' batch variant when the model has one (a fine-tune: the published
  fine-tuning batch table), else 50% of standard. Batch wins over a service tier.
* Data residency: a book for a regional OpenAI host (:meth:`PriceBook.for_base_url` with
  ``https://eu.api.openai.com/v1``, ``us.``, ``au.``, ...) adds OpenAI's uplift (x1.1) to the token
  rates of models released on or after 2026-03-05 (gpt-5.4 and later: a dated snapshot or the
  dates genai-prices lists for the model decide, else the GPT version). Older models cost the same
  on every host.
* ``discount`` (a fraction, ``Decimal("0.15")`` = 15% off) applies to everything, overrides too.

Money is exact: rates are turned into integers at a per-model scale, token counts multiply them
as integers, and the sum becomes one ``Decimal``; no float is involved and the caller's decimal
context (precision, rounding) cannot change a result.

Price data. genai-prices is imported on the first lookup, not at ``import budgetguard``. Prices are
read from the data bundled with the installed genai-prices, or from a newer copy fetched on
request: ``budgetguard prices --update`` (:func:`update_price_data`) downloads genai-prices'
latest data through genai-prices' updater (its URL, timeouts and parser) and caches it, with the
time it was fetched, in ``$BUDGETGUARD_CACHE_DIR`` (default ``~/.cache/budgetguard``,
``%LOCALAPPDATA%\\budgetguard`` on Windows). The cached copy is used when it was fetched after the
installed package was (its date: when its data file was written); :func:`price_data` says which is
in use (``budgetguard prices MODEL`` prints it). Nothing is fetched at import or on a call's path:
only on request, or, opted in, by :func:`start_price_updates` in a background thread at most once a
day. budgetguard never starts genai-prices' own ``UpdatePrices`` thread and does not read a
snapshot someone else installed with it.

Per-request fees and rates per audio hour are not in token usage and are not priced here.
"""

from __future__ import annotations

import contextlib
import os
import re
import threading
import weakref
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Context, Decimal, InvalidOperation
from time import time as _wall_time
from typing import TYPE_CHECKING, Any, Final, Literal

from budgetguard._errors import (
    BudgetGuardError,
    BudgetGuardWarning,
    ConfigError,
    UnknownModelError,
    UnknownModelWarning,
)
from budgetguard._money import to_picos, to_usd
from budgetguard._usage import TokenCounts, Usage
from budgetguard._warnings import warn

if TYPE_CHECKING:
    from datetime import date, datetime
    from pathlib import Path

__all__ = [
    "PRIORITY_MULTIPLIER",
    "UPDATE_INTERVAL",
    "ModelRates",
    "PriceBook",
    "PriceData",
    "ResolvedPrice",
    "data_residency_region",
    "default_price_book",
    "price_data",
    "set_default_price_book",
    "start_price_updates",
    "update_price_data",
]

#: Price factor for ``service_tier="priority"`` (and ``"fast"``) when genai-prices has no
#: priority price for the model. See the module docstring for why 2.
PRIORITY_MULTIPLIER: Final = Decimal(2)
_HALF: Final = Decimal("0.5")
_ONE: Final = Decimal(1)
_ZERO: Final = Decimal(0)
_PER_TOKENS: Final = 6  # rates are per 10**6 tokens

# Exact arithmetic when scaling rates, independent of the caller's decimal context.
_EXACT = Context(prec=200)

_STANDARD_TIERS: Final = frozenset({"", "default", "auto", "standard"})
_PRIORITY_TIERS: Final = frozenset({"priority", "fast"})
# Prefixes that name OpenAI itself (OpenRouter/LiteLLM style ``openai/gpt-4o``, Azure OpenAI).
_OPENAI_PREFIXES: Final = frozenset({"openai", "azure", "azure_openai"})
# Of those, Azure's: ``azure/<region>/<model>`` names a region before the model.
_AZURE_PREFIXES: Final = frozenset({"azure", "azure_openai"})
# Bedrock's ids: an optional inference-profile region, the vendor, then the model
# (us.anthropic.claude-..., amazon.nova-pro-v1:0); OpenAI-style names have no dot before a letter
# there (gpt-4.1, claude-3.5-sonnet).
_BEDROCK_ID: Final = re.compile(r"(?:[a-z-]+\.)?[a-z0-9-]+\.[a-z]")
_DATED_SNAPSHOT = re.compile(r"^(?P<base>.+?)-\d{4}-\d{2}-\d{2}$")
# A snapshot date at the end of a name (``gpt-5.4-2026-03-05``), and a GPT version at its start.
_SNAPSHOT_DATE = re.compile(r"(\d{4})-(\d{2})-(\d{2})$")
_CLAUSE_DATE = re.compile(r"(20\d{2})-(\d{2})-(\d{2})")
_GPT_VERSION = re.compile(r"^gpt-(\d+)(?:[.-](\d{1,2}))?(?![\d])")
# A fine-tune's base model, undated: ``gpt-4.1-2025-04-14`` / ``gpt-3.5-turbo-0125`` -> family.
_BASE_DATE = re.compile(r"-(?:\d{4}-\d{2}-\d{2}|\d{4})$")
# OpenAI's data-residency hosts: ``eu.api.openai.com``, ``us.api.openai.com``, ...
_REGIONAL_HOST = re.compile(r"^(?P<region>[a-z]{2,3})\.api\.openai\.com\.?$")
_MAX_CACHE: Final = 4096
# genai-prices prices some providers by time of day (DeepSeek off-peak): re-resolve those often.
_TIME_OF_DAY_TTL: Final = 60.0

_RATE_FIELDS: Final = (
    "input",
    "output",
    "cached_input",
    "cache_write",
    "cache_write_1h",
    "input_audio",
    "output_audio",
    "input_image",
    "output_image",
    "web_search",
    "file_search",
)
# Rates per 1,000 calls, not per token: a data-residency uplift leaves them alone.
_CALL_FIELDS: Final = frozenset({"web_search", "file_search"})
_MAPPING_KEYS: Final = (*_RATE_FIELDS, "long_context_threshold", "long_context")
# ModelRates field -> genai-prices ModelPrice attribute.
_GENAI_KEYS: Final = {
    "input": "input_mtok",
    "output": "output_mtok",
    "cached_input": "cache_read_mtok",
    "cache_write": "cache_write_mtok",
    "cache_write_1h": "cache_write_1h_mtok",
    "input_audio": "input_audio_mtok",
    "output_audio": "output_audio_mtok",
    "input_image": "input_image_mtok",
    "output_image": "output_image_mtok",
    "web_search": "web_searches_kcount",
    "file_search": "storage_searches_kcount",
}


@dataclass(frozen=True, slots=True)
class ModelRates:
    """A model's prices in USD per 1,000,000 tokens.

    ``None`` means "not priced separately": cached input, cache writes and input audio/image
    tokens are then billed at ``input``, output audio/image tokens at ``output``. When a prompt
    has more than ``long_context_threshold`` tokens, all of the call is billed at ``long_context``
    (itself a complete ``ModelRates``; it may have a further tier).
    """

    input: Decimal
    output: Decimal
    cached_input: Decimal | None = None
    cache_write: Decimal | None = None
    #: Cache writes kept for an hour (Anthropic); None: at ``cache_write``.
    cache_write_1h: Decimal | None = None
    input_audio: Decimal | None = None
    output_audio: Decimal | None = None
    input_image: Decimal | None = None
    output_image: Decimal | None = None
    #: USD per 1,000 web searches a server tool ran; None: not priced (free).
    web_search: Decimal | None = None
    #: USD per 1,000 file-search tool calls (OpenAI Responses); None: not priced (free).
    file_search: Decimal | None = None
    long_context_threshold: int | None = None
    long_context: ModelRates | None = None

    def __post_init__(self) -> None:
        for name in _RATE_FIELDS:
            value: object = getattr(self, name)
            if value is None and name not in ("input", "output"):
                continue
            # An int is exact, so accept it; a float is exactly what this class exists to avoid.
            if isinstance(value, int) and not isinstance(value, bool):
                value = Decimal(value)
                object.__setattr__(self, name, value)
            if not isinstance(value, Decimal) or not value.is_finite() or value < 0:
                raise ValueError(
                    f"ModelRates.{name} must be a non-negative Decimal (USD per 1M tokens), got {value!r}"
                    + ("; pass Decimal(str(x)) for a float" if isinstance(value, float) else "")
                )
        threshold = self.long_context_threshold
        if (threshold is None) != (self.long_context is None):
            raise ValueError("ModelRates.long_context_threshold and long_context must be given together")
        if threshold is not None:
            if isinstance(threshold, bool) or not isinstance(threshold, int) or threshold <= 0:
                raise ValueError(
                    f"ModelRates.long_context_threshold must be a positive int, got {threshold!r}"
                )
            if not isinstance(self.long_context, ModelRates):
                raise ValueError(
                    f"ModelRates.long_context must be ModelRates, got {type(self.long_context).__name__}"
                )
            inner = self.long_context.long_context_threshold
            if inner is not None and inner <= threshold:
                raise ValueError(
                    f"nested long_context_threshold {inner} must be above the outer one, {threshold}"
                )

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], *, where: str) -> ModelRates:
        """Build rates from a config mapping (``{"input": 2.5, "output": 10, ...}``).

        Keys are the field names; numbers may be ints, decimal strings, Decimals or YAML floats
        (read through their shortest repr, so ``0.075`` stays exactly 0.075). ``long_context`` is
        a nested mapping of the same form. Errors are ``ConfigError`` naming ``where`` and the key.
        """
        if not isinstance(data, Mapping):
            raise ConfigError(f"model rates must be a mapping, got {type(data).__name__}", source=where)
        unknown = [key for key in data if key not in _MAPPING_KEYS]
        if unknown:
            key = str(unknown[0])
            known = ", ".join(_MAPPING_KEYS)
            raise ConfigError(
                f"unknown rate key{_did_you_mean(key, _MAPPING_KEYS)}; known keys: {known}",
                source=where,
                key=key,
            )
        for required in ("input", "output"):
            if required not in data:
                raise ConfigError("missing (USD per 1M tokens)", source=where, key=required)
        kwargs: dict[str, Any] = {}
        for name in _RATE_FIELDS:
            if name in data and data[name] is not None:
                kwargs[name] = _config_decimal(data[name], where=where, key=name)
        threshold = data.get("long_context_threshold")
        long_context = data.get("long_context")
        if (threshold is None) != (long_context is None):
            missing = "long_context" if long_context is None else "long_context_threshold"
            raise ConfigError(
                "long_context_threshold and long_context must be given together", source=where, key=missing
            )
        if threshold is not None:
            if isinstance(threshold, str) and threshold.replace("_", "").isdigit():
                threshold = int(threshold.replace("_", ""))
            if isinstance(threshold, bool) or not isinstance(threshold, int) or threshold <= 0:
                raise ConfigError(
                    f"must be a positive whole number of prompt tokens, got {threshold!r}",
                    source=where,
                    key="long_context_threshold",
                )
            kwargs["long_context_threshold"] = threshold
            if not isinstance(long_context, Mapping):
                raise ConfigError(
                    f"must be a mapping of rates, got {type(long_context).__name__}",
                    source=where,
                    key="long_context",
                )
            kwargs["long_context"] = cls.from_mapping(long_context, where=f"{where}.long_context")
        try:
            return cls(**kwargs)
        except ValueError as exc:
            raise ConfigError(str(exc), source=where) from None

    def scaled(self, factor: Decimal, *, tokens_only: bool = False) -> ModelRates:
        """These rates times ``factor`` (exactly), long-context tiers included.

        ``tokens_only``: leave the per-call tool fees (``web_search``, ``file_search``) as they are.
        """
        values: dict[str, Any] = {}
        for name in _RATE_FIELDS:
            value = getattr(self, name)
            keep = value is None or (tokens_only and name in _CALL_FIELDS)
            values[name] = value if keep else _EXACT.multiply(value, factor)
        if self.long_context is not None:
            values["long_context_threshold"] = self.long_context_threshold
            values["long_context"] = self.long_context.scaled(factor, tokens_only=tokens_only)
        return ModelRates(**values)

    def filled_from(self, other: ModelRates) -> ModelRates:
        """These rates, with each optional rate this one leaves ``None`` taken from ``other``."""
        values: dict[str, Any] = {}
        changed = False
        for name in _RATE_FIELDS:
            value = getattr(self, name)
            if value is None and getattr(other, name) is not None:
                value = getattr(other, name)
                changed = True
            values[name] = value
        if not changed:
            return self
        values["long_context_threshold"] = self.long_context_threshold
        values["long_context"] = self.long_context
        return ModelRates(**values)


@dataclass(frozen=True, slots=True)
class ResolvedPrice:
    """The standard (list) rates a model name resolved to, before tier and discount."""

    model: str
    """The name asked for."""
    canonical: str
    """The model the rates belong to (``gpt-4o`` for ``azure/gpt-4o-2024-08-06``)."""
    rates: ModelRates
    source: str
    """``"genai-prices 0.2.3"`` (plus notes), ``"override"`` or ``"fallback"``."""


#: What a lookup finds: standard rates, genai-prices' ModelInfo (for tier variants) or None, when
#: the rates may change (``_wall_time()``), and published batch rates of budgetguard's own table.
_Found = tuple[ResolvedPrice, Any, float, "ModelRates | None"]


# The three private records below are plain slotted classes, not dataclasses: same attribute
# speed, and building a dataclass costs about a millisecond of ``import budgetguard``.


class _Tier:
    """Integer rates: USD per token = value * 10**exponent of the owning ``_Entry``."""

    __slots__ = (
        "cache_write", "cache_write_1h", "cached", "file_search", "input", "input_audio", "input_image",
        "input_max", "input_min", "long", "output", "output_audio", "output_image", "threshold",
        "web_search",
    )  # fmt: skip

    def __init__(
        self,
        *,
        input: int,
        output: int,
        cached: int,
        cache_write: int,
        cache_write_1h: int,
        input_audio: int,
        output_audio: int,
        input_image: int,
        output_image: int,
        web_search: int,
        file_search: int,
        threshold: int | None,
        long: _Tier | None,
    ) -> None:
        self.input = input
        self.output = output
        self.cached = cached
        self.cache_write = cache_write
        self.cache_write_1h = cache_write_1h
        #: Per search, at the entry's per-token scale.
        self.web_search = web_search
        self.file_search = file_search
        self.input_audio = input_audio
        self.output_audio = output_audio
        self.input_image = input_image
        self.output_image = output_image
        self.threshold = threshold
        self.long = long
        # The bounds of a text prompt token, for reserving (every budgeted call): the dearest
        # way it can be billed, and the cheapest.
        self.input_max = max(input, cache_write, cache_write_1h)
        self.input_min = min(input, cached)


class _Resolution:
    __slots__ = ("batch", "expires", "hint", "info", "price", "warns")

    def __init__(
        self,
        price: ResolvedPrice | None,
        info: Any,
        expires: float,
        hint: str = "",
        batch: ModelRates | None = None,
    ) -> None:
        self.price = price
        self.info = info  # genai-prices ModelInfo when the rates came from it (for tier variants)
        self.expires = expires  # _wall_time() after which date-dependent genai-prices rates are re-read
        self.hint = hint  # why it is unknown, when price is None
        self.batch = batch  # published batch rates from budgetguard's own table (fine-tunes)
        # Whether using it warns (fallback rates, a fine-tune at base rates): decided once, as
        # every call's price check looks.
        self.warns = price is not None and (price.source == "fallback" or _FINE_TUNE_NOTE in price.source)


class _Entry:
    __slots__ = ("expires", "exponent", "hint", "model", "tier")

    def __init__(self, tier: _Tier | None, exponent: int, expires: float, model: str, hint: str) -> None:
        self.tier = tier  # None: unknown model, raise
        self.exponent = exponent
        self.expires = expires
        self.model = model
        self.hint = hint


class PriceBook:
    """Prices model calls: name resolution, tiers, discount, unknown-model policy.

    Thread-safe; lookups are cached, so :meth:`cost` is a dict hit and integer arithmetic once a
    name has been seen. When a response and a request name different models, price the first one
    the book :meth:`knows` (:meth:`choose_model` does that), so that ``unknown_model="warn"`` does
    not pick the fallback over a known request model. Calls sent to one of OpenAI's regional
    (data-residency) hosts are priced by the book :meth:`for_base_url` returns for that host.
    """

    def __init__(
        self,
        *,
        overrides: Mapping[str, ModelRates] = {},
        aliases: Mapping[str, str] = {},
        discount: Decimal = _ZERO,
        unknown_model: Literal["error", "warn"] = "error",
        fallback: ModelRates | None = None,
    ) -> None:
        for name, rates in overrides.items():
            if not isinstance(name, str) or not name.strip():
                raise ConfigError(
                    f"override model names must be non-empty strings, got {name!r}", key="overrides"
                )
            if not isinstance(rates, ModelRates):
                raise ConfigError(
                    f"override must be ModelRates, got {type(rates).__name__}", key=f"overrides.{name}"
                )
        for name, target in aliases.items():
            if (
                not isinstance(name, str)
                or not name.strip()
                or not isinstance(target, str)
                or not target.strip()
            ):
                raise ConfigError(
                    f"aliases map non-empty names to names, got {name!r} -> {target!r}", key="aliases"
                )
        if isinstance(discount, bool) or not isinstance(discount, Decimal | int):
            raise ConfigError(
                f"must be a Decimal fraction such as Decimal('0.15'), got {discount!r}", key="discount"
            )
        discount = Decimal(discount)
        if not discount.is_finite() or not 0 <= discount < 1:
            raise ConfigError(f"must be a fraction in [0, 1), got {discount}", key="discount")
        if unknown_model not in ("error", "warn"):
            raise ConfigError(f"must be 'error' or 'warn', got {unknown_model!r}", key="unknown_model")
        if unknown_model == "warn" and fallback is None:
            raise ConfigError("unknown_model 'warn' needs fallback rates to charge", key="fallback")
        if fallback is not None and not isinstance(fallback, ModelRates):
            raise ConfigError(f"must be ModelRates, got {type(fallback).__name__}", key="fallback")

        self._overrides = dict(overrides)
        self._overrides_lower = {name.lower(): name for name in overrides}
        self._aliases = dict(aliases)
        self._aliases_lower = {name.lower(): target for name, target in aliases.items()}
        self._discount = discount
        self._factor = _ONE - discount
        self._unknown_model = unknown_model
        self._fallback = fallback
        for name in self._aliases:
            self._alias_chain(name)  # raises on a loop

        self._lock = threading.RLock()
        self._resolutions: dict[str, _Resolution] = {}
        self._entries: dict[tuple[str, str | None, bool], _Entry] = {}
        self._warned: set[str] = set()
        #: The data-residency region this book prices for (None: OpenAI's global hosts).
        self._region: str | None = None
        #: Region -> this book's view for that region (shared by the book and its views).
        self._regional: dict[str, PriceBook] = {}
        #: The book a regional view was made from (None for a book built with ``PriceBook()``).
        self._parent: PriceBook | None = None
        _register_book(self)

    @property
    def discount(self) -> Decimal:
        return self._discount

    @property
    def region(self) -> str | None:
        """The OpenAI data-residency region this book prices for (``"eu"``), or None."""
        return self._region

    def for_base_url(self, base_url: object) -> PriceBook:
        """The book for calls sent to ``base_url`` (a client's ``base_url``: str or ``httpx.URL``).

        For one of OpenAI's data-residency hosts (``https://eu.api.openai.com/v1``, ``us.``, ...),
        a view of this book that adds OpenAI's regional uplift (see the module doc); for any other
        URL (``api.openai.com``, Azure, a proxy, None) this book itself. Views share this book's
        overrides, aliases, resolutions and warnings, and are made once per region: call it per
        client or per call, as convenient.
        """
        return self.in_region(data_residency_region(base_url))

    def in_region(self, region: str | None) -> PriceBook:
        """This book's view for OpenAI data-residency ``region`` (``"eu"``); None: the global book."""
        root = self._root()
        if not region:
            return root
        region = region.strip().lower()
        view = root._regional.get(region)
        if view is not None:
            return view
        with root._lock:
            view = root._regional.get(region)
            if view is None:
                view = object.__new__(PriceBook)
                view.__dict__.update(root.__dict__)  # shares resolutions, warnings, lock, views
                view._entries = {}  # compiled rates differ: the uplift is in them
                view._region = region
                view._parent = root
                root._regional[region] = view
                _register_book(view)
        return view

    def _root(self) -> PriceBook:
        return self._parent if self._parent is not None else self

    # -- public API --------------------------------------------------------------------------

    def resolve(self, model: str) -> ResolvedPrice:
        """The standard rates for ``model``; raises ``UnknownModelError`` (see the module doc)."""
        resolution = self._resolution(model)
        if resolution.price is None:
            raise UnknownModelError(model, resolution.hint)
        return resolution.price

    def knows(self, model: str) -> bool:
        """Whether ``model`` has a price of its own (override, alias, genai-prices): not the fallback."""
        resolution = self._resolution(model, quiet=True)
        return resolution.price is not None and resolution.price.source != "fallback"

    def choose_model(self, *candidates: str | None) -> str:
        """The first candidate this book knows (e.g. the response's model, then the request's).

        If none is known, the first non-empty one, so pricing it raises or falls back as configured.
        """
        names = [name for name in candidates if name]
        if not names:
            raise ValueError("choose_model() needs at least one non-empty model name")
        for name in names:
            if self.knows(name):
                return name
        return names[0]

    def cost(
        self, usage: Usage | TokenCounts, model: str, *, service_tier: str | None = None, batch: bool = False
    ) -> Decimal:
        """The exact dollar cost of one call's ``usage`` (or its token counts) on ``model``.

        One call, because the long-context tier is decided by that call's prompt size. Pass the
        ``service_tier`` the response reports and ``batch=True`` for Batch API results. Tool calls
        are priced from ``web_search_requests`` and, when the usage has that field,
        ``file_search_requests``. Raises ``UnknownModelError`` for an unknown model unless the book
        falls back (see the module doc).
        """
        return to_usd(*self.price(usage, model, service_tier, batch))

    def price(
        self, usage: Usage | TokenCounts, model: str, service_tier: str | None = None, batch: bool = False
    ) -> tuple[int, int]:
        """:meth:`cost` as integers ``(units, exponent)``: ``units * 10**exponent`` dollars,
        exactly. What the call path uses: running totals add integers (``budgetguard._money``)."""
        entry = self._entry(model, service_tier, batch)
        tier = entry.tier
        if tier is None:
            raise UnknownModelError(entry.model, entry.hint)
        if type(usage) is TokenCounts:  # the call path's case: unpacked in one step
            (
                prompt, completion, cached, cache_write, _, audio_in, audio_out, image_in, image_out,
                cache_write_1h, searches, file_searches,
            ) = usage  # fmt: skip
        else:
            prompt = usage.prompt_tokens
            completion = usage.completion_tokens
            cached = usage.cached_tokens
            cache_write = usage.cache_write_tokens
            cache_write_1h = usage.cache_write_1h_tokens
            audio_in = usage.input_audio_tokens
            image_in = usage.input_image_tokens
            audio_out = usage.output_audio_tokens
            image_out = usage.output_image_tokens
            searches = usage.web_search_requests
            file_searches = usage.file_search_requests
        # A negative count anywhere makes the bitwise OR negative: one comparison for all of them.
        parts = cached | cache_write | cache_write_1h | audio_in | image_in | audio_out | image_out
        if (prompt | completion | parts | searches | file_searches) < 0:
            raise ValueError(f"usage has a negative token count: {usage!r}")
        while tier.long is not None and tier.threshold is not None and prompt > tier.threshold:
            tier = tier.long
        if not (parts | searches | file_searches):  # plain text in and out: most calls
            return prompt * tier.input + completion * tier.output, entry.exponent
        # Parts of a total, in priority order, never more than what is left of it.
        cached = min(cached, prompt)
        rest = prompt - cached
        cache_write = min(cache_write, rest)
        rest -= cache_write
        cache_write_1h = min(cache_write_1h, cache_write)  # a part of the cache writes
        audio_in = min(audio_in, rest)
        rest -= audio_in
        image_in = min(image_in, rest)
        rest -= image_in
        audio_out = min(audio_out, completion)
        rest_out = completion - audio_out
        image_out = min(image_out, rest_out)
        rest_out -= image_out
        total = (
            rest * tier.input
            + cached * tier.cached
            + (cache_write - cache_write_1h) * tier.cache_write
            + cache_write_1h * tier.cache_write_1h
            + audio_in * tier.input_audio
            + image_in * tier.input_image
            + rest_out * tier.output
            + audio_out * tier.output_audio
            + image_out * tier.output_image
            + searches * tier.web_search
            + file_searches * tier.file_search
        )
        return total, entry.exponent

    def cost_bounds(
        self,
        model: str,
        prompt_tokens: int,
        max_output_tokens: int,
        *,
        service_tier: str | None = None,
        batch: bool = False,
        audio: bool = False,
        images: bool = False,
    ) -> tuple[Decimal, Decimal]:
        """``(min, max)`` dollar cost of a request not yet sent.

        ``max``: every prompt token at the dearest text input rate (``input``, or ``cache_write``
        when that is higher) and ``max_output_tokens`` at ``output``; the long-context tier when
        ``prompt_tokens`` is above its threshold (pass an upper estimate). With ``audio``/``images``
        the prompt and output may be audio/image tokens, so their rates count too. ``min``: no
        output and the whole prompt at the cheapest input rate (cached, if the model has one).
        """
        low, high, exponent = self._bounds(
            model, prompt_tokens, max_output_tokens, service_tier, batch, audio, images
        )
        return to_usd(low, exponent), to_usd(high, exponent)

    def max_cost_picos(
        self,
        model: str,
        prompt_tokens: int,
        max_output_tokens: int,
        *,
        service_tier: str | None = None,
        batch: bool = False,
        audio: bool = False,
        images: bool = False,
    ) -> int:
        """The ``max`` of :meth:`cost_bounds` in whole picodollars (10**-12 USD), rounded up.

        What a budget reserves for a request. It runs before every budgeted call, so it stays in
        integers: no ``Decimal`` is built, and no decimal context can round it down.
        """
        _, high, exponent = self._bounds(
            model, prompt_tokens, max_output_tokens, service_tier, batch, audio, images
        )
        return to_picos(high, exponent)

    def _bounds(
        self,
        model: str,
        prompt_tokens: int,
        max_output_tokens: int,
        service_tier: str | None,
        batch: bool,
        audio: bool,
        images: bool,
    ) -> tuple[int, int, int]:
        """``cost_bounds`` as integer units and their exponent: ``(low, high, exponent)``."""
        if prompt_tokens < 0 or max_output_tokens < 0:
            raise ValueError(
                f"token counts must not be negative, got prompt_tokens={prompt_tokens}, "
                f"max_output_tokens={max_output_tokens}"
            )
        entry = self._entry(model, service_tier, batch)
        tier = entry.tier
        if tier is None:
            raise UnknownModelError(entry.model, entry.hint)
        while tier.long is not None and tier.threshold is not None and prompt_tokens > tier.threshold:
            tier = tier.long
        input_max = tier.input_max
        output_max = tier.output
        if audio:
            input_max = max(input_max, tier.input_audio)
            output_max = max(output_max, tier.output_audio)
        if images:
            input_max = max(input_max, tier.input_image)
            output_max = max(output_max, tier.output_image)
        low = prompt_tokens * tier.input_min
        high = prompt_tokens * input_max + max_output_tokens * output_max
        return low, high, entry.exponent

    # -- resolution --------------------------------------------------------------------------

    def _entry(self, model: str, service_tier: str | None, batch: bool) -> _Entry:
        key = (model, service_tier, batch)
        entry = self._entries.get(key)
        if entry is not None and entry.expires > _wall_time():
            return entry
        with self._lock:
            resolution = self._resolution(model)
            if resolution.price is None:
                entry = _Entry(None, 0, resolution.expires, model, resolution.hint)
            else:
                rates = self._effective_rates(resolution, service_tier, batch)
                if self._region is not None and _residency_uplift_applies(resolution):
                    rates = rates.scaled(_residency_rules().uplift, tokens_only=True)
                tier, exponent = _compile(rates.scaled(self._factor) if self._discount else rates)
                entry = _Entry(tier, exponent, resolution.expires, model, "")
            if len(self._entries) >= _MAX_CACHE:
                self._entries.clear()
            self._entries[key] = entry
        return entry

    def _resolution(self, model: str, *, quiet: bool = False) -> _Resolution:
        resolution = self._resolutions.get(model)
        if resolution is not None and resolution.expires > _wall_time():
            if not quiet and resolution.warns:
                self._warn_once_for(resolution.price)
            return resolution
        with self._lock:
            resolution = self._resolve_uncached(model)
            if len(self._resolutions) >= _MAX_CACHE:
                self._resolutions.clear()
            self._resolutions[model] = resolution
        if not quiet and resolution.warns:
            self._warn_once_for(resolution.price)
        return resolution

    def _warn_once_for(self, price: ResolvedPrice | None) -> None:
        if price is None:
            return
        if price.source == "fallback":
            message = (
                f"no price known for model {price.model!r}; charging the configured fallback rates "
                f"(input ${price.rates.input}, output ${price.rates.output} per 1M tokens)"
            )
        elif _FINE_TUNE_NOTE in price.source:
            message = (
                f"no fine-tuned rates known for {price.model!r}; charging base model "
                f"{price.canonical!r} rates, which are usually below OpenAI's fine-tuned rates. "
                "Add a price override for this model name to charge it exactly."
            )
        else:
            return
        self._warn_once(price.model, message, UnknownModelWarning)

    def _warn_once(self, key: str, message: str, category: type[Warning]) -> None:
        if key in self._warned:
            return
        with self._lock:
            if key in self._warned:
                return
            # Marked only once it was shown: under warnings-as-errors every call keeps failing.
            warn(message, category)
            self._warned.add(key)

    def _resolve_uncached(self, model: str) -> _Resolution:
        if not isinstance(model, str):
            raise TypeError(f"model must be a str, got {type(model).__name__}")
        found, chain, not_token_priced = self._lookup(model.strip())
        if found is not None:
            price, info, expires, batch = found
            if price.model != model:
                price = ResolvedPrice(model, price.canonical, price.rates, price.source)
            return _Resolution(price, info, expires, batch=batch)
        if self._unknown_model == "warn":
            assert self._fallback is not None
            return _Resolution(ResolvedPrice(model, model, self._fallback, "fallback"), None, _NEVER)
        return _Resolution(None, None, _NEVER, self._unknown_hint(chain, not_token_priced))

    def _lookup(self, name: str) -> tuple[_Found | None, list[str], str | None]:
        """Resolve ``name`` without the unknown-model policy: (found, name chain, why unpriced)."""
        chain = [name]
        provider: str | None = None
        seen: set[str] = set()
        while name and name not in seen:
            seen.add(name)
            key = name if name in self._overrides else self._overrides_lower.get(name.lower())
            if key is not None:
                override = ResolvedPrice(name, key, self._overrides[key], "override")
                return (override, None, _NEVER, None), chain, None
            target = self._aliases.get(name, self._aliases_lower.get(name.lower()))
            if target is not None:
                name = target.strip()
                chain.append(name)
                continue
            prefix, slash, rest = name.partition("/")
            if slash and rest:
                # The innermost prefix names the model's vendor: openrouter/openai/gpt-4o is gpt-4o.
                lowered = prefix.lower()
                if lowered in _OPENAI_PREFIXES:
                    provider = None
                    name = _without_azure_region(rest) if lowered in _AZURE_PREFIXES else rest
                    continue
                if lowered in _genai().provider_ids:
                    provider = lowered
                    name = rest
                    continue
            break
        if not name:
            return None, chain, None

        data = _genai()
        not_token_priced: str | None = None
        base = _fine_tune_base(name)
        table = _fine_tune_rates(base) if base is not None else None
        hit = data.find(name, provider)
        if hit is None and provider is None and _BEDROCK_ID.match(name.lower()):
            hit = data.find(name, "aws")
        if hit is not None:
            info, provider_id, own = hit
            now = _utc_now()
            rates = _rates_from_genai(info.get_prices(now))
            if rates is not None:
                source = data.source if provider_id == "openai" else f"{data.source} ({provider_id})"
                batch: ModelRates | None = None
                if table is not None and provider_id == "openai":
                    # genai-prices' fine-tuned rates, completed from OpenAI's table (cached input).
                    filled = rates.filled_from(table.rates)
                    if filled is not rates:
                        source = f"{source}; rates it lacks from {table.source}"
                    rates, batch = filled, table.batch
                if base is not None:
                    rates = self._with_tool_fees_of(base, provider, rates)
                price = ResolvedPrice(name, info.id, rates, source)
                return (price, info if own else None, _expiry(info, now), batch), chain, None
            not_token_priced = info.id

        if base is not None:
            if table is not None:
                rates = self._with_tool_fees_of(base, provider, table.rates)
                price = ResolvedPrice(name, f"ft:{table.family}", rates, table.source)
                return (price, None, _NEVER, table.batch), chain, None
            found, base_chain, _ = self._lookup(_with_provider(provider, base))
            if found is not None:
                price, _info, expires, _batch = found
                source = f"{price.source}; {_FINE_TUNE_NOTE}"
                price = ResolvedPrice(name, price.canonical, price.rates, source)
                # Tier variants belong to the base model's standard service, not to fine-tunes.
                return (price, None, expires, None), chain + base_chain[1:], None
        for other, note in _other_spellings(name):
            found, _, _ = self._lookup(_with_provider(provider, other))
            if found is not None:
                price, info, expires, batch = found
                note = note.format(price.canonical)
                price = ResolvedPrice(name, price.canonical, price.rates, f"{price.source}; {note}")
                return (price, info, expires, batch), chain, None
        return None, chain, not_token_priced

    def _with_tool_fees_of(self, base: str, provider: str | None, rates: ModelRates) -> ModelRates:
        """A fine-tune's ``rates``, with the per-call tool fees it lacks taken from its base model.

        OpenAI's tool fees (web search, file search) are per call, whichever model makes it.
        """
        if rates.web_search is not None and rates.file_search is not None:
            return rates
        found, _, _ = self._lookup(_with_provider(provider, base))
        if found is None:
            return rates
        return rates.filled_from(_tool_fees(found[0].rates))

    def _alias_chain(self, name: str) -> list[str]:
        chain = [name]
        current = name
        while True:
            target = self._aliases.get(current, self._aliases_lower.get(current.lower()))
            if target is None:
                return chain
            target = target.strip()
            if target in chain or target.lower() in {step.lower() for step in chain}:
                raise ConfigError(
                    "alias loop: " + " -> ".join(repr(step) for step in [*chain, target]),
                    key=f"aliases.{name}",
                )
            chain.append(target)
            current = target

    def _unknown_hint(self, chain: list[str], not_token_priced: str | None) -> str:
        parts: list[str] = []
        if len(chain) > 1:
            parts.append("resolved through aliases " + " -> ".join(repr(step) for step in chain))
        if not_token_priced is not None:
            parts.append(
                f"genai-prices prices {not_token_priced!r} per audio hour or character, not per token"
            )
        else:
            import difflib

            wanted = chain[-1].lower()
            candidates = [*_genai().names, *self._overrides, *self._aliases]
            if not wanted.startswith("ft:"):
                candidates = [name for name in candidates if not name.startswith("ft:")]
            close = difflib.get_close_matches(wanted, candidates, n=3, cutoff=0.6)
            if close:
                parts.append("close known names: " + ", ".join(repr(name) for name in close))
        return "; ".join(parts)

    def _effective_rates(self, resolution: _Resolution, service_tier: str | None, batch: bool) -> ModelRates:
        price = resolution.price
        assert price is not None
        tier = (service_tier or "").strip().lower()
        if batch:
            variant = self._variant(resolution, {"processing": "batch"})
            table = resolution.batch  # a fine-tune's published batch rates
            if table is None:
                return variant if variant is not None else price.rates.scaled(_HALF)
            # Tool fees are per call, batch or not: the standard ones where the batch table has none.
            rates = table if variant is None else variant.filled_from(table)
            return rates.filled_from(_tool_fees(price.rates))
        if tier in _STANDARD_TIERS:
            return price.rates
        variant = self._variant(resolution, {"service_tier": tier})
        if variant is not None:
            return variant
        if tier == "flex":
            return price.rates.scaled(_HALF)
        if tier in _PRIORITY_TIERS:
            return price.rates.scaled(PRIORITY_MULTIPLIER)
        self._warn_once(
            f"\0tier:{tier}",
            f"service_tier {service_tier!r} has no known price; charging standard rates",
            BudgetGuardWarning,
        )
        return price.rates

    @staticmethod
    def _variant(resolution: _Resolution, context: dict[str, str]) -> ModelRates | None:
        """genai-prices' price variant for ``context``, if the model has one active now."""
        info = resolution.info
        if info is None:
            return None
        now = _utc_now()
        for variant in info.price_variants or ():
            if variant.when != context:
                continue
            if variant.constraint is not None and not variant.constraint.active(now):
                continue
            return _rates_from_genai(info.get_prices(now, context))
        return None


_NEVER: Final = float("inf")
_FINE_TUNE_NOTE: Final = "fine-tune priced at base model rates"


def _fine_tune_base(name: str) -> str | None:
    """The base model of a fine-tune: ``ft:BASE:org:name:id`` (OpenAI), ``BASE.ft-ID`` (Azure)."""
    if name[:3].lower() == "ft:":
        base = name[3:].split(":", 1)[0].strip()
        return base or None
    base, dot_ft, ident = name.partition(".ft-")
    if dot_ft and base.strip() and ident:
        return base.strip()
    return None


def _tool_fees(rates: ModelRates) -> ModelRates:
    """Only the per-call tool fees of ``rates`` (to fill another model's with ``filled_from``)."""
    return ModelRates(input=_ZERO, output=_ZERO, web_search=rates.web_search, file_search=rates.file_search)


def _with_provider(provider: str | None, name: str) -> str:
    return name if provider is None else f"{provider}/{name}"


def _without_azure_region(rest: str) -> str:
    """``eastus/gpt-4o`` (after ``azure/``) -> ``gpt-4o``; a provider prefix is kept."""
    region, slash, model = rest.partition("/")
    if not slash or not model or not region:
        return rest
    lowered = region.lower()
    if lowered in _OPENAI_PREFIXES or lowered in _genai().provider_ids:
        return rest
    return model


def _other_spellings(name: str) -> list[tuple[str, str]]:
    """Names ``name`` may stand for, tried in order when it is not known: (name, source note)."""
    lowered = name.lower()
    out: list[tuple[str, str]] = []
    if lowered.startswith("gpt-35"):  # Azure OpenAI spells gpt-3.5-turbo without the dot
        out.append(("gpt-3.5" + name[6:], "Azure's name for {}"))
    if lowered.endswith("-latest") and len(name) > 7:
        out.append((name[:-7], "'-latest' alias priced as {}"))
        if lowered.endswith("-chat-latest") and len(name) > 12:
            out.append((name[:-12], "'-latest' alias priced as {}"))
    snapshot = _DATED_SNAPSHOT.match(name)
    if snapshot is not None:
        out.append((snapshot["base"], "undated {} rates for an unlisted snapshot"))
    return out


def _rates_from_genai(model_price: Any) -> ModelRates | None:
    """Convert a genai-prices ModelPrice (Decimals, TieredPrices) to ModelRates; None if untokenised."""
    values = {name: getattr(model_price, key, None) for name, key in _GENAI_KEYS.items()}
    if values["input"] is None:
        return None
    tiered: list[Any] = [value for value in values.values() if hasattr(value, "tiers")]
    starts = sorted({tier.start for value in tiered for tier in value.tiers})

    def level(crossed: int) -> ModelRates:
        above = starts[crossed - 1] if crossed else None
        rates: dict[str, Any] = {}
        for name, value in values.items():
            if value is None:
                rates[name] = None
                continue
            price = value
            if hasattr(value, "tiers"):
                # genai-prices' cliff tiers: above a tier's start, every token pays that tier's price.
                price = value.base
                for tier in sorted(value.tiers, key=lambda t: t.start):
                    if above is not None and tier.start <= above:
                        price = tier.price
            rates[name] = _genai_decimal(price)
        if rates["output"] is None:
            rates["output"] = _ZERO  # input-only models (embeddings) have no output tokens
        if crossed < len(starts):
            rates["long_context_threshold"] = starts[crossed]
            rates["long_context"] = level(crossed + 1)
        return ModelRates(**rates)

    return level(0)


def _genai_decimal(value: Any) -> Decimal:
    if isinstance(value, Decimal):
        return value
    if isinstance(value, int):
        return Decimal(value)
    return Decimal(str(value))  # a float from future data: its shortest repr, not its binary value


def _utc_now() -> datetime:
    from datetime import UTC, datetime  # only genai-prices lookups need it

    return datetime.now(UTC)


def _expiry(info: Any, now: datetime) -> float:
    """When a model's genai-prices rates may change: its next start date, or soon for time-of-day."""
    from datetime import UTC, datetime

    expires = _NEVER
    conditional = info.prices if isinstance(info.prices, list) else []
    constraints = [price.constraint for price in conditional]
    constraints += [variant.constraint for variant in info.price_variants or ()]
    today = now.date()
    for constraint in constraints:
        if constraint is None:
            continue
        start = getattr(constraint, "start_date", None)
        if start is not None:
            if start > today:
                midnight = datetime(start.year, start.month, start.day, tzinfo=UTC)
                expires = min(expires, midnight.timestamp())
        else:
            expires = min(expires, now.timestamp() + _TIME_OF_DAY_TTL)
    return expires


def _compile(rates: ModelRates) -> tuple[_Tier, int]:
    """Integer rates at one scale for the whole tier chain, and that scale's exponent per token."""
    places = 0
    level: ModelRates | None = rates
    while level is not None:
        for name in _RATE_FIELDS:
            value = getattr(level, name)
            if value is not None:
                exponent = value.as_tuple().exponent
                assert isinstance(exponent, int)  # finite, checked by ModelRates
                places = max(places, -exponent)
        level = level.long_context

    def build(level: ModelRates) -> _Tier:
        def at(value: Decimal | None, default: Decimal) -> int:
            return _scaled_int(default if value is None else value, places)

        return _Tier(
            input=at(level.input, level.input),
            output=at(level.output, level.output),
            cached=at(level.cached_input, level.input),
            cache_write=at(level.cache_write, level.input),
            cache_write_1h=at(
                level.cache_write_1h, level.cache_write if level.cache_write is not None else level.input
            ),
            input_audio=at(level.input_audio, level.input),
            output_audio=at(level.output_audio, level.output),
            input_image=at(level.input_image, level.input),
            output_image=at(level.output_image, level.output),
            # Rates are per 1M tokens; this one per 1,000 searches: 1,000x per search at that scale.
            web_search=at(level.web_search, _ZERO) * 1000,
            file_search=at(level.file_search, _ZERO) * 1000,
            threshold=level.long_context_threshold,
            long=None if level.long_context is None else build(level.long_context),
        )

    return build(rates), -(places + _PER_TOKENS)


def _scaled_int(value: Decimal, places: int) -> int:
    # Exact: ``places`` is at least the number of decimal places of every rate it is used on.
    return int(_EXACT.scaleb(value, places))


def _config_decimal(value: object, *, where: str, key: str) -> Decimal:
    if isinstance(value, bool):
        raise ConfigError(f"must be a number (USD per 1M tokens), got {value!r}", source=where, key=key)
    try:
        if isinstance(value, Decimal):
            number = value
        elif isinstance(value, int):
            number = Decimal(value)
        elif isinstance(value, float | str):
            # A YAML float's repr is the literal that was written (0.075, not 0.07499999...).
            number = Decimal(str(value).strip().replace("_", ""))
        else:
            raise InvalidOperation
    except InvalidOperation:
        number = None
    if number is None:
        raise ConfigError(f"must be a number (USD per 1M tokens), got {value!r}", source=where, key=key)
    if not number.is_finite() or number < 0:
        raise ConfigError(f"must be a non-negative number, got {value!r}", source=where, key=key)
    return number


def _did_you_mean(word: str, options: tuple[str, ...]) -> str:
    import difflib

    close = difflib.get_close_matches(word, options, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


# -- genai-prices, loaded on first use -----------------------------------------------------------


class PriceData:
    """Which genai-prices data prices come from (:func:`price_data`, :func:`update_price_data`).

    ``origin`` is ``"installed"`` (the data bundled with the installed genai-prices; ``date`` is
    when it was installed, None if unknown) or ``"fetched"`` (a copy :func:`update_price_data`
    downloaded; ``date`` is when, ``path`` where it is cached and ``url`` where it came from).
    """

    __slots__ = ("date", "origin", "path", "url", "version")

    def __init__(
        self,
        *,
        origin: Literal["installed", "fetched"],
        version: str,
        date: datetime | None,
        path: str | None = None,
        url: str | None = None,
    ) -> None:
        self.origin = origin
        #: The installed genai-prices' version (its parser read the data).
        self.version = version
        self.date = date
        self.path = path
        self.url = url

    @property
    def source(self) -> str:
        """How ``ResolvedPrice.source`` names this data (``"genai-prices 0.2.3"``)."""
        if self.origin == "fetched" and self.date is not None:
            return f"genai-prices data of {self.date:%Y-%m-%d}"
        return f"genai-prices {self.version}"

    @property
    def label(self) -> str:
        """One line for people: what the data is and its date."""
        if self.origin == "fetched":
            when = "an unknown date" if self.date is None else f"{self.date:%Y-%m-%d %H:%M} UTC"
            return f"genai-prices data fetched {when} (newer than installed genai-prices {self.version})"
        when = "" if self.date is None else f", installed {self.date:%Y-%m-%d}"
        return f"genai-prices {self.version} (bundled data{when})"

    def __repr__(self) -> str:
        return (
            f"PriceData(origin={self.origin!r}, version={self.version!r}, date={self.date!r}, "
            f"path={self.path!r}, url={self.url!r})"
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, PriceData):
            return NotImplemented
        return all(getattr(self, name) == getattr(other, name) for name in self.__slots__)

    __hash__ = None  # type: ignore[assignment]


class _GenaiData:
    """One copy of genai-prices' data (bundled or fetched), the lookups we need from it."""

    def __init__(self, providers: list[Any], info: PriceData) -> None:
        from genai_prices.data_snapshot import DataSnapshot

        # Our own snapshot: a snapshot installed by genai_prices.UpdatePrices (which lives in
        # genai_prices.data_snapshot) is never consulted.
        self._snapshot = DataSnapshot(providers=providers, from_auto_update=False)
        self.info = info
        self.version = info.version
        self.source = info.source
        self.provider_ids = frozenset(provider.id for provider in providers)
        self._providers = {provider.id: provider for provider in providers}
        names: set[str] = set()
        openai = self._providers.get("openai")
        for model in openai.models if openai is not None else ():
            names.add(model.id.lower())
            names.update(_clause_names(model.match))
        self.names = sorted(names)

    def find(self, name: str, provider: str | None) -> tuple[Any, str, bool] | None:
        """(ModelInfo, provider id, whether the provider owns it) for ``name``, or None."""
        attempts: list[str | None] = [provider] if provider is not None else ["openai", None]
        for provider_id in attempts:
            try:
                found_provider, info = self._snapshot.find_provider_model(name, None, provider_id, None)
            except LookupError:
                continue
            own = any(model is info for model in found_provider.models)
            return info, found_provider.id, own
        return None


def _clause_names(clause: Any) -> set[str]:
    """Literal model names in a genai-prices match clause (for 'did you mean' hints)."""
    names: set[str] = set()
    for attr in ("equals", "starts_with"):
        value = getattr(clause, attr, None)
        if isinstance(value, str):
            names.add(value.lower().rstrip("-"))
    for attr in ("or_", "and_"):
        for inner in getattr(clause, attr, None) or ():
            names |= _clause_names(inner)
    return names


_genai_data: _GenaiData | None = None
_genai_lock = threading.Lock()


def _genai() -> _GenaiData:
    global _genai_data
    data = _genai_data
    if data is None:
        with _genai_lock:
            if _genai_data is None:
                _genai_data = _load_genai_data()
            data = _genai_data
    return data


def _load_genai_data() -> _GenaiData:
    """The fetched copy when it is newer than the installed package's data, else the bundled data."""
    import genai_prices

    version: str = genai_prices.__version__
    installed = _installed_date()
    cached = _read_cache(version, installed)
    if cached is not None:
        return cached
    from genai_prices.data import providers

    return _GenaiData(providers, PriceData(origin="installed", version=version, date=installed))


def _install_genai_data(data: _GenaiData | None) -> None:
    """Price with ``data`` from now on (None: load again on the next lookup), in every book."""
    global _genai_data
    with _genai_lock:
        _genai_data = data
    with _books_lock:
        books = list(_books)
    for book in books:
        # Under the book's lock: a lookup in flight finishes (and is dropped) or starts afresh.
        with book._lock:
            book._resolutions.clear()
            book._entries.clear()


def price_data() -> PriceData:
    """Which genai-prices data this process prices with (loads it, importing genai-prices)."""
    return _genai().info


# -- price data on disk: fetched on request, never at import or on a call's path -------------------

#: How often :func:`start_price_updates` checks for newer data by default: once a day.
UPDATE_INTERVAL: Final = 86_400.0
_CACHE_DIR_ENV: Final = "BUDGETGUARD_CACHE_DIR"
_CACHE_FILE: Final = "genai-prices.json"
_CHECKED_FILE: Final = "genai-prices.checked"  # touched before every background check
_CACHE_FORMAT: Final = 1

_update_lock = threading.Lock()
_update_thread: threading.Thread | None = None


def _cache_dir() -> Path:
    """``$BUDGETGUARD_CACHE_DIR``, else the platform's user cache directory + ``budgetguard``."""
    import sys
    from pathlib import Path

    configured = os.environ.get(_CACHE_DIR_ENV, "").strip()
    if configured:
        return Path(configured).expanduser()
    if sys.platform == "win32":
        base = os.environ.get("LOCALAPPDATA", "").strip() or str(Path.home() / "AppData" / "Local")
    elif sys.platform == "darwin":
        base = str(Path.home() / "Library" / "Caches")
    else:
        base = os.environ.get("XDG_CACHE_HOME", "").strip() or str(Path.home() / ".cache")
    return Path(base) / "budgetguard"


def _installed_date() -> datetime | None:
    """When the installed genai-prices' data file was written (installed), UTC; None if unknown."""
    from datetime import UTC, datetime
    from importlib import metadata

    try:
        located = metadata.distribution("genai-prices").locate_file("genai_prices/data.py")
        return datetime.fromtimestamp(os.stat(str(located)).st_mtime, UTC)
    except (OSError, ValueError, metadata.PackageNotFoundError):
        return None


def _read_cache(version: str, installed: datetime | None) -> _GenaiData | None:
    """The cached fetched data if there is some, newer than ``installed``; else None."""
    import json
    from datetime import UTC, datetime

    path = _cache_dir() / _CACHE_FILE
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        warn(f"cannot read the cached price data {path} ({exc}); using the installed genai-prices data",
             BudgetGuardWarning)  # fmt: skip
        return None
    try:
        envelope = json.loads(raw)
        if not isinstance(envelope, dict) or envelope.get("format") != _CACHE_FORMAT:
            raise ValueError("not a budgetguard price data cache")
        fetched = datetime.fromisoformat(str(envelope["fetched_at"]))
        if fetched.tzinfo is None:
            fetched = fetched.replace(tzinfo=UTC)
        if installed is not None and fetched <= installed:
            return None  # the installed package's data is newer
        from genai_prices.types import _providers_from_raw

        providers = _providers_from_raw(envelope["providers"])
    except Exception as exc:  # any malformed file: fall back, and say so
        warn(f"ignoring the cached price data {path} ({type(exc).__name__}: {exc}); "
             "using the installed genai-prices data", BudgetGuardWarning)  # fmt: skip
        return None
    url = envelope.get("url")
    info = PriceData(
        origin="fetched",
        version=version,
        date=fetched,
        path=str(path),
        url=url if isinstance(url, str) else None,
    )
    return _GenaiData(providers, info)


def update_price_data(*, url: str | None = None, timeout: float | None = None) -> PriceData:
    """Fetch genai-prices' newest price data now, cache it on disk and price with it from now on.

    The fetch goes through genai-prices' updater (``UpdatePrices``: its URL, default
    ``genai_prices.update_prices.DEFAULT_UPDATE_URL``, its HTTP client, timeouts and parser); the
    payload is written, with the time it was fetched, to ``genai-prices.json`` in the cache
    directory (``$BUDGETGUARD_CACHE_DIR``, default ``~/.cache/budgetguard``). Processes started
    later use it while it is newer than the installed genai-prices; this one switches to it now.
    Raises ``BudgetGuardError`` when the data cannot be fetched, parsed or cached (the data in use
    is then unchanged). Never called by budgetguard on its own: ``budgetguard prices --update``
    calls it, and :func:`start_price_updates` when a configuration opts in.
    """
    import json
    from datetime import UTC, datetime

    import genai_prices
    from genai_prices import update_prices

    target = url or update_prices.DEFAULT_UPDATE_URL
    fetcher = _caching_updater()(url=target)
    if timeout is not None:
        import httpx2

        fetcher.request_timeout = httpx2.Timeout(timeout)
    try:
        fetcher.fetch()
    except Exception as exc:
        raise BudgetGuardError(
            f"could not fetch price data from {target}: {type(exc).__name__}: {exc}"
        ) from exc
    fetched = datetime.now(UTC)
    path = _cache_dir() / _CACHE_FILE
    envelope = {
        "format": _CACHE_FORMAT,
        "fetched_at": fetched.isoformat(),
        "url": target,
        "genai_prices": genai_prices.__version__,
        "providers": fetcher.payload,
    }
    try:
        _write_atomically(path, json.dumps(envelope, separators=(",", ":")).encode())
    except OSError as exc:
        raise BudgetGuardError(f"could not cache the price data in {path}: {exc}") from exc
    info = PriceData(
        origin="fetched", version=genai_prices.__version__, date=fetched, path=str(path), url=target
    )
    _install_genai_data(_GenaiData(fetcher.providers, info))
    return info


def _caching_updater() -> type[Any]:
    """genai-prices' ``UpdatePrices`` with a ``fetch()`` that keeps the payload for our cache.

    Overriding ``fetch()`` is how ``UpdatePrices`` is customised; this one does what genai-prices'
    does (GET the URL with its timeouts, check for a provider array, parse it with genai-prices'
    parser) and also keeps the raw array, which a parsed snapshot cannot be turned back into.
    It is only ever called directly: the updater's background thread is never started.
    """
    from genai_prices.update_prices import UpdatePrices

    class _CachingUpdatePrices(UpdatePrices):
        payload: list[Any] | None = None
        providers: list[Any] | None = None

        def fetch(self) -> Any:
            import json

            import httpx2
            from genai_prices import data_snapshot
            from genai_prices.types import _providers_from_raw

            response = httpx2.get(self.url, timeout=self.request_timeout)
            response.raise_for_status()
            payload = json.loads(response.content)
            if not isinstance(payload, list):
                raise ValueError("Expected fetched prices payload to be a provider array")
            providers = _providers_from_raw(payload)
            self.payload, self.providers = payload, providers
            return data_snapshot.DataSnapshot(providers, from_auto_update=True)

    return _CachingUpdatePrices


def _write_atomically(path: Path, data: bytes) -> None:
    import tempfile

    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=str(path.parent))
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(data)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


def start_price_updates(
    *, interval: float = UPDATE_INTERVAL, url: str | None = None
) -> threading.Thread | None:
    """Opted in by configuration: fetch newer price data in a background thread, at most once a day.

    Returns at once. When neither a fetch nor a check happened in the last ``interval`` seconds
    (the cache file's and a marker file's times, so across processes too), starts a daemon thread
    that calls :func:`update_price_data` and returns it; otherwise returns None. A failed fetch is
    logged (logger ``budgetguard``, WARNING) and tried again after ``interval``; prices stay as
    they were. Never called at import or on a call's path.
    """
    global _update_thread
    directory = _cache_dir()
    marker = directory / _CHECKED_FILE
    times = [_mtime(directory / _CACHE_FILE), _mtime(marker)]
    last = max((t for t in times if t is not None), default=None)
    if last is not None and _wall_time() - last < interval:
        return None
    with _update_lock:
        running = _update_thread
        if running is not None and running.is_alive():
            return running
        thread = threading.Thread(
            target=_update_in_background, args=(url, marker), name="budgetguard-price-update", daemon=True
        )
        _update_thread = thread
        thread.start()
    return thread


def _mtime(path: Path) -> float | None:
    try:
        return os.stat(path).st_mtime
    except OSError:
        return None


def _update_in_background(url: str | None, marker: Path) -> None:
    import logging

    log = logging.getLogger("budgetguard")
    try:
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.touch()
        info = update_price_data(url=url)
    except Exception as exc:
        log.warning("budgetguard: background price update failed, prices unchanged: %s", exc)
    else:
        log.info("budgetguard: price data updated: %s", info.label)


# -- OpenAI's tables genai-prices lacks (budgetguard/_data/openai_prices.json) --------------------


class _FineTune:
    """A fine-tuned model family's published inference rates."""

    __slots__ = ("batch", "family", "rates", "source")

    def __init__(self, family: str, rates: ModelRates, batch: ModelRates | None, source: str) -> None:
        self.family = family
        self.rates = rates
        self.batch = batch
        self.source = source


class _Residency:
    """OpenAI's data-residency uplift and the models it applies to."""

    __slots__ = ("first_version", "released_on_or_after", "uplift")

    def __init__(self, uplift: Decimal, released_on_or_after: date, first_version: tuple[int, int]) -> None:
        self.uplift = uplift
        self.released_on_or_after = released_on_or_after
        self.first_version = first_version


_tables: tuple[dict[str, _FineTune], _Residency] | None = None


def _openai_tables() -> tuple[dict[str, _FineTune], _Residency]:
    global _tables
    tables = _tables
    if tables is None:
        tables = _tables = _load_openai_tables()
    return tables


def _load_openai_tables() -> tuple[dict[str, _FineTune], _Residency]:
    import json
    from datetime import date
    from importlib import resources

    text = resources.files("budgetguard").joinpath("_data", "openai_prices.json").read_text(encoding="utf-8")
    data = json.loads(text)
    fine_tuned = data["fine_tuned"]
    source = f"OpenAI fine-tuning prices of {fine_tuned['as_of']}"

    def rates(row: Mapping[str, Any], where: str) -> ModelRates:
        fields = {key: value for key, value in row.items() if key in _RATE_FIELDS}
        return ModelRates.from_mapping(fields, where=where)

    table: dict[str, _FineTune] = {}
    for family, row in fine_tuned["models"].items():
        where = f"openai_prices.json fine_tuned.models.{family}"
        batch = rates(row["batch"], f"{where}.batch") if "batch" in row else None
        table[family] = _FineTune(family, rates(row, where), batch, source)
    residency = data["data_residency"]
    major, _, minor = str(residency["first_gpt_version"]).partition(".")
    rules = _Residency(
        Decimal(residency["uplift"]),
        date.fromisoformat(residency["released_on_or_after"]),
        (int(major), int(minor or 0)),
    )
    return table, rules


def _fine_tune_rates(base: str) -> _FineTune | None:
    """The published fine-tuned rates for fine-tunes of ``base`` (any snapshot of its family)."""
    family = _BASE_DATE.sub("", base.strip().lower())
    if family.startswith("gpt-35"):
        family = "gpt-3.5" + family[6:]
    return _openai_tables()[0].get(family)


def _residency_rules() -> _Residency:
    return _openai_tables()[1]


def data_residency_region(base_url: object) -> str | None:
    """The OpenAI data-residency region ``base_url`` is a host of (``"eu"``), or None.

    ``base_url`` is a client's ``base_url`` (str or ``httpx.URL``): ``https://eu.api.openai.com/v1``
    gives ``"eu"``; ``https://api.openai.com/v1``, other hosts and None give None.
    """
    if base_url is None:
        return None
    text = str(base_url).strip()
    if not text:
        return None
    from urllib.parse import urlsplit

    try:
        host = urlsplit(text if "//" in text else f"//{text}").hostname
    except ValueError:
        return None
    match = _REGIONAL_HOST.match(host or "")
    return match["region"] if match else None


def _residency_uplift_applies(resolution: _Resolution) -> bool:
    """Whether OpenAI's data-residency uplift applies: the model was released on or after its date.

    Decided by the first of: a snapshot date the name asked for or priced as ends with; the dates
    genai-prices lists for the model (its earliest); its GPT version (gpt-5.4 and later).
    """
    price = resolution.price
    if price is None:
        return False
    rules = _residency_rules()
    for name in (price.model, price.canonical):
        released = _snapshot_date(name)
        if released is not None:
            return released >= rules.released_on_or_after
    info = resolution.info
    if info is not None:
        dates = _clause_dates(info.match)
        if dates:
            return min(dates) >= rules.released_on_or_after
    version = _gpt_version(price.canonical)
    return version is not None and version >= rules.first_version


def _snapshot_date(name: str) -> date | None:
    from datetime import date

    match = _SNAPSHOT_DATE.search(name.strip())
    if match is None:
        return None
    try:
        return date(int(match[1]), int(match[2]), int(match[3]))
    except ValueError:
        return None


def _clause_dates(clause: Any) -> list[date]:
    """Snapshot dates named literally in a genai-prices match clause."""
    from datetime import date

    found: list[date] = []
    for name in _clause_names(clause):
        for year, month, day in _CLAUSE_DATE.findall(name):
            try:
                found.append(date(int(year), int(month), int(day)))
            except ValueError:
                continue
    return found


def _gpt_version(name: str) -> tuple[int, int] | None:
    lowered = name.strip().lower()
    if lowered.startswith("gpt-35"):
        lowered = "gpt-3.5" + lowered[6:]
    match = _GPT_VERSION.match(lowered)
    if match is None:
        return None
    return int(match[1]), int(match[2] or 0)


# -- every book, so new price data reaches them ------------------------------------------------------

_books: weakref.WeakSet[PriceBook] = weakref.WeakSet()
_books_lock = threading.Lock()


def _register_book(book: PriceBook) -> None:
    with _books_lock:
        _books.add(book)


# -- the process-wide book -----------------------------------------------------------------------

_default_book: PriceBook | None = None
_default_lock = threading.Lock()


def default_price_book() -> PriceBook:
    """The process-wide price book (built on first use: genai-prices rates, no overrides)."""
    global _default_book
    book = _default_book
    if book is None:
        with _default_lock:
            if _default_book is None:
                _default_book = PriceBook()
            book = _default_book
    return book


def set_default_price_book(book: PriceBook) -> None:
    """Replace the process-wide price book (``budgetguard.configure`` does this)."""
    global _default_book
    if not isinstance(book, PriceBook):
        raise TypeError(f"expected a PriceBook, got {type(book).__name__}")
    with _default_lock:
        _default_book = book
