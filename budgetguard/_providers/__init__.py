"""One module per SDK: the wrappers around its choke points and its wire format.

Only these modules know SDK internals. Each registers its installer with
``budgetguard._context.on_first_scope``, so entering the first scope hooks the SDKs (openai is
imported then; optional SDKs are hooked only once the program imports them).
"""

from __future__ import annotations

from budgetguard import _context
from budgetguard._providers import anthropic, openai, unmetered

__all__ = ["instrument", "uninstrument", "unmetered"]


def instrument() -> None:
    """Install the hooks now (idempotent, thread-safe). Entering any scope does this for you."""
    openai.instrument()
    anthropic.install()
    unmetered.watch()


def uninstrument() -> None:
    """Remove the hooks and restore the SDKs exactly as they were (entering a scope installs
    them again)."""
    openai.uninstall()
    anthropic.uninstall()
    _context.uninstalled()
