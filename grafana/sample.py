"""A simulated day (and the two months of cases before it) written straight into the
tables the worker fills, for proving and rendering the boards without a broker.

Rows are generated with a seeded RNG on the city's real grids and categories; the count
tables are aggregated here from the generated events (pandas), so the panels' figures can be
checked against counts computed independently of any SQL. Shapes follow the worker's: data
rows of summing tables carry ``ledger_partition = -1``; ledger rows (``bucket`` 0) are added
too, so a query that forgets the read model's filter is caught. Warning revisions and the
alert stage's rows (states, outbox, delivery attempts) come from ``grafana.sample_alerting``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd

from grafana import sample_alerting
from grafana.city import CityMap
from sinks.clickhouse import alerts as alert_sql
from sinks.clickhouse import warnings as warning_sql

DAY = 86_400
SOURCES = ("inspector", "sensor", "hotline")
LATE_AFTER_S = 120  # an event is late when its record reached the broker > 2 min after its minute
STAGE_ORDER = (
    "accepted",
    "registered",
    "dispatched",
    "acknowledged",
    "handled",
    "verified",
    "closed",
)
STAMPS = (
    "opened_at",
    "registered_at",
    "dispatched_at",
    "acknowledged_at",
    "handled_at",
    "verified_at",
    "closed_at",
)
STAGE_TIMER = {
    "accepted": "register",
    "registered": "dispatch",
    "dispatched": "acknowledge",
    "acknowledged": "handle",
    "handled": "verify",
    "verified": "close",
}
RATINGS = ("satisfied", "basically_satisfied", "dissatisfied")


@dataclass(frozen=True, slots=True)
class SampleDay:
    """The simulated day ``[start, end)`` (a local calendar day of the city) and its rows."""

    start: datetime
    end: datetime
    tables: dict[str, pd.DataFrame]

    @property
    def events(self) -> pd.DataFrame:
        return self.tables["events"]


def local_day(day: str, tz: str) -> tuple[datetime, datetime]:
    """``[local midnight, next local midnight)`` of ``day`` (YYYY-MM-DD) in UTC."""
    z = ZoneInfo(tz)
    start = datetime.fromisoformat(day).replace(tzinfo=z)
    return start.astimezone(UTC), (start + timedelta(days=1)).astimezone(UTC)


def _local_hour(t: np.ndarray, offset_s: int) -> np.ndarray:
    return ((t + offset_s) // 3600) % 24


def _diurnal(rng: np.random.Generator, n: int, t0: int, span: int, offset_s: int) -> np.ndarray:
    """``n`` instants in ``[t0, t0 + span)``, busier by local day (08:00-20:00)."""
    t = rng.integers(t0, t0 + span, size=n * 3)
    hour = _local_hour(t, offset_s)
    keep = rng.random(t.size) < np.where((hour >= 8) & (hour < 20), 1.0, 0.3)
    return np.sort(t[keep][:n])


def _events(
    rng: np.random.Generator, city: CityMap, t0: int, n: int, offset_s: int
) -> pd.DataFrame:
    grids = city.grids
    load = rng.gamma(0.6, 1.0, size=len(grids))
    load[rng.choice(len(grids), size=8, replace=False)] *= 12  # hot spots
    g = rng.choice(len(grids), size=n, p=load / load.sum())
    event_time = _diurnal(rng, n, t0, DAY, offset_s)
    n = event_time.size
    g = g[:n]
    source = rng.choice(SOURCES, size=n, p=(0.45, 0.3, 0.25))
    subs = city.subcategories
    sub_ix = np.empty(n, dtype=int)
    for s in SOURCES:
        ok = [i for i, sub in enumerate(subs) if s in sub.streams]
        mask = source == s
        w = np.ones(len(ok))  # the first quarter of each stream's subcategories: twice as common
        w[: max(1, len(ok) // 4)] = 2.0
        sub_ix[mask] = rng.choice(ok, size=int(mask.sum()), p=w / w.sum())
    rising = len(subs) - 1  # one subcategory surges from 14:00 (the "top rising" panel)
    afternoon = _local_hour(event_time, offset_s) >= 14
    surge = afternoon & np.isin(source, subs[rising].streams) & (rng.random(n) < 0.15)
    sub_ix[surge] = rising
    delay = rng.exponential(20.0, size=n).astype(int) + 1
    late = rng.random(n) < 0.02
    delay[late] += rng.integers(LATE_AFTER_S + 60, 3600, size=int(late.sum()))
    record_time = event_time + delay
    ingested_at = record_time + rng.integers(0, 4, size=n) + (rng.random(n) < 0.01) * 40
    minute_end = (event_time // 60 + 1) * 60
    is_late = (record_time - minute_end > LATE_AFTER_S).astype("uint8")
    gr = [grids[i] for i in g]
    return pd.DataFrame(
        {
            "event_time": event_time,
            "record_time": record_time,
            "ingested_at": ingested_at,
            "source": source,
            "event_id": [f"E{i:07d}" for i in range(n)],
            "ref_id": "",
            "district": [x.district for x in gr],
            "street": [x.street for x in gr],
            "community": [x.community for x in gr],
            "grid_code": [x.grid_code for x in gr],
            "located_by": "grid",
            "category": [subs[i].category for i in sub_ix],
            "subcategory": [subs[i].code for i in sub_ix],
            "sensor_id": "",
            "value": 0.0,
            "unit": "",
            "reporter_id": "",
            "caller_hash": "",
            "channel": "",
            "lon": [x.lon for x in gr],
            "lat": [x.lat for x in gr],
            "text": "",
            "late": is_late,
            "src_topic": "gridpulse." + pd.Series(source).astype(str),
            "src_partition": 0,
            "src_offset": np.arange(n, dtype="uint64"),
            "src_index": 0,
        }
    )


KEY = ["district", "street", "community", "grid_code", "category", "subcategory", "source"]


def _bucket(t: pd.Series, window: str, tz_offset_s: int) -> pd.Series:
    size = {"1m": 60, "5m": 300, "1h": 3600}.get(window)
    if size:
        return (t // size) * size
    return ((t + tz_offset_s) // DAY) * DAY - tz_offset_s  # local midnight


def _ledger_rows(columns: list[str]) -> pd.DataFrame:
    row: dict[str, object] = dict.fromkeys(columns, "")
    row.update(
        bucket=0, ledger_topic="gridpulse.sensor.readings", ledger_partition=0, n=0, offset_span=123
    )
    return pd.DataFrame([row])


def count_rows(events: pd.DataFrame, window: str, tz_offset_s: int) -> pd.DataFrame:
    """What the worker writes to ``event_counts_<window>`` for ``events`` (late ones excluded):
    data rows (``ledger_partition = -1``) then one ledger row."""
    ok = events[events["late"] == 0]
    frame = ok.assign(bucket=_bucket(ok["event_time"], window, tz_offset_s))
    rows = frame.groupby(["bucket", *KEY], as_index=False).size().rename(columns={"size": "n"})
    rows = rows.assign(ledger_topic="", ledger_partition=-1, offset_span=0)
    return pd.concat([rows, _ledger_rows(list(rows.columns))], ignore_index=True)


def late_rows(events: pd.DataFrame, tz_offset_s: int) -> pd.DataFrame:
    """``late_event_counts``: each late event counted in every granularity's window."""
    late = events[events["late"] == 1]
    parts = []
    for w in ("1m", "5m", "1h", "1d"):
        f = late.assign(bucket=_bucket(late["event_time"], w, tz_offset_s), granularity=w)
        parts.append(f.groupby(["granularity", "bucket", *KEY], as_index=False).size())
    rows = pd.concat(parts, ignore_index=True).rename(columns={"size": "n"})
    return rows.assign(ledger_topic="", ledger_partition=-1, offset_span=0)


def _dead_letters(rng: np.random.Generator, t0: int, n: int) -> pd.DataFrame:
    t = np.sort(rng.integers(t0, t0 + DAY, size=n))
    reasons = rng.choice(
        ["schema_invalid", "unknown_grid", "decode_error"], size=n, p=(0.5, 0.35, 0.15)
    )
    return pd.DataFrame(
        {
            "record_time": t,
            "ingested_at": t + 1,
            "src_topic": "gridpulse.hotline.requests",
            "src_partition": 0,
            "src_offset": np.arange(n, dtype="uint64"),
            "src_index": 0,
            "reason_code": reasons,
            "reason": "simulated",
            "payload": "{}",
        }
    )


def _cases(
    rng: np.random.Generator, city: CityMap, t_end: int, days: int, per_day: int, offset_s: int
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """``case_state`` rows (latest versions plus stale older ones), applied ``pause`` events
    in ``case_events`` and ``sla_events`` for the cases."""
    n = days * per_day
    t0 = t_end - days * DAY
    opened = _diurnal(rng, n, t0, days * DAY - 1800, offset_s)
    n = opened.size
    grids = city.grids
    g = rng.choice(len(grids), size=n)
    subs = city.subcategories
    source = rng.choice(SOURCES, size=n, p=(0.55, 0.1, 0.35))
    sub_ix = rng.integers(0, len(subs), size=n)
    age = t_end - opened
    # how far a case got: old cases mostly closed, recent ones still running
    target = np.where(age > 10 * DAY, 6, np.minimum(6, (age // (DAY // 2)).astype(int) + 1))
    stuck = (rng.random(n) < 0.03) & (age < 14 * DAY)
    target = np.where(stuck, rng.integers(1, 6, size=n), target)
    rows, stale, pauses, alerts = [], [], [], []
    for i in range(n):
        gr, sub = grids[g[i]], subs[sub_ix[i]]
        t = int(opened[i])
        stamps = dict.fromkeys(STAMPS, 0)
        stamps["opened_at"] = t
        late_stages = []
        steps = int(target[i])
        for k in range(1, steps + 1):
            t += int(rng.exponential(3 * 3600)) + 300
            if t >= t_end:
                steps = k - 1
                break
            stamps[STAMPS[k]] = t
            if rng.random() < 0.012:
                late_stages.append(STAGE_TIMER[STAGE_ORDER[k - 1]])
        stage = STAGE_ORDER[steps]
        voided = int(rng.random() < 0.03)
        if voided:
            stage = "voided"
        elif steps == 0 and rng.random() < 0.02:
            stage = "rejected"
        open_ = stage not in ("closed", "voided", "rejected")
        started = max(v for v in stamps.values())
        limit = int(rng.choice([8, 24, 48, 72])) * 3600
        deadline = started + limit if open_ else 0
        hot = source[i] == "hotline"
        rating = str(rng.choice(RATINGS, p=(0.7, 0.2, 0.1))) if hot and stage == "closed" else ""
        row = {
            "case_id": f"{'H' if hot else 'I'}-{i:06d}",
            "version": steps + 2,
            "updated_at": started,
            "source": source[i],
            "district": gr.district,
            "street": gr.street,
            "community": gr.community,
            "grid_code": gr.grid_code,
            "category": sub.category,
            "subcategory": sub.code,
            "unit": f"unit-{gr.street}",
            "urgent": int(rng.random() < 0.1),
            "stage": stage,
            **stamps,
            "rejected_at": 0,
            "voided": voided,
            "forced": int(stage == "closed" and rng.random() < 0.02),
            "rework_count": int(steps >= 5 and rng.random() < 0.08),
            "extension_count": int(steps >= 2 and rng.random() < 0.05),
            "pause_count": 0,
            "paused": 0,
            "stage_started_at": started,
            "stage_deadline": deadline,
            "stage_limit_unit": "working_hours" if open_ else "",
            "rating": rating,
            "follow_up_at": 0,
            "late_stages": ",".join(late_stages),
        }
        rows.append(row)
        if i % 3 == 0:  # a stale older version in another part: only FINAL reads right
            stale.append(
                {
                    **row,
                    "version": 1,
                    "stage": "accepted",
                    "stage_deadline": stamps["opened_at"] + 3600,
                }
            )
        if rng.random() < 0.04:
            pauses.append((row["case_id"], stamps["opened_at"] + 600))
        if open_ and deadline and deadline - t_end < 2 * 3600:
            for kind, level, at in (
                ("warning", 1, deadline - 1800),
                ("breach", 1, deadline),
                ("escalation", 2, deadline + 4 * 3600),
            ):
                if at < t_end:
                    alerts.append(_alert(row, kind, level, at, deadline))
        for stage_name in late_stages:
            at = stamps["opened_at"] + 3600
            alerts.append(_alert({**row, "stage": stage_name}, "breach", 1, at, at))
    state = pd.concat([pd.DataFrame(stale), pd.DataFrame(rows)], ignore_index=True)
    events = pd.DataFrame(
        {
            "event_time": [t for _, t in pauses],
            "record_time": [t for _, t in pauses],
            "ingested_at": [t for _, t in pauses],
            "event_id": [f"P{k}" for k in range(len(pauses))],
            "case_id": [c for c, _ in pauses],
            "action": "pause",
            "outcome": "applied",
            "src_topic": "gridpulse.case.events",
            "src_partition": 0,
            "src_offset": np.arange(len(pauses), dtype="uint64"),
            "src_index": 0,
        }
    )
    return state, events, pd.DataFrame(alerts)


def _alert(row: dict, kind: str, level: int, at: int, deadline: int) -> dict:
    keep = (
        "case_id",
        "stage",
        "district",
        "street",
        "community",
        "grid_code",
        "category",
        "subcategory",
        "unit",
        "urgent",
        "source",
        "stage_started_at",
    )
    return {
        "alert_id": f"{row['case_id']}:{row['stage']}:{kind}:{level}",
        "fired_at": at,
        "due_at": at,
        "kind": kind,
        "level": level,
        "fraction": 0.8 if kind == "warning" else 1.0,
        "stage_seq": 1,
        "deadline": deadline,
        **{k: row[k] for k in keep},
    }


def generate(
    city: CityMap,
    day: str = "2026-11-30",
    *,
    events_per_day: int = 24_000,
    case_days: int = 62,
    cases_per_day: int = 160,
    seed: int = 11,
) -> SampleDay:
    """The rows of one simulated local day ``day`` of ``city`` and its preceding cases."""
    rng = np.random.default_rng(seed)
    start, end = local_day(day, city.timezone)
    t0, t1 = int(start.timestamp()), int(end.timestamp())
    offset = int(start.astimezone(ZoneInfo(city.timezone)).utcoffset().total_seconds())  # type: ignore[union-attr]
    events = _events(rng, city, t0, events_per_day, offset)
    tables = {"events": events}
    for w in ("1m", "5m", "1h", "1d"):
        tables[f"event_counts_{w}"] = count_rows(events, w, offset)
    tables["late_event_counts"] = late_rows(events, offset)
    tables["dead_letters"] = _dead_letters(rng, t0, 57)
    state, case_events, alerts = _cases(rng, city, t1, case_days, cases_per_day, offset)
    tables["case_state"] = state
    tables["case_events"] = case_events
    tables["sla_events"] = alerts
    tables[warning_sql.WARNINGS_TABLE] = sample_alerting.warnings(rng, events, t0, t1)
    tables.update(sample_alerting.alert_tables(rng, tables["warnings"], alerts, t1, offset))
    return SampleDay(start, end, tables)


_VERSIONED = {alert_sql.STATE_TABLE: "fingerprint", alert_sql.OUTBOX_TABLE: "notification_id"}


def _parts(table: str, frame: pd.DataFrame) -> list[pd.DataFrame]:
    """Older versions (or first publications) before the latest ones, in separate parts, so
    only a read through ``FINAL`` (the views) counts right."""
    if table in _VERSIONED:
        latest = frame["version"] == frame.groupby(_VERSIONED[table])["version"].transform("max")
        return [frame[~latest], frame[latest]]
    if table == warning_sql.WARNINGS_TABLE:
        again = frame.duplicated()
        return [frame[~again], frame[again]]
    return [frame]


def load(backend: object, day: SampleDay) -> None:
    """Insert the day's rows (stale versions and re-published rows in their own part)."""
    for table, frame in day.tables.items():
        if table in _VERSIONED or table == warning_sql.WARNINGS_TABLE:
            for part in _parts(table, frame):
                if len(part):
                    backend.insert_sync(table, part.reset_index(drop=True))  # type: ignore[attr-defined]
            continue
        if table == "case_state":
            stale = frame[frame["version"] == 1]
            backend.insert_sync(table, stale.reset_index(drop=True))  # type: ignore[attr-defined]
            frame = frame[frame["version"] != 1].reset_index(drop=True)
        if table.startswith("event_counts") or table == "late_event_counts":
            for _, part in frame.groupby(frame["bucket"] // DAY, sort=True):
                backend.insert_sync(table, part.reset_index(drop=True))  # type: ignore[attr-defined]
            continue
        backend.insert_sync(table, frame)  # type: ignore[attr-defined]
