"""Retry policy: which outcomes are retried, and when.

Retried: timeouts, connection errors, 5xx and 429; the wait is exponential backoff with full
jitter (uniform in ``[0, min(cap, base * 2**attempt)]``), or ``Retry-After`` (seconds or an
HTTP date) when the receiver sends one, capped at ``max_retry_after``. Other 4xx are final;
410 Gone additionally disables the receiver.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Literal

Verdict = Literal["delivered", "retry", "fail", "gone"]


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 12
    base: timedelta = timedelta(seconds=1)
    cap: timedelta = timedelta(minutes=10)
    max_retry_after: timedelta = timedelta(hours=1)

    def backoff(self, attempt: int, rand: Callable[[], float] = random.random) -> timedelta:
        """The wait after the ``attempt``-th failed attempt (1-based), with full jitter."""
        ceiling = min(self.cap.total_seconds(), self.base.total_seconds() * 2 ** (attempt - 1))
        return timedelta(seconds=ceiling * rand())

    def wait(
        self, attempt: int, retry_after: timedelta | None, rand: Callable[[], float] = random.random
    ) -> timedelta:
        """``Retry-After`` when given (capped), else the jittered backoff."""
        if retry_after is not None:
            return min(max(retry_after, timedelta(0)), self.max_retry_after)
        return self.backoff(attempt, rand)


def classify(status: int | None) -> Verdict:
    """The verdict for an HTTP status; ``None`` stands for a timeout or connection error."""
    if status is None or status == 429 or status >= 500:
        return "retry"
    if 200 <= status < 300:
        return "delivered"
    if status == 410:
        return "gone"
    return "fail"


def parse_retry_after(value: str | None, now: datetime) -> timedelta | None:
    """``Retry-After`` as a wait: delay-seconds or an HTTP date; None if absent or malformed."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return timedelta(seconds=int(value))
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max(when - now, timedelta(0))
