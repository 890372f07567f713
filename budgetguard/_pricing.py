"""Model name -> rates -> exact cost.

Where rates come from, first match wins:

1. **Overrides** you configure (``PriceBook(overrides=...)``, ``pricing.models`` in YAML), by exact
   model name (then case-insensitively).
2. **Aliases** (``"my-azure-deployment" -> "gpt-4o"``), followed step by step; after each step the
   name is looked up again, so aliases may chain and may point at overrides. A loop is a
   ``ConfigError`` when the book is built.
3. **genai-prices**, from the data bundled with the installed package (the version is in every
   ``ResolvedPrice.source``, e.g. ``"genai-prices 0.2.3"``). Names are matched by genai-prices' own
   rules (exact names, dated snapshots it lists, ``starts_with`` families, compact ``-20251211``
   dates), against provider ``openai`` first. A ``provider/`` prefix is stripped: ``openai/`` and
   ``azure/`` are priced as OpenAI (Azure OpenAI's global deployments list OpenAI's prices; put a
   regional uplift in an override), any other genai-prices provider id (``deepseek/...``) at that
   provider. A name OpenAI does not know is last matched by genai-prices' provider detection
   (``deepseek-chat`` through an OpenAI-compatible server gets DeepSeek's prices); the provider is
   then named in ``source``. Prices genai-prices dates (a change on a given day) are re-read on
   that day.
4. **Dated snapshots** genai-prices does not list (``gpt-5-mini-2031-01-01``) are priced as the
   undated model; a snapshot it does list with its own price (``gpt-4o-2024-05-13``) keeps it.
5. **Fine-tunes** ``ft:BASE:org:name:id``: genai-prices' own fine-tuned rates when it has them
   (``ft:gpt-4o-2024-*``, ``ft:gpt-4o-mini-2024-*``, ``ft:gpt-3.5-turbo*``, ``ft:gpt-4-0*``; OpenAI
   bills fine-tuned models at their own, higher rates). Otherwise BASE's rates, with an
   ``UnknownModelWarning`` once per name: the fine-tuned rates genai-prices lists are 1.5x to 6x
   their base model's, so this undercounts until you add an override for the ``ft:`` name.
6. Otherwise the model is **unknown**: ``UnknownModelError`` naming it with close known names
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
* ``batch=True``: genai-prices' batch variant when the model has one, else 50% of standard.
  Batch wins over a service tier.
* ``discount`` (a fraction, ``Decimal("0.15")`` = 15% off) applies to everything, overrides too.

Money is exact: rates are turned into integers at a per-model scale, token counts multiply them
as integers, and the sum becomes one ``Decimal``; no float is involved and the caller's decimal
context (precision, rounding) cannot change a result.

No network, ever: budgetguard reads only the price data bundled inside the installed genai-prices
(upgrade the package to update prices). It never starts genai-prices' ``UpdatePrices`` and does not
read a snapshot someone else installed with it, so a run's prices cannot change under it.
genai-prices itself is imported on the first lookup, not at ``import budgetguard``.

Per-call tool fees (web search, file search), per-request fees and rates per audio hour are not in
token usage and are not priced here.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Context, Decimal, InvalidOperation
from time import time as _wall_time
from typing import TYPE_CHECKING, Any, Final, Literal

from budgetguard._errors import BudgetGuardWarning, ConfigError, UnknownModelError, UnknownModelWarning
from budgetguard._usage import TokenCounts, Usage
from budgetguard._warnings import warn

if TYPE_CHECKING:
    from datetime import datetime

__all__ = [
    "PRIORITY_MULTIPLIER",
    "ModelRates",
    "PriceBook",
    "ResolvedPrice",
    "default_price_book",
    "set_default_price_book",
]

#: Price factor for ``service_tier="priority"`` (and ``"fast"``) when genai-prices has no
#: priority price for the model. See the module docstring for why 2.
PRIORITY_MULTIPLIER: Final = Decimal(2)
_HALF: Final = Decimal("0.5")
_ONE: Final = Decimal(1)
_ZERO: Final = Decimal(0)
_PER_TOKENS: Final = 6  # rates are per 10**6 tokens
_PICO_EXPONENT: Final = 12  # a picodollar is 10**-12 USD, the unit ledgers count in

# Exact arithmetic when scaling rates, independent of the caller's decimal context.
_EXACT = Context(prec=200)

_STANDARD_TIERS: Final = frozenset({"", "default", "auto", "standard"})
_PRIORITY_TIERS: Final = frozenset({"priority", "fast"})
# Prefixes that name OpenAI itself (OpenRouter/LiteLLM style ``openai/gpt-4o``, Azure OpenAI).
_OPENAI_PREFIXES: Final = frozenset({"openai", "azure", "azure_openai"})
_DATED_SNAPSHOT = re.compile(r"^(?P<base>.+?)-\d{4}-\d{2}-\d{2}$")
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
)
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

    def scaled(self, factor: Decimal) -> ModelRates:
        """These rates times ``factor`` (exactly), long-context tiers included."""
        values: dict[str, Any] = {}
        for name in _RATE_FIELDS:
            value = getattr(self, name)
            values[name] = None if value is None else _EXACT.multiply(value, factor)
        if self.long_context is not None:
            values["long_context_threshold"] = self.long_context_threshold
            values["long_context"] = self.long_context.scaled(factor)
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


# The three private records below are plain slotted classes, not dataclasses: same attribute
# speed, and building a dataclass costs about a millisecond of ``import budgetguard``.


class _Tier:
    """Integer rates: USD per token = value * 10**exponent of the owning ``_Entry``."""

    __slots__ = (
        "cache_write", "cache_write_1h", "cached", "input", "input_audio", "input_image",
        "long", "output", "output_audio", "output_image", "threshold", "web_search",
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
        self.input_audio = input_audio
        self.output_audio = output_audio
        self.input_image = input_image
        self.output_image = output_image
        self.threshold = threshold
        self.long = long


class _Resolution:
    __slots__ = ("expires", "hint", "info", "price", "warns")

    def __init__(self, price: ResolvedPrice | None, info: Any, expires: float, hint: str = "") -> None:
        self.price = price
        self.info = info  # genai-prices ModelInfo when the rates came from it (for tier variants)
        self.expires = expires  # _wall_time() after which date-dependent genai-prices rates are re-read
        self.hint = hint  # why it is unknown, when price is None
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
    not pick the fallback over a known request model.
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

    @property
    def discount(self) -> Decimal:
        return self._discount

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
        ``service_tier`` the response reports and ``batch=True`` for Batch API results. Raises
        ``UnknownModelError`` for an unknown model unless the book falls back (see the module doc).
        """
        entry = self._entry(model, service_tier, batch)
        tier = entry.tier
        if tier is None:
            raise UnknownModelError(entry.model, entry.hint)
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
        # A negative count anywhere makes the bitwise OR negative: one comparison for all ten.
        if (
            prompt | completion | cached | cache_write | cache_write_1h | audio_in | image_in | audio_out
            | image_out | searches
        ) < 0:  # fmt: skip
            raise ValueError(f"usage has a negative token count: {usage!r}")
        while tier.long is not None and tier.threshold is not None and prompt > tier.threshold:
            tier = tier.long
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
        )
        return _money(total, entry.exponent)

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
        return _money(low, exponent), _money(high, exponent)

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
        shift = exponent + _PICO_EXPONENT
        scale: int = 10 ** abs(shift)
        return high * scale if shift >= 0 else -(-high // scale)  # rounded up

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
        input_max = max(tier.input, tier.cache_write, tier.cache_write_1h)
        output_max = tier.output
        if audio:
            input_max = max(input_max, tier.input_audio)
            output_max = max(output_max, tier.output_audio)
        if images:
            input_max = max(input_max, tier.input_image)
            output_max = max(output_max, tier.output_image)
        low = prompt_tokens * min(tier.input, tier.cached)
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
            price, info, expires = found
            if price.model != model:
                price = ResolvedPrice(model, price.canonical, price.rates, price.source)
            return _Resolution(price, info, expires)
        if self._unknown_model == "warn":
            assert self._fallback is not None
            return _Resolution(ResolvedPrice(model, model, self._fallback, "fallback"), None, _NEVER)
        return _Resolution(None, None, _NEVER, self._unknown_hint(chain, not_token_priced))

    def _lookup(self, name: str) -> tuple[tuple[ResolvedPrice, Any, float] | None, list[str], str | None]:
        """Resolve ``name`` without the unknown-model policy: (found, name chain, why unpriced)."""
        chain = [name]
        provider: str | None = None
        seen: set[str] = set()
        while name and name not in seen:
            seen.add(name)
            key = name if name in self._overrides else self._overrides_lower.get(name.lower())
            if key is not None:
                override = ResolvedPrice(name, key, self._overrides[key], "override")
                return (override, None, _NEVER), chain, None
            target = self._aliases.get(name, self._aliases_lower.get(name.lower()))
            if target is not None:
                name = target.strip()
                chain.append(name)
                continue
            prefix, slash, rest = name.partition("/")
            if slash and rest:
                if prefix.lower() in _OPENAI_PREFIXES:
                    name = rest
                    continue
                if prefix.lower() in _genai().provider_ids:
                    provider = prefix.lower()
                    name = rest
                    continue
            break
        if not name:
            return None, chain, None

        data = _genai()
        not_token_priced: str | None = None
        hit = data.find(name, provider)
        if hit is not None:
            info, provider_id, own = hit
            now = _utc_now()
            rates = _rates_from_genai(info.get_prices(now))
            if rates is not None:
                source = data.source if provider_id == "openai" else f"{data.source} ({provider_id})"
                price = ResolvedPrice(name, info.id, rates, source)
                return (price, info if own else None, _expiry(info, now)), chain, None
            not_token_priced = info.id

        base = _fine_tune_base(name)
        if base is not None:
            found, base_chain, _ = self._lookup(base)
            if found is not None:
                price, _info, expires = found
                source = f"{price.source}; {_FINE_TUNE_NOTE}"
                price = ResolvedPrice(name, price.canonical, price.rates, source)
                # Tier variants belong to the base model's standard service, not to fine-tunes.
                return (price, None, expires), chain + base_chain[1:], None
        snapshot = _DATED_SNAPSHOT.match(name)
        if snapshot is not None:
            found, base_chain, _ = self._lookup(snapshot["base"])
            if found is not None:
                price, info, expires = found
                note = f"undated {price.canonical} rates for an unlisted snapshot"
                price = ResolvedPrice(name, price.canonical, price.rates, f"{price.source}; {note}")
                return (price, info, expires), chain, None
        return None, chain, not_token_priced

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
            return self._variant(resolution, {"processing": "batch"}) or price.rates.scaled(_HALF)
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
    # ft:BASE:org:name:id (OpenAI) -> BASE
    if not name.lower().startswith("ft:"):
        return None
    base = name[3:].split(":", 1)[0].strip()
    return base or None


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
            threshold=level.long_context_threshold,
            long=None if level.long_context is None else build(level.long_context),
        )

    return build(rates), -(places + _PER_TOKENS)


def _scaled_int(value: Decimal, places: int) -> int:
    # Exact: ``places`` is at least the number of decimal places of every rate it is used on.
    return int(_EXACT.scaleb(value, places))


def _money(units: int, exponent: int) -> Decimal:
    """``units * 10**exponent`` dollars as a Decimal, trailing zeros dropped (but no E+ notation)."""
    if units == 0:
        return _ZERO
    while exponent < 0 and units % 10 == 0:
        units //= 10
        exponent += 1
    # Exact whatever the caller's decimal context: the int converts exactly and _EXACT scales it.
    return Decimal(units).scaleb(exponent, _EXACT)


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


class _GenaiData:
    """The bundled genai-prices data, the lookups we need from it, and its version."""

    def __init__(self) -> None:
        import genai_prices
        from genai_prices.data import providers
        from genai_prices.data_snapshot import DataSnapshot

        # Our own snapshot of the bundled data: a snapshot fetched by genai_prices.UpdatePrices
        # (which lives in genai_prices.data_snapshot) is never consulted.
        self._snapshot = DataSnapshot(providers=providers, from_auto_update=False)
        self.version: str = genai_prices.__version__
        self.source = f"genai-prices {self.version}"
        self.provider_ids = frozenset(provider.id for provider in providers)
        self._providers = {provider.id: provider for provider in providers}
        names: set[str] = set()
        openai = self._providers.get("openai")
        for info in openai.models if openai is not None else ():
            names.add(info.id.lower())
            names.update(_clause_names(info.match))
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
                _genai_data = _GenaiData()
            data = _genai_data
    return data


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
