"""Audit trail of authentication results and denied actions, and mqttgate's log format.

Operators grep and ship these lines (to Loki, Elasticsearch, ...), so each event is one line
with fixed field names. The API takes only the fields it logs, by keyword, with no ``**kwargs``
and no free-form message: a caller cannot hand it a password or a payload by accident.
Client-controlled strings (identity, client id, topic) are truncated and, in the text format,
escaped, so a client cannot forge or flood log lines through them.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Callable
from typing import IO, Any

__all__ = [
    "AUDIT_LOGGER",
    "AuditLog",
    "DenialLimiter",
    "JsonFormatter",
    "TextFormatter",
    "configure_logging",
    "format_remote",
]

AUDIT_LOGGER = "mqttgate.audit"
MAX_FIELD = 256  # characters kept of a client-controlled string
_AUDIT_ATTR = "mqttgate_audit"
_HANDLER_ATTR = "_mqttgate_handler"

Remote = str | tuple[Any, ...] | None


def format_remote(remote: Remote) -> str | None:
    """``host:port`` (``[v6]:port``) from a peername tuple; strings pass through."""
    if remote is None or isinstance(remote, str):
        return remote
    if len(remote) >= 2:
        host, port = str(remote[0]), remote[1]
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return str(remote[0]) if remote else None


def _clip(value: str | None) -> str | None:
    if value is None or len(value) <= MAX_FIELD:
        return value
    return value[:MAX_FIELD] + f"...(+{len(value) - MAX_FIELD} chars)"


class DenialLimiter:
    """Per-connection throttle for repeated identical denial lines.

    A client stuck in a loop publishing to a forbidden topic would otherwise write one audit
    line per packet. The first ``burst`` denials of each (action, topic) are logged; further
    ones are counted and reported as one summary per ``interval`` (and at connection close via
    :meth:`drain`). At most ``max_keys`` distinct pairs are tracked; the rest share one
    overflow bucket, so a client cycling through random topics is throttled too.
    """

    __slots__ = ("_clock", "_entries", "burst", "interval", "max_keys")

    OVERFLOW = ("*", "*")

    def __init__(
        self,
        burst: int = 5,
        interval: float = 60.0,
        max_keys: int = 32,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.burst = burst
        self.interval = interval
        self.max_keys = max_keys
        self._clock = clock
        # (action, topic) -> [logged, suppressed, summary due at]
        self._entries: dict[tuple[str, str], list[float]] = {}

    def admit(self, action: str, topic: str) -> tuple[bool, tuple[str, str], int]:
        """Decide one denial: (log it?, the key it was counted under, suppressed count to
        report now in a summary line, 0 for none)."""
        key = (action, topic)
        entry = self._entries.get(key)
        if entry is None:
            if len(self._entries) >= self.max_keys:
                key = self.OVERFLOW
                entry = self._entries.get(key)
            if entry is None:
                entry = [0, 0, 0.0]
                self._entries[key] = entry
        if entry[0] < self.burst:
            entry[0] += 1
            return True, key, 0
        now = self._clock()
        entry[1] += 1
        if entry[1] == 1 and entry[2] == 0.0:
            entry[2] = now + self.interval
            return False, key, 0
        if now >= entry[2]:
            count = int(entry[1])
            entry[1] = 0
            entry[2] = now + self.interval
            return False, key, count
        return False, key, 0

    def drain(self) -> list[tuple[str, str, int]]:
        """Suppressed counts not yet reported, for the summary lines at connection close."""
        pending = [(a, t, int(e[1])) for (a, t), e in self._entries.items() if e[1]]
        for entry in self._entries.values():
            entry[1] = 0
        return pending


class AuditLog:
    """Writes audit events to the ``mqttgate.audit`` logger, one record per event."""

    __slots__ = ("logger",)

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self.logger = logger or logging.getLogger(AUDIT_LOGGER)

    def _emit(self, level: int, event: str, fields: dict[str, Any]) -> None:
        if not self.logger.isEnabledFor(level):
            return
        fields = {k: _clip(v) if isinstance(v, str) else v for k, v in fields.items()}
        self.logger.log(level, event, extra={_AUDIT_ATTR: {"event": event, **fields}})

    def auth(
        self,
        listener: str,
        remote: Remote,
        identity: str | None,
        client_id: str | None,
        method: str,
        result: str,
    ) -> None:
        """One authentication outcome (``result`` uses the metric label values)."""
        level = logging.INFO if result == "success" else logging.WARNING
        self._emit(
            level,
            "auth",
            {
                "listener": listener,
                "remote": format_remote(remote),
                "identity": identity,
                "client_id": client_id,
                "method": method,
                "result": result,
            },
        )

    def denied(
        self,
        listener: str,
        remote: Remote,
        identity: str | None,
        client_id: str | None,
        action: str,
        topic: str,
        reason: str,
        *,
        limiter: DenialLimiter | None = None,
    ) -> None:
        """One denied action (publish, subscribe, deliver, will, ...) and why.

        With the connection's ``limiter`` repeated identical denials collapse into summaries.
        """
        context = {
            "listener": listener,
            "remote": format_remote(remote),
            "identity": identity,
            "client_id": client_id,
        }
        if limiter is None:
            log_it, key, suppressed = True, (action, topic), 0
        else:
            log_it, key, suppressed = limiter.admit(action, topic)
        if suppressed:
            self._suppressed(context, key, suppressed)
        if log_it:
            self._emit(
                logging.WARNING,
                "denied",
                {**context, "action": action, "topic": topic, "reason": reason},
            )

    def flush_denials(
        self,
        listener: str,
        remote: Remote,
        identity: str | None,
        client_id: str | None,
        limiter: DenialLimiter,
    ) -> None:
        """Report what ``limiter`` still holds back; call when the connection closes."""
        context = {
            "listener": listener,
            "remote": format_remote(remote),
            "identity": identity,
            "client_id": client_id,
        }
        for action, topic, count in limiter.drain():
            self._suppressed(context, (action, topic), count)

    def _suppressed(self, context: dict[str, Any], key: tuple[str, str], count: int) -> None:
        self._emit(
            logging.WARNING,
            "denied_suppressed",
            {**context, "action": key[0], "topic": key[1], "suppressed": count},
        )


def _timestamp(record: logging.LogRecord) -> str:
    seconds = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
    return f"{seconds}.{int(record.msecs):03d}Z"


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``time``, ``level``, ``logger``, then the event's fields."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "time": _timestamp(record),
            "level": record.levelname.lower(),
            "logger": record.name,
        }
        audit = getattr(record, _AUDIT_ATTR, None)
        if isinstance(audit, dict):
            data.update(audit)
        else:
            data["message"] = record.getMessage()
        if record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        return json.dumps(data, default=str)  # ASCII escapes keep U+2028 & co. off the line


def _text_value(value: Any) -> str:
    if value is None:
        return "-"
    text = str(value)
    if text and all(c.isprintable() and c not in ' "=\\' for c in text):
        return text
    return json.dumps(text)  # ASCII-only: no raw control or line-separator characters


class TextFormatter(logging.Formatter):
    """``time LEVEL logger event key=value ...``; values with spaces, quotes or control
    characters are quoted and escaped so every record stays on one line."""

    def format(self, record: logging.LogRecord) -> str:
        head = f"{_timestamp(record)} {record.levelname} {record.name}"
        audit = getattr(record, _AUDIT_ATTR, None)
        if isinstance(audit, dict):
            fields = " ".join(f"{k}={_text_value(v)}" for k, v in audit.items() if k != "event")
            line = f"{head} {audit.get('event')} {fields}"
        else:
            line = f"{head} {record.getMessage()}"
        if record.exc_info:
            line += " exception=" + _text_value(self.formatException(record.exc_info))
        return line.replace("\n", "\\n").replace("\r", "\\r")


def configure_logging(
    level: str | int = "info", fmt: str = "json", *, stream: IO[str] | None = None
) -> logging.Handler:
    """Send every ``mqttgate.*`` log record to ``stream`` (stderr) in ``fmt`` (json | text).

    Only the ``mqttgate`` logger is touched, so an embedding application keeps its own
    logging; calling it again (a reload) replaces the handler instead of adding a second one.
    """
    formatters: dict[str, type[logging.Formatter]] = {"json": JsonFormatter, "text": TextFormatter}
    if fmt not in formatters:
        raise ValueError(f"log format must be json or text, not {fmt!r}")
    if isinstance(level, str):
        numeric = logging.getLevelName(level.upper())
        if not isinstance(numeric, int):
            raise ValueError(f"unknown log level {level!r}")
        level = numeric
    logger = logging.getLogger("mqttgate")
    for old in list(logger.handlers):
        if getattr(old, _HANDLER_ATTR, False):
            logger.removeHandler(old)
            old.close()
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    setattr(handler, _HANDLER_ATTR, True)
    handler.setFormatter(formatters[fmt]())
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False
    return handler
