"""Types shared by the tests in tests/ops (fixtures live in conftest.py)."""

from collections.abc import Awaitable, Callable
from typing import Any

RunLoop = Callable[[Awaitable[Any]], Any]
