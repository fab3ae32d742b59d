"""Problems found in a file, each naming where it is, so an operator can fix it at once."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["PolicyLoadError", "Problem"]


@dataclass(frozen=True, slots=True)
class Problem:
    file: str
    line: int | None
    field: str
    message: str

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        if self.field:
            return f"{where}: {self.field}: {self.message}"
        return f"{where}: {self.message}"


class PolicyLoadError(Exception):
    """A file could not be loaded; `problems` lists every problem found, not just the first."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems) or "policy could not be loaded")
