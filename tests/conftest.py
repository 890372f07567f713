"""Shared fixtures: no network beyond loopback, a fresh simulator, clean global settings."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

import budgetguard as bg
from budgetguard.testing import Simulator

_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex


def _check_address(address: Any) -> None:
    if isinstance(address, tuple) and address:
        host = address[0]
        try:
            loopback = ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = host == "localhost"
        if not loopback:
            raise OSError(f"tests must not use the network: connection to {address!r} blocked")


def _guarded_connect(self: socket.socket, address: Any) -> None:
    _check_address(address)
    _real_connect(self, address)


def _guarded_connect_ex(self: socket.socket, address: Any) -> int:
    _check_address(address)
    return _real_connect_ex(self, address)


@pytest.fixture(autouse=True, scope="session")
def _no_network() -> Iterator[None]:
    """Every test runs with outbound connections limited to loopback (and Unix sockets)."""
    socket.socket.connect = _guarded_connect  # type: ignore[method-assign]
    socket.socket.connect_ex = _guarded_connect_ex  # type: ignore[method-assign]
    yield
    socket.socket.connect = _real_connect  # type: ignore[method-assign]
    socket.socket.connect_ex = _real_connect_ex  # type: ignore[method-assign]


@pytest.fixture(autouse=True)
def _fresh_settings() -> Iterator[None]:
    bg.reset_settings()
    yield
    bg.reset_settings()


@pytest.fixture
def sim() -> Iterator[Simulator]:
    with Simulator() as server:
        yield server


@pytest.fixture
def client(sim: Simulator) -> Iterator[Any]:
    from openai import OpenAI

    with OpenAI(base_url=sim.base_url, api_key="sim", max_retries=0, timeout=20) as c:
        yield c


@pytest.fixture
async def aclient(sim: Simulator) -> AsyncIterator[Any]:
    from openai import AsyncOpenAI

    async with AsyncOpenAI(base_url=sim.base_url, api_key="sim", max_retries=0, timeout=20) as c:
        yield c
