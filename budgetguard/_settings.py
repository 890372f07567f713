"""Process-wide settings: prices, estimation defaults and the loaded configuration."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from budgetguard._config import Config
    from budgetguard._pricing import ModelRates, PriceBook

__all__ = ["Settings", "configure", "current_settings", "reset_settings"]


@dataclass(frozen=True)
class Settings:
    """What ``configure()`` set. ``price_book()`` is built lazily (genai-prices is heavy)."""

    config: Config | None = None
    assume_output_tokens: int | None = None
    safety_margin: float | None = None
    #: Ask the server to count Responses inputs the local estimate cannot see (exact mode).
    exact_estimates: bool = False
    _book: PriceBook | None = field(default=None, repr=False)
    #: The objects ``Budget.named`` handed out under this configuration, by (name, key).
    named: dict[tuple[str, str | None], Any] = field(default_factory=dict, repr=False, compare=False)

    def price_book(self) -> PriceBook:
        if self._book is not None:
            return self._book
        # Looked up on every call: keep the default book at hand after the first import.
        global _default_book
        if _default_book is None:
            from budgetguard._pricing import default_price_book

            _default_book = default_price_book
        return _default_book()


_lock = threading.Lock()
_default_book: Callable[[], PriceBook] | None = None
_settings = Settings()


def current_settings() -> Settings:
    return _settings


def reset_settings() -> None:
    """Forget ``configure()``: default prices, no named budgets (mainly for tests)."""
    global _settings
    with _lock:
        _settings = Settings()


def configure(
    path: str | os.PathLike[str] | None = None,
    *,
    prices: Mapping[str, ModelRates | Mapping[str, Any]] | None = None,
    aliases: Mapping[str, str] | None = None,
    discount: Decimal | float | str | None = None,
    unknown_model: Literal["error", "warn"] | None = None,
    fallback_price: ModelRates | Mapping[str, Any] | None = None,
    assume_output_tokens: int | None = None,
    safety_margin: float | None = None,
    exact_estimates: bool | None = None,
) -> Config | None:
    """Load a YAML configuration and/or set options directly; keyword arguments win.

    With no ``path``, ``$BUDGETGUARD_CONFIG`` is read if set. Returns the loaded config.
    ``exact_estimates=True`` turns on exact mode: Responses requests whose input the local
    estimate cannot see (``previous_response_id``, conversations, files) are counted by the
    server's ``responses.input_tokens.count`` before they are reserved.
    """
    from budgetguard._config import config_from_env, load_config
    from budgetguard._pricing import ModelRates, PriceBook

    global _settings
    config = load_config(Path(path)) if path is not None else config_from_env()

    overrides: dict[str, ModelRates] = {}
    alias_map: dict[str, str] = {}
    book_discount = Decimal(0)
    policy_unknown: Literal["error", "warn"] = "error"
    fallback: ModelRates | None = None
    new = Settings()
    if config is not None:
        overrides.update(config.pricing.models)
        alias_map.update(config.pricing.aliases)
        book_discount = config.pricing.discount
        policy_unknown = config.defaults.unknown_model
        fallback = config.defaults.fallback_price
        new = Settings(
            config=config,
            assume_output_tokens=config.defaults.assume_output_tokens,
            safety_margin=config.defaults.safety_margin,
        )
    for model, rates in (prices or {}).items():
        overrides[model] = (
            rates
            if isinstance(rates, ModelRates)
            else ModelRates.from_mapping(rates, where=f"configure(prices={model!r})")
        )
    alias_map.update(aliases or {})
    if discount is not None:
        book_discount = Decimal(str(discount))
    if unknown_model is not None:
        policy_unknown = unknown_model
    if fallback_price is not None:
        fallback = (
            fallback_price
            if isinstance(fallback_price, ModelRates)
            else ModelRates.from_mapping(fallback_price, where="configure(fallback_price=...)")
        )
    if assume_output_tokens is not None:
        new = replace(new, assume_output_tokens=assume_output_tokens)
    if safety_margin is not None:
        new = replace(new, safety_margin=safety_margin)
    if exact_estimates is not None:
        new = replace(new, exact_estimates=exact_estimates)
    book = PriceBook(
        overrides=overrides,
        aliases=alias_map,
        discount=book_discount,
        unknown_model=policy_unknown,
        fallback=fallback,
    )
    with _lock:
        _settings = replace(new, _book=book, named={})
    return config
