"""Shared by the examples: a real client when OPENAI_API_KEY is set, else the simulator."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

from openai import AsyncOpenAI, OpenAI

from budgetguard.testing import Simulator


@contextmanager
def openai_client() -> Iterator[OpenAI]:
    if os.environ.get("OPENAI_API_KEY"):
        yield OpenAI()
        return
    with Simulator() as sim:
        yield OpenAI(base_url=sim.base_url, api_key="simulator")


@contextmanager
def async_openai_client() -> Iterator[AsyncOpenAI]:
    if os.environ.get("OPENAI_API_KEY"):
        yield AsyncOpenAI()
        return
    with Simulator() as sim:
        yield AsyncOpenAI(base_url=sim.base_url, api_key="simulator")
