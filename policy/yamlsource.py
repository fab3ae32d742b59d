"""YAML with line numbers and duplicate-key detection, for the users file and the config.

PyYAML's loaders keep the last of two equal keys without a word, which would let a second
`alice:` silently replace the first. So mappings are built here, straight from the
parser's events, where duplicates are seen. Composing a node graph first (yaml.compose)
costs several times the parse itself; line numbers are only needed when something is
wrong, so the first pass records none and LineMap re-reads the text on first use.
"""

from __future__ import annotations

import contextlib
import gc
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import yaml

from .problems import PolicyLoadError, Problem

__all__ = ["KeyPath", "LineMap", "field_name", "load_yaml", "load_yaml_text"]

KeyPath = tuple[str | int, ...]

_Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class LineMap:
    """Line numbers (1-based) of the keys and list items of one YAML document. Built on
    first use by parsing the text again, so a file that loads cleanly never pays for it."""

    __slots__ = ("_lines_built", "_text", "file")

    def __init__(self, file: str, text: str | bytes | None = None) -> None:
        self.file = file
        self._text = text
        self._lines_built: dict[KeyPath, int] | None = None if text is not None else {(): 1}

    @property
    def _lines(self) -> dict[KeyPath, int]:
        lines = self._lines_built
        if lines is None:
            assert self._text is not None
            builder = _Builder(self.file, track=True)
            # The first pass succeeded on the same text; keep whatever was seen.
            with contextlib.suppress(yaml.YAMLError):
                builder.run(self._text)
            lines = self._lines_built = builder.lines._lines
            self._text = None
        return lines

    def line(self, key_path: KeyPath) -> int | None:
        """The line of `key_path`; for a path that is not in the document (a missing key),
        the line of its nearest ancestor that is, so a problem points near its place."""
        path = tuple(key_path)
        while True:
            found = self._lines.get(path)
            if found is not None:
                return found
            if not path:
                return None
            path = path[:-1]

    def exact_line(self, key_path: KeyPath) -> int | None:
        return self._lines.get(tuple(key_path))

    def _set(self, key_path: KeyPath, line: int) -> None:
        self._lines[key_path] = line


def field_name(key_path: KeyPath) -> str:
    """`("users", "alice", "permissions", 2, "topic")` -> `users.alice.permissions[2].topic`."""
    out = ""
    for part in key_path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else part
    return out


_STR_TAG = "tag:yaml.org,2002:str"
_NO_KEY: Any = object()
_MAX_CACHED_SCALAR = 64
_END_EVENTS = (yaml.MappingEndEvent, yaml.SequenceEndEvent)


class _Frame:
    """A mapping or sequence being built; `key` is the pending key of a mapping."""

    __slots__ = ("anchor", "container", "is_list", "key", "line", "path", "skip")

    def __init__(
        self,
        container: dict[Any, Any] | list[Any],
        path: KeyPath,
        anchor: str | None,
        line: int,
    ) -> None:
        self.container = container
        self.path = path
        self.anchor = anchor
        self.line = line
        self.is_list = isinstance(container, list)
        self.key: Any = _NO_KEY
        self.skip = False


class _Builder:
    """Builds Python data from parser events. With `track`, also records the line of every
    key and list item and reports duplicates with lines; without, it only notices them.

    Anchors are registered when their value is complete, so a recursive alias is refused
    rather than turned into a cycle; an alias shares the anchored object (no expansion).
    """

    def __init__(self, file: str, track: bool) -> None:
        self.file = file
        self.track = track
        self.lines = LineMap(file)
        self.problems: list[Problem] = []
        self.duplicates = False
        self.anchors: dict[str, Any] = {}
        self.stack: list[_Frame] = []
        self.root: Any = _NO_KEY
        self.documents = 0
        self._resolver = yaml.resolver.Resolver()
        self._constructor = yaml.constructor.SafeConstructor()
        self._plain_cache: dict[str, Any] = {}

    def fail(self, line: int | None, path: KeyPath, message: str) -> PolicyLoadError:
        return PolicyLoadError([Problem(self.file, line, field_name(path), message)])

    def scalar(self, event: yaml.ScalarEvent) -> Any:
        tag = event.tag
        value: str = event.value
        if tag is None or tag == "!":
            if not event.implicit[0]:
                return value  # quoted: always a string
            cached = self._plain_cache.get(value, _NO_KEY)
            if cached is not _NO_KEY:
                return cached
            tag = self._resolver.resolve(  # type: ignore[no-untyped-call]
                yaml.ScalarNode, value, event.implicit
            )
            result: Any = value if tag == _STR_TAG else self._construct(tag, event)
            if len(value) <= _MAX_CACHED_SCALAR:
                self._plain_cache[value] = result
            return result
        if tag == _STR_TAG:
            return value
        return self._construct(tag, event)

    def _construct(self, tag: str, event: yaml.ScalarEvent) -> Any:
        start: Any = event.start_mark
        end: Any = event.end_mark
        node = yaml.ScalarNode(tag, event.value, start, end, event.style)
        return self._constructor.construct_object(node, deep=True)

    def child_path(self) -> KeyPath:
        """Key path of the value about to start (tracking mode only)."""
        if not self.stack:
            return ()
        top = self.stack[-1]
        if top.is_list:
            return (*top.path, len(top.container))
        if top.key is _NO_KEY:
            return (*top.path, "<key>")
        return (*top.path, top.key if isinstance(top.key, str) else str(top.key))

    def complete(self, value: Any, event: Any) -> None:
        """Attach a finished value to its parent."""
        stack = self.stack
        if not stack:
            self.root = value
            return
        top = stack[-1]
        container: Any = top.container
        if top.is_list:
            if self.track and type(event) not in _END_EVENTS:
                self.lines._set((*top.path, len(container)), event.start_mark.line + 1)
            container.append(value)
            return
        if top.key is _NO_KEY:
            if isinstance(value, (dict, list)):
                value = str(value)
            top.key = value
            if value in container:
                top.skip = True
                self.duplicates = True
                if self.track:
                    self._duplicate(top, value, event.start_mark.line + 1)
            elif self.track:
                # Mapping keys are always text in key paths; ints there mean list indices.
                part = value if isinstance(value, str) else str(value)
                self.lines._set((*top.path, part), event.start_mark.line + 1)
            return
        if top.skip:
            top.skip = False
        else:
            container[top.key] = value
        top.key = _NO_KEY

    def _duplicate(self, frame: _Frame, key: Any, line: int) -> None:
        child = (*frame.path, key if isinstance(key, str) else str(key))
        first = self.lines.exact_line(child)
        self.problems.append(
            Problem(
                self.file,
                line,
                field_name(child),
                f"duplicate key {key!r} (first defined on line {first})",
            )
        )

    def start(self, container: dict[Any, Any] | list[Any], event: Any) -> None:
        if self.track:
            line = event.start_mark.line + 1
            path = self.child_path()
            if self.stack and self.stack[-1].is_list:
                self.lines._set(path, line)
            self.stack.append(_Frame(container, path, event.anchor, line))
        else:
            self.stack.append(_Frame(container, (), event.anchor, 0))

    def end(self, event: Any) -> None:
        frame = self.stack.pop()
        if frame.anchor is not None:
            self.anchors[frame.anchor] = frame.container
        self.complete(frame.container, event)

    def run(self, text: str | bytes) -> Any:
        loader = _Loader(text)
        try:
            return self._run(loader.get_event)
        finally:
            loader.dispose()

    def _run(self, next_event: Callable[[], Any]) -> Any:
        # The hot loop of a big file: events are pulled straight from the parser (no
        # generator), and a scalar attached to a mapping or list is handled inline.
        scalar_event = yaml.ScalarEvent
        mapping_start = yaml.MappingStartEvent
        mapping_end = yaml.MappingEndEvent
        sequence_start = yaml.SequenceStartEvent
        sequence_end = yaml.SequenceEndEvent
        plain_cache = self._plain_cache
        stack = self.stack
        track = self.track
        while True:
            event = next_event()
            if event is None:
                break
            cls = type(event)
            if cls is scalar_event:
                if event.tag is None and not event.implicit[0] and event.anchor is None:
                    value = event.value  # quoted, untagged: a string
                else:
                    value = (
                        plain_cache.get(event.value, _NO_KEY)
                        if event.tag is None and event.implicit[0]
                        else _NO_KEY
                    )
                    if value is _NO_KEY:
                        value = self.scalar(event)
                    if event.anchor is not None:
                        self.anchors[event.anchor] = value
                if stack and not track:
                    top = stack[-1]
                    if top.is_list:
                        top.container.append(value)  # type: ignore[union-attr]
                        continue
                    key = top.key
                    if key is not _NO_KEY:
                        if top.skip:
                            top.skip = False
                        else:
                            top.container[key] = value
                        top.key = _NO_KEY
                        continue
                    if value not in top.container:
                        top.key = value  # a new key; complete() handles duplicates
                        continue
                self.complete(value, event)
            elif cls is mapping_start:
                self.start({}, event)
            elif cls is mapping_end or cls is sequence_end:
                self.end(event)
            elif cls is sequence_start:
                self.start([], event)
            elif cls is yaml.AliasEvent:
                if event.anchor not in self.anchors:
                    raise self.fail(
                        event.start_mark.line + 1,
                        self.child_path() if self.track else (),
                        f"alias *{event.anchor} names no complete anchor (recursive alias?)",
                    )
                self.complete(self.anchors[event.anchor], event)
            elif cls is yaml.DocumentStartEvent:
                self.documents += 1
                if self.documents > 1:
                    raise self.fail(
                        event.start_mark.line + 1, (), "expected a single YAML document"
                    )
        return None if self.root is _NO_KEY else self.root


@contextlib.contextmanager
def paused_gc() -> Iterator[None]:
    """Pause the cyclic collector. Loading a big file allocates millions of objects that
    hold no cycles; with the collector on, its full passes over an ever larger heap make
    the load time grow faster than the file."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _build(text: str | bytes, file: str, track: bool) -> _Builder:
    builder = _Builder(file, track)
    try:
        builder.root = builder.run(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        detail = exc.problem or exc.context or "syntax error"
        raise PolicyLoadError([Problem(file, line, "", f"invalid YAML: {detail}")]) from None
    except yaml.YAMLError as exc:
        raise PolicyLoadError([Problem(file, None, "", f"invalid YAML: {exc}")]) from None
    return builder


def load_yaml_text(text: str | bytes, file: str) -> tuple[Any, LineMap]:
    """Parse `text` as one YAML document named `file` in problems."""
    with paused_gc():
        builder = _build(text, file, track=False)
        if builder.duplicates:
            builder = _build(text, file, track=True)
            raise PolicyLoadError(builder.problems)
    return builder.root, LineMap(file, text)


def load_yaml(path: str | os.PathLike[str]) -> tuple[Any, LineMap]:
    """Read and parse a YAML file. Raises PolicyLoadError (problems with file, line and
    field) when it cannot be read, is not valid YAML, or repeats a key in a mapping."""
    file = str(path)
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise PolicyLoadError(
            [Problem(file, None, "", f"cannot read file: {exc.strerror or exc}")]
        ) from None
    return load_yaml_text(data, file)
