"""Warnings that point at the user's line, not at budgetguard's or the SDK's internals.

A warning raised on the call path sits under a varying number of frames (the SDK's resource
method, its retry loop, LangChain, ...), so no fixed ``stacklevel`` is right. ``warn`` walks
the stack instead and blames the first frame outside budgetguard and the HTTP/SDK layers.
"""

from __future__ import annotations

import os
import sys
import warnings

__all__ = ["warn"]

_HERE = os.path.dirname(os.path.abspath(__file__)) + os.sep
# Frames in these packages are plumbing between the user's call and budgetguard's hook.
_PLUMBING = tuple(
    os.sep + name + os.sep for name in ("openai", "httpx", "httpx2", "httpcore", "anyio", "asyncio")
)


def warn(message: str, category: type[Warning]) -> None:
    """``warnings.warn(message, category)`` attributed to the user's code."""
    frame = sys._getframe(1)
    level = 2  # 1 would be this function
    while frame is not None:
        filename = frame.f_code.co_filename
        if not filename.startswith(_HERE) and not any(part in filename for part in _PLUMBING):
            break
        frame = frame.f_back  # type: ignore[assignment]
        level += 1
    warnings.warn(message, category, stacklevel=level)
