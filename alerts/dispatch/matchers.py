"""Label matchers (``name=value``, ``!=``, ``=~``, ``!~``), as in Alertmanager.

Regular expressions are fully anchored. A label an alert lacks matches as the empty string,
so ``unit!=sanitation`` matches alerts without a unit.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

Op = Literal["=", "!=", "=~", "!~"]
_SYNTAX = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*(.*?)\s*$")


@dataclass(frozen=True)
class Matcher:
    """One condition on one label."""

    name: str
    op: Op
    value: str
    _regex: re.Pattern[str] | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.op in ("=~", "!~"):
            object.__setattr__(self, "_regex", re.compile(f"(?:{self.value})\\Z"))

    @classmethod
    def parse(cls, text: str) -> Matcher:
        """``district="Xicheng"`` or ``severity=~critical|major`` (quotes optional)."""
        m = _SYNTAX.match(text)
        if not m:
            raise ValueError(f"not a matcher: {text!r}")
        name, op, value = m.groups()
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = value[1:-1]
        try:
            return cls(name, op, value)  # type: ignore[arg-type]
        except re.error as e:
            raise ValueError(f"bad regular expression in {text!r}: {e}") from e

    def matches(self, labels: Mapping[str, str]) -> bool:
        v = labels.get(self.name, "")
        if self.op == "=":
            return v == self.value
        if self.op == "!=":
            return v != self.value
        assert self._regex is not None
        hit = self._regex.match(v) is not None
        return hit if self.op == "=~" else not hit

    def __str__(self) -> str:
        return f'{self.name}{self.op}"{self.value}"'


def parse_all(texts: Iterable[str]) -> tuple[Matcher, ...]:
    return tuple(Matcher.parse(t) for t in texts)


def match_all(matchers: Iterable[Matcher], labels: Mapping[str, str]) -> bool:
    """True when every matcher matches (so no matchers match everything)."""
    return all(m.matches(labels) for m in matchers)
