"""YAML with line numbers and duplicate-key detection, for the users file and the config.

PyYAML's loaders keep the last of two equal keys without a word, which would let a second
`alice:` silently replace the first. So the document is composed into nodes and the
mappings are built here, where duplicates are seen and every key's line is recorded.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from .problems import PolicyLoadError, Problem

__all__ = ["KeyPath", "LineMap", "field_name", "load_yaml", "load_yaml_text"]

KeyPath = tuple[str | int, ...]

_Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
MAX_DEPTH = 64
MAX_NODES = 20_000_000  # aliases can repeat subtrees; bound the expansion


class LineMap:
    """Line numbers (1-based) of the keys and list items of one YAML document."""

    __slots__ = ("_lines", "file")

    def __init__(self, file: str) -> None:
        self.file = file
        self._lines: dict[KeyPath, int] = {(): 1}

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


class _Builder:
    def __init__(self, loader: Any, file: str) -> None:
        self.loader = loader
        self.file = file
        self.lines = LineMap(file)
        self.problems: list[Problem] = []
        self.nodes = 0

    def build(self, node: yaml.Node, path: KeyPath, depth: int) -> Any:
        self.nodes += 1
        if depth > MAX_DEPTH or self.nodes > MAX_NODES:
            raise PolicyLoadError(
                [
                    Problem(
                        self.file,
                        node.start_mark.line + 1,
                        field_name(path),
                        "document is nested too deeply or expands too far (recursive alias?)",
                    )
                ]
            )
        if isinstance(node, yaml.MappingNode):
            result: dict[Any, Any] = {}
            for key_node, value_node in node.value:
                key = self.build(key_node, path, depth + 1)
                if isinstance(key, (dict, list)):
                    key = str(key)
                # Mapping keys are always text in key paths; ints there mean list indices.
                part = key if isinstance(key, str) else str(key)
                child_path = (*path, part)
                line = key_node.start_mark.line + 1
                if key in result:
                    first = self.lines.exact_line(child_path)
                    self.problems.append(
                        Problem(
                            self.file,
                            line,
                            field_name(child_path),
                            f"duplicate key {key!r} (first defined on line {first})",
                        )
                    )
                    continue
                self.lines._set(child_path, line)
                result[key] = self.build(value_node, child_path, depth + 1)
            return result
        if isinstance(node, yaml.SequenceNode):
            items: list[Any] = []
            for index, item in enumerate(node.value):
                child_path = (*path, index)
                self.lines._set(child_path, item.start_mark.line + 1)
                items.append(self.build(item, child_path, depth + 1))
            return items
        return self.loader.construct_object(node, deep=True)


def load_yaml_text(text: str | bytes, file: str) -> tuple[Any, LineMap]:
    """Parse `text` as one YAML document named `file` in problems."""
    loader = _Loader(text)
    try:
        try:
            node = loader.get_single_node()
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            line = mark.line + 1 if mark is not None else None
            detail = exc.problem or exc.context or "syntax error"
            raise PolicyLoadError([Problem(file, line, "", f"invalid YAML: {detail}")]) from None
        except yaml.YAMLError as exc:
            raise PolicyLoadError([Problem(file, None, "", f"invalid YAML: {exc}")]) from None
        builder = _Builder(loader, file)
        if node is None:
            return None, builder.lines
        try:
            data = builder.build(node, (), 0)
        except yaml.YAMLError as exc:
            raise PolicyLoadError([Problem(file, None, "", f"invalid YAML: {exc}")]) from None
        if builder.problems:
            raise PolicyLoadError(builder.problems)
        return data, builder.lines
    finally:
        loader.dispose()


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
