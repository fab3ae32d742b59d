"""Run the asyncio building blocks on both loops the proxy supports: asyncio and uvloop."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from tests.ops.support import RunLoop


@pytest.fixture(params=["asyncio", "uvloop"])
def run(request: pytest.FixtureRequest) -> RunLoop:
    """``run(coro)``: run it to completion on a fresh loop of the parametrised kind (20 s cap)."""
    if request.param == "uvloop":
        uvloop = pytest.importorskip("uvloop")
        factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    else:
        factory = asyncio.SelectorEventLoop

    def run_on_loop(coro: Awaitable[Any]) -> Any:
        with asyncio.Runner(loop_factory=factory) as runner:
            return runner.run(asyncio.wait_for(coro, 20))

    return run_on_loop
