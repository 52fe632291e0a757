"""CaseBook ticks: gated timers wait for their partition's clock; the horizon keeps timers
after it queued (no pop-and-push churn on every tick while the case agent is behind)."""

from datetime import UTC, datetime, timedelta

from core.city import load_city
from core.settings import REPO_ROOT
from core.sla_config import load_sla
from streams.cases import CaseInput
from streams.casework import CaseBook
from streams.timers import TimerQueue

CITY = load_city(REPO_ROOT / "config" / "cities" / "sample.yaml")
POLICY = load_sla(REPO_ROOT / "config" / "sla" / "default.yaml")
# a Tuesday morning in office hours, no holiday
T0 = datetime(2025, 6, 10, 1, 0, tzinfo=UTC)


def book_with(n: int) -> CaseBook:
    book = CaseBook(POLICY, CITY.calendar)
    for i in range(n):
        book.admit(
            CaseInput(
                f"c{i}",
                "accept",
                T0 + timedelta(minutes=i),
                grid=None,
                category="sanitation.overflowing_bin",
                source="hotline",
                event_id=f"e{i}",
            )
        )
    return book


class CountingQueue(TimerQueue):
    pops = 0

    def pop_due(self, now, limit=None):
        out = super().pop_due(now, limit)
        self.pops += len(out)
        return out


def test_horizon_leaves_later_timers_queued_and_fires_them_once_reached():
    book = book_with(5)
    q = CountingQueue()
    q.extend(book.queue.pop_due(float("inf")))
    book.queue = q
    first_due = min(t.due for t in q._heap)
    later = first_due + 3 * 3600
    # the case agent has read its partition only up to T0: nothing may fire, nothing churns
    assert book.tick(later, horizon=T0.timestamp()) == []
    assert q.pops == 0 and len(q) == 5
    # without the horizon the same tick pops the due timers just to push them back
    gated = book.tick(later, clock_of=lambda cid: T0.timestamp())
    assert gated == [] and q.pops > 0 and len(q) == 5
    fired = book.tick(later, horizon=later)
    assert {t.case_id for t, _, _ in fired} == {f"c{i}" for i in range(5)}
    assert all(t.kind == "warning" and t.level == 1 for t, _, _ in fired)
    # each firing queues the clock's next timer: the 80 % warning, then the breach
    second = book.tick(later, horizon=later)
    third = book.tick(later, horizon=later)
    assert [(t.kind, t.level) for t, _, _ in second] == [("warning", 2)] * 5
    assert [(t.kind, t.level) for t, _, _ in third] == [("breach", 0)] * 5
    ids = [t.alert_id for t, _, _ in fired + second + third]
    assert len(ids) == len(set(ids)) == 15
