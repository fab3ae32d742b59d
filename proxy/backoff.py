"""Slow down password guessing and cap connections per identity.

Both classes are plain, loop-free bookkeeping so the server can consult them on the hot path
without awaiting anything; the caller turns a delay into ``await asyncio.sleep(delay)``.
"""

from __future__ import annotations

import ipaddress
import time
from collections import OrderedDict
from collections.abc import Callable

__all__ = ["AuthBackoff", "PerUserLimiter", "address_key"]


def address_key(address: str) -> str:
    """The bucket a remote address is counted in.

    An IPv6 client usually owns a whole /64, so counting single addresses would let it rotate
    through 2**64 fresh buckets; IPv4-mapped IPv6 addresses count as their IPv4 address so a
    dual-stack listener does not give one client two buckets. Anything that is not an IP
    address (a Unix socket path, a test label) is its own bucket.
    """
    try:
        ip = ipaddress.ip_address(address.strip("[]").split("%", 1)[0])
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


class _Entry:
    __slots__ = ("failures", "last")

    def __init__(self, last: float) -> None:
        self.failures = 0
        self.last = last


class AuthBackoff:
    """Exponential delay for remote addresses that keep failing authentication.

    A client that mistypes a password a few times (fewer than ``threshold`` failures inside
    ``window`` seconds) is never delayed; from the ``threshold``-th failure on, every further
    attempt waits ``base_delay * 2**(failures - threshold)`` seconds, capped at ``max_delay``,
    so a brute-force run gets exponentially slower while costing the proxy only a timer.
    Entries expire ``window`` seconds after the last failure, and at most ``max_entries``
    addresses are remembered (least recently failing evicted first) so a distributed attack
    cannot grow memory without bound.
    """

    __slots__ = (
        "_clock",
        "_entries",
        "base_delay",
        "max_delay",
        "max_entries",
        "threshold",
        "window",
    )

    def __init__(
        self,
        threshold: int = 5,
        base_delay: float = 0.5,
        max_delay: float = 30.0,
        window: float = 300.0,
        max_entries: int = 100_000,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if threshold < 1 or max_entries < 1:
            raise ValueError("threshold and max_entries must be at least 1")
        if base_delay < 0 or max_delay < 0 or window <= 0:
            raise ValueError("delays must be >= 0 and window > 0")
        self.threshold = threshold
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.window = window
        self.max_entries = max_entries
        self._clock = clock
        self._entries: OrderedDict[str, _Entry] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def _live(self, key: str, now: float) -> _Entry | None:
        entry = self._entries.get(key)
        if entry is not None and now - entry.last > self.window:
            del self._entries[key]
            return None
        return entry

    def delay_for(self, address: str) -> float:
        """Seconds to wait before answering this address's next CONNECT (or its failure)."""
        entry = self._live(address_key(address), self._clock())
        if entry is None or entry.failures < self.threshold:
            return 0.0
        exponent = entry.failures - self.threshold
        if exponent >= 64:  # 2**64 * any sane base_delay is far beyond max_delay
            return self.max_delay
        return float(min(self.max_delay, self.base_delay * (2**exponent)))

    def failure(self, address: str) -> None:
        """Record one failed authentication from ``address``."""
        key = address_key(address)
        now = self._clock()
        entry = self._live(key, now)
        if entry is None:
            entry = _Entry(now)
            self._entries[key] = entry
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
        else:
            self._entries.move_to_end(key)
        entry.failures += 1
        entry.last = now

    def success(self, address: str) -> None:
        """Forget the failures of ``address``: it proved it knows a credential."""
        self._entries.pop(address_key(address), None)


class PerUserLimiter:
    """Counts live connections per identity and refuses those above ``max_per_user``.

    One leaked credential must not let its holder exhaust the proxy's connection budget (or
    the broker's) for every other user. ``max_per_user=None`` only counts. Identities with no
    live connection are not kept, so memory follows the number of connected users.
    """

    __slots__ = ("_counts", "max_per_user")

    def __init__(self, max_per_user: int | None) -> None:
        if max_per_user is not None and max_per_user < 1:
            raise ValueError("max_per_user must be at least 1 (or None for no limit)")
        self.max_per_user = max_per_user
        self._counts: dict[str, int] = {}

    def count(self, identity: str) -> int:
        """Live connections of ``identity``."""
        return self._counts.get(identity, 0)

    def acquire(self, identity: str) -> bool:
        """Take a slot for a new connection; False means refuse it (nothing was taken)."""
        current = self._counts.get(identity, 0)
        if self.max_per_user is not None and current >= self.max_per_user:
            return False
        self._counts[identity] = current + 1
        return True

    def release(self, identity: str) -> None:
        """Give back the slot of a closed connection; releasing more than acquired is ignored."""
        current = self._counts.get(identity, 0)
        if current <= 1:
            self._counts.pop(identity, None)
        else:
            self._counts[identity] = current - 1
