"""Process-wide settings: prices, estimation defaults and the loaded configuration."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from budgetguard._errors import ConfigError

if TYPE_CHECKING:
    from budgetguard._config import Config
    from budgetguard._pricing import ModelRates, PriceBook

__all__ = ["Settings", "active_config", "configure", "current_settings", "reset_settings"]


@dataclass(frozen=True)
class Settings:
    """What ``configure()`` set. ``price_book()`` is built lazily (genai-prices is heavy)."""

    config: Config | None = None
    assume_output_tokens: int | None = None
    safety_margin: float | None = None
    #: Ask the server to count Responses inputs the local estimate cannot see (exact mode).
    exact_estimates: bool = False
    _book: PriceBook | None = field(default=None, repr=False)
    #: The keyword options of the ``configure()`` call that made these settings.
    options: Mapping[str, object] = field(default_factory=dict, repr=False, compare=False)

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
    Keyword arguments are validated by the readers of the YAML keys they stand for
    (``prices`` is ``pricing.models``, ``safety_margin`` is ``defaults.safety_margin``, ...):
    a value the file would refuse raises the same ``ConfigError`` here, before anything changes.
    ``exact_estimates=True`` turns on exact mode: Responses requests whose input the local
    estimate cannot see (``previous_response_id``, conversations, files) are counted by the
    server's ``responses.input_tokens.count`` before they are reserved.
    A file with ``telemetry: {otel: true}`` switches on OpenTelemetry (``enable_telemetry()``).
    """
    from budgetguard._config import config_from_env, load_config

    global _settings
    config = load_config(Path(path)) if path is not None else config_from_env()
    options: dict[str, object] = {
        "prices": prices,
        "aliases": aliases,
        "discount": discount,
        "unknown_model": unknown_model,
        "fallback_price": fallback_price,
        "assume_output_tokens": assume_output_tokens,
        "safety_margin": safety_margin,
        "exact_estimates": exact_estimates,
    }
    new = _build(config, {name: value for name, value in options.items() if value is not None})
    if config is not None and config.telemetry.otel is not None:  # telemetry: {otel: ...}
        from budgetguard._telemetry import disable_telemetry, enable_telemetry

        if config.telemetry.otel:
            enable_telemetry()
        else:
            disable_telemetry()
    with _lock:
        _settings = new
    if config is not None and config.pricing.auto_update:  # pricing: {auto_update: true}
        from budgetguard._pricing import start_price_updates

        start_price_updates()  # a daemon thread, at most once a day; never on a call's path
    return config


def _build(config: Config | None, options: Mapping[str, object]) -> Settings:
    """Settings from a configuration and ``configure()`` keyword options (validated here)."""
    from budgetguard._config import check_options
    from budgetguard._pricing import PriceBook

    values = check_options(options, config=config)
    defaults = config.defaults if config is not None else None
    pricing = config.pricing if config is not None else None
    book = PriceBook(
        overrides={**(pricing.models if pricing else {}), **values.get("prices", {})},
        aliases={**(pricing.aliases if pricing else {}), **values.get("aliases", {})},
        discount=values.get("discount", pricing.discount if pricing else Decimal(0)),
        unknown_model=values.get("unknown_model", defaults.unknown_model if defaults else "error"),
        fallback=values.get("fallback_price", defaults.fallback_price if defaults else None),
    )
    return Settings(
        config=config,
        assume_output_tokens=values.get(
            "assume_output_tokens", defaults.assume_output_tokens if defaults else None
        ),
        safety_margin=values.get("safety_margin", defaults.safety_margin if defaults else None),
        exact_estimates=values.get("exact_estimates", False),
        _book=book,
        options=dict(options),
    )


def active_config() -> Config:
    """The configuration named budgets come from: the one ``configure()`` loaded, else the file
    ``$BUDGETGUARD_CONFIG`` names, loaded once (with the keyword options of an earlier
    ``configure()`` call kept, as if it had read the file). Raises ``ConfigError`` when there is
    neither, naming both ways to give one.
    """
    global _settings
    config = _settings.config
    if config is not None:
        return config
    from budgetguard._config import CONFIG_ENV, config_from_env

    with _lock:
        if _settings.config is not None:  # another thread loaded it
            return _settings.config
        config = config_from_env()
        if config is None:
            raise ConfigError(
                "no configuration: call budgetguard.configure(path) or set the "
                f"${CONFIG_ENV} environment variable to a YAML file"
            )
        _settings = _build(config, _settings.options)
    return config
