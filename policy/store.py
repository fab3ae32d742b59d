"""The current snapshot, and reloads that fail closed on the old one.

A users file that fails to load must change nothing: connections keep deciding against
the last good snapshot, never against a half-read or empty one.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

from .loader import load_policy
from .model import PolicySnapshot
from .problems import PolicyLoadError

__all__ = ["PolicyStore"]

log = logging.getLogger("mqttgate.policy")


class PolicyStore:
    """Holds `.current`; `reload()` swaps it atomically. Generations count successful
    loads, starting at 1, so a connection can tell snapshots apart cheaply."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        """Load `path` now; raises PolicyLoadError if the first load fails."""
        self.path = Path(path)
        self._lock = threading.Lock()
        self.generation = 1
        self.last_error: PolicyLoadError | None = None
        self.current: PolicySnapshot = load_policy(self.path, generation=self.generation)

    def reload(self) -> bool:
        """Load the file again. False: the old snapshot is kept and `.last_error` says why."""
        with self._lock:
            try:
                snapshot = load_policy(self.path, generation=self.generation + 1)
            except PolicyLoadError as exc:
                self.last_error = exc
                log.error(
                    "users file %s not reloaded, keeping generation %d: %s",
                    self.path,
                    self.generation,
                    "; ".join(str(p) for p in exc.problems),
                )
                return False
            self.generation += 1
            self.last_error = None
            self.current = snapshot
            return True
