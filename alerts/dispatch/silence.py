"""Silences: matchers, author, reason and a time window; an alert they match is muted."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from datetime import datetime

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from alerts.dispatch.config import Matchers
from alerts.dispatch.matchers import match_all


class Silence(BaseModel):
    """Mutes matching alerts from ``starts_at`` (inclusive) to ``ends_at`` (exclusive)."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    id: str
    matchers: Matchers = Field(min_length=1)
    author: str = Field(min_length=1)
    reason: str = Field(min_length=1)
    starts_at: AwareDatetime
    ends_at: AwareDatetime
    created_at: AwareDatetime
    expired_by: str = ""

    def active(self, now: datetime) -> bool:
        return self.starts_at <= now < self.ends_at

    def mutes(self, labels: Mapping[str, str], now: datetime) -> bool:
        return self.active(now) and match_all(self.matchers, labels)


def silence_id(matchers: Sequence[object], author: str, created_at: datetime, n: int) -> str:
    text = "|".join([*map(str, matchers), author, created_at.isoformat(), str(n)])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class Silences:
    """The silences, expired ones kept for the record."""

    def __init__(self) -> None:
        self._by_id: dict[str, Silence] = {}

    def add(self, silence: Silence) -> Silence:
        if silence.ends_at <= silence.starts_at:
            raise ValueError("a silence must end after it starts")
        self._by_id[silence.id] = silence
        return silence

    def restore(self, silence: Silence) -> None:
        """Put back a stored silence as it was (an expired one may end where it starts)."""
        self._by_id[silence.id] = silence

    def expire(self, sid: str, by: str, now: datetime) -> Silence:
        """End silence ``sid`` at ``now`` (no-op end for one that already ended)."""
        s = self._by_id[sid]
        end = min(s.ends_at, max(now, s.starts_at))
        s = s.model_copy(update={"ends_at": end, "expired_by": by})
        self._by_id[sid] = s
        return s

    def get(self, sid: str) -> Silence:
        return self._by_id[sid]

    def all(self) -> list[Silence]:
        return sorted(self._by_id.values(), key=lambda s: (s.created_at, s.id))

    def active(self, now: datetime) -> list[Silence]:
        return [s for s in self._by_id.values() if s.active(now)]

    def muting(self, labels: Mapping[str, str], now: datetime) -> list[str]:
        """Ids of the silences muting an alert with ``labels`` at ``now``."""
        return sorted(s.id for s in self._by_id.values() if s.mutes(labels, now))
