"""Sensor rules on real data: six Beijing stations' hourly PM2.5, December 2015.

Runs the shipped ``pm25`` rules (graded bands with hysteresis, rate of change, stuck value,
silent sensor) through the warning lifecycle, hour by hour, as a caught-up worker would: the
readings of an hour, then the timer at that hour (watermark = now). Missing values (``NA``)
are hours without a reading. Printed as a markdown table:

- **red alert 1 / 2**: Beijing's red alerts in force 2015-12-08 07:00 – 12-10 12:00 and
  2015-12-19 07:00 – 12-22 24:00 (local time). Detected when a ``sensor_threshold`` warning
  is firing during the alert; the times are when that warning was first raised (any level)
  and first reached major (heavy pollution, PM2.5 ≥ 150 µg/m³), at most 72 h before the
  alert (an earlier start is reported as the alert start minus 72 h at the latest).
- **clean days**: days whose mean PM2.5 is at most 75 µg/m³ (China's 24-hour Grade II limit);
  warnings raised on them (a threshold warning firing or rising in severity), all levels and
  minor or more.
- **excellent days**: days whose mean PM2.5 is at most 35 µg/m³; threshold warnings raised.
- **flaps**: a threshold warning's level reversing (up then down or down then up, resolving
  counted as the lowest level) within 3 h of its previous change, with the shipped hysteresis
  and, for contrast, with the same bands and no hysteresis (entered and left at one level,
  after one reading).
- **silent**: ``sensor_silent`` warnings, against the station's gaps of 3 h or more.

Then injected faults (``FAULTS``: a value held 36 h, a one-hour +500 spike, a 6 h dropout)
and the delay to their warning; then the cost of the rules over the 1,500 sensors of
``config/cities/sample.yaml`` (``measure_cost``): µs per reading, bytes of state per sensor.

Rerun: ``.venv/bin/python -m streams.detect.beijing_eval [DATA_DIR]``.
"""

from __future__ import annotations

import gc
import json
import random
import sys
import time
import tracemalloc
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pandas as pd

from core.warning import SEVERITY_RANK, EarlyWarning
from streams.detect.lifecycle import WarningLifecycle
from streams.detect.sensors import (
    RULES_LIFECYCLE,
    SensorKindRules,
    SensorRules,
    SensorRulesConfig,
    default_sensor_rules,
)

TZ = ZoneInfo("Asia/Shanghai")
DATA_DIR = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "beijing_air"
START = datetime(2015, 12, 1, tzinfo=TZ)
END = datetime(2016, 1, 1, tzinfo=TZ)
RED_ALERTS = (
    (datetime(2015, 12, 8, 7, tzinfo=TZ), datetime(2015, 12, 10, 12, tzinfo=TZ)),
    (datetime(2015, 12, 19, 7, tzinfo=TZ), datetime(2015, 12, 23, 0, tzinfo=TZ)),
)
LEAD = timedelta(hours=72)
CLEAN_DAY_MEAN = 75.0
EXCELLENT_DAY_MEAN = 35.0
FLAP_WINDOW = timedelta(hours=3)
GAP_HOURS = 3


@dataclass
class StationResult:
    station: str
    first_any: list[datetime | None] = field(default_factory=list)
    first_major: list[datetime | None] = field(default_factory=list)
    clean_days: int = 0
    clean_raised: int = 0
    clean_raised_minor: int = 0
    excellent_days: int = 0
    excellent_raised: int = 0
    flaps: int = 0
    flaps_no_hysteresis: int = 0
    raised: int = 0
    silent: int = 0
    gaps: int = 0
    stuck: int = 0
    rate: int = 0
    faults: dict[str, timedelta | None] = field(default_factory=dict)


def load_station(path: Path) -> pd.DataFrame:
    """One station's December 2015 hours: local time and PM2.5 (NaN when missing)."""
    df = pd.read_csv(path, usecols=["year", "month", "day", "hour", "PM2.5", "station"])
    df = df[(df.year == 2015) & (df.month == 12)].copy()
    df["at"] = [
        datetime(int(y), int(m), int(d), int(h), tzinfo=TZ)
        for y, m, d, h in zip(df.year, df.month, df.day, df.hour, strict=True)
    ]
    return df[["at", "PM2.5", "station"]].rename(columns={"PM2.5": "pm25"})


def run_rules(df: pd.DataFrame, config: SensorRulesConfig) -> list[EarlyWarning]:
    """The warning revisions the rules publish over the station's hours, hour by hour."""
    sensor = str(df.station.iloc[0])
    rules = SensorRules(config, labels=lambda sid: {"station": sid})
    life = WarningLifecycle(RULES_LIFECYCLE)
    out: list[EarlyWarning] = []
    for at, value in zip(df["at"], df["pm25"], strict=True):
        if pd.notna(value):
            out += life.observe_all(rules.observe(sensor, "pm25", at, float(value), at.isoformat()))
        out += life.observe_all(rules.due_silent(at, at))
    return out


def raised(warnings: list[EarlyWarning]) -> list[EarlyWarning]:
    """Revisions that raise: a new firing episode or a higher severity than the previous."""
    last: dict[str, EarlyWarning] = {}
    out = []
    for w in warnings:
        prev = last.get(w.fingerprint)
        if w.status == "firing" and (
            prev is None
            or prev.status == "resolved"
            or SEVERITY_RANK[w.severity] > SEVERITY_RANK[prev.severity]
        ):
            out.append(w)
        last[w.fingerprint] = w
    return out


def count_flaps(warnings: list[EarlyWarning]) -> int:
    """Reversals of a threshold warning's level (up then down, or down then up, resolving
    being the lowest level) within ``FLAP_WINDOW`` of the previous change."""
    last: dict[str, tuple[datetime, int, int]] = {}  # fingerprint -> (time, level, direction)
    flaps = 0
    for w in warnings:
        if w.kind != "sensor_threshold":
            continue
        level = -1 if w.status == "resolved" else SEVERITY_RANK[w.severity]
        prev = last.get(w.fingerprint)
        if prev is None:
            last[w.fingerprint] = (w.updated_at, level, 1)
            continue
        t0, level0, direction0 = prev
        if level == level0:
            continue
        direction = 1 if level > level0 else -1
        if direction != direction0 and w.updated_at - t0 <= FLAP_WINDOW:
            flaps += 1
        last[w.fingerprint] = (w.updated_at, level, direction)
    return flaps


def first_warning(
    warnings: list[EarlyWarning], start: datetime, end: datetime, severity: str = "info"
) -> datetime | None:
    """When a threshold warning firing during [start, end) first reached ``severity`` or
    more, looking back at most ``LEAD`` before ``start``."""
    best: datetime | None = None
    episode_major: dict[str, datetime] = {}
    for w in warnings:
        if w.kind != "sensor_threshold":
            continue
        if w.status == "resolved":
            ended = w.resolved_at or w.updated_at
            t = episode_major.pop(w.fingerprint, None)
            if t is not None and ended > start and ended > t and t < end:
                best = t if best is None or t < best else best
            continue
        if SEVERITY_RANK[w.severity] >= SEVERITY_RANK[severity]:
            episode_major.setdefault(w.fingerprint, w.updated_at)
    for t in episode_major.values():  # still firing at the end of the run
        if t < end:
            best = t if best is None or t < best else best
    if best is not None and best < start - LEAD:
        return None
    return best


def gaps_of(df: pd.DataFrame, hours: int) -> int:
    """Runs of at least ``hours`` consecutive missing hours."""
    runs, n = 0, 0
    for missing in df["pm25"].isna():
        n = n + 1 if missing else 0
        if n == hours:
            runs += 1
    return runs


def clean_days(df: pd.DataFrame, limit: float = CLEAN_DAY_MEAN) -> set[date]:
    """Local days whose mean PM2.5 (over the hours with a value) is at most ``limit``."""
    daily = df.groupby(df["at"].map(lambda t: t.date()))["pm25"].mean()
    return {d for d, mean in daily.items() if mean <= limit}


def without_hysteresis(config: SensorRulesConfig) -> SensorRulesConfig:
    """The same bands entered and left at one level, after one reading."""
    kinds: dict[str, SensorKindRules] = {
        code: r.model_copy(
            update={
                "hysteresis_rel": 0.0,
                "hysteresis_abs": 0.0,
                "enter_after": 1,
                "clear_after": 1,
            }
        )
        for code, r in config.kinds.items()
    }
    return SensorRulesConfig(kinds=kinds)


def evaluate(path: Path, config: SensorRulesConfig) -> StationResult:
    df = load_station(path)
    res = StationResult(str(df.station.iloc[0]))
    warnings = run_rules(df, config)
    up = raised(warnings)
    res.first_any = [first_warning(warnings, s, e) for s, e in RED_ALERTS]
    res.first_major = [first_warning(warnings, s, e, "major") for s, e in RED_ALERTS]
    clean = clean_days(df)
    res.clean_days = len(clean)
    on_clean = [
        w
        for w in up
        if w.kind == "sensor_threshold" and w.updated_at.astimezone(TZ).date() in clean
    ]
    res.clean_raised = len(on_clean)
    res.clean_raised_minor = sum(SEVERITY_RANK[w.severity] >= 1 for w in on_clean)
    excellent = clean_days(df, EXCELLENT_DAY_MEAN)
    res.excellent_days = len(excellent)
    res.excellent_raised = sum(
        w.kind == "sensor_threshold" and w.updated_at.astimezone(TZ).date() in excellent for w in up
    )
    res.raised = sum(w.kind == "sensor_threshold" for w in up)
    res.flaps = count_flaps(warnings)
    res.flaps_no_hysteresis = count_flaps(run_rules(df, without_hysteresis(config)))
    res.silent = sum(1 for w in warnings if w.kind == "sensor_silent" and w.status == "firing")
    res.stuck = sum(1 for w in warnings if w.kind == "sensor_stuck" and w.status == "firing")
    res.rate = sum(1 for w in warnings if w.kind == "sensor_rate" and w.status == "firing")
    res.gaps = gaps_of(df, GAP_HOURS)
    res.faults = fault_delays(df, config)
    return res


def _when(t: datetime | None, start: datetime) -> str:
    if t is None:
        return "**missed**"
    lead = (start - t).total_seconds() / 3600
    rel = f"{lead:.0f} h before" if lead >= 0 else f"{-lead:.0f} h after"
    return f"{t.astimezone(TZ):%m-%d %H:%M} ({rel})"


def _episode(r: StationResult, i: int) -> str:
    start = RED_ALERTS[i][0]
    return f"{_when(r.first_any[i], start)}; major {_when(r.first_major[i], start)}"


def table(results: list[StationResult]) -> str:
    head = (
        "| station | red alert 1 (12-08 07:00): first warning; first ≥major "
        "| red alert 2 (12-19 07:00): first warning; first ≥major | clean days (mean ≤75) "
        "| raised on clean days (all / ≥minor) "
        "| excellent days (mean ≤35) | raised on excellent days | threshold warnings raised "
        "| flaps | flaps without hysteresis | silent / gaps ≥3 h | stuck | rate |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|"
    )
    rows = [
        f"| {r.station} | {_episode(r, 0)} | {_episode(r, 1)} | {r.clean_days} "
        f"| {r.clean_raised} / {r.clean_raised_minor} | {r.excellent_days} "
        f"| {r.excellent_raised} | {r.raised} | {r.flaps} "
        f"| {r.flaps_no_hysteresis} | {r.silent} / {r.gaps} | {r.stuck} | {r.rate} |"
        for r in results
    ]
    return "\n".join([head, *rows])


FAULTS = {
    "stuck": (datetime(2015, 12, 15, 0, tzinfo=TZ), datetime(2015, 12, 16, 12, tzinfo=TZ)),
    "rate": (datetime(2015, 12, 27, 10, tzinfo=TZ), datetime(2015, 12, 27, 11, tzinfo=TZ)),
    "silent": (datetime(2015, 12, 3, 6, tzinfo=TZ), datetime(2015, 12, 3, 12, tzinfo=TZ)),
}
"""Injected sensor faults: the value held for 36 h, a +500 µg/m³ one-hour spike, a 6 h
dropout (each on a day the station's own data leaves quiet for that rule)."""


def inject_faults(df: pd.DataFrame) -> pd.DataFrame:
    """The station's hours with the ``FAULTS`` applied."""
    out = df.copy()
    start, end = FAULTS["stuck"]
    held = out.loc[out["at"] == start, "pm25"].iloc[0]
    out.loc[(out["at"] >= start) & (out["at"] < end), "pm25"] = held if pd.notna(held) else 20.0
    start, end = FAULTS["rate"]
    out.loc[(out["at"] >= start) & (out["at"] < end), "pm25"] += 500.0
    start, end = FAULTS["silent"]
    out.loc[(out["at"] >= start) & (out["at"] < end), "pm25"] = float("nan")
    return out


def fault_delays(df: pd.DataFrame, config: SensorRulesConfig) -> dict[str, timedelta | None]:
    """Per injected fault, the time from its start to the first warning of its kind raised
    inside the fault (+ the rule's own duration), or None when missed."""
    warnings = run_rules(inject_faults(df), config)
    out: dict[str, timedelta | None] = {}
    for rule, (start, end) in FAULTS.items():
        kind = f"sensor_{rule}"
        slack = timedelta(hours=24)
        hits = [
            w.updated_at - start
            for w in warnings
            if w.kind == kind and w.status == "firing" and start <= w.updated_at <= end + slack
        ]
        out[rule] = min(hits) if hits else None
    return out


SAMPLE_FLEET = {"bin_fill": 400, "manhole_tilt": 400, "noise": 300, "pm25": 150, "water_level": 250}
"""The sensor kinds of ``config/cities/sample.yaml`` and how many of each (1,500 sensors)."""


def fleet_readings(rounds: int, seed: int = 1) -> list[tuple[str, str, datetime, float]]:
    """``rounds`` readings of every sensor of the sample fleet: bounded random walks inside
    each kind's bands (so the rules change state now and then), a minute apart per round."""
    rng = random.Random(seed)
    config = default_sensor_rules()
    sensors = [(f"S-{k}-{i:04d}", k) for k, n in SAMPLE_FLEET.items() for i in range(n)]
    top = {k: config.kinds[k].bands[-1].enter * 1.2 for k in SAMPLE_FLEET}
    value = {sid: rng.uniform(0, top[k]) for sid, k in sensors}
    out = []
    for r in range(rounds):
        at = START + timedelta(minutes=r)
        for sid, kind in sensors:
            step = top[kind] * 0.03
            value[sid] = min(top[kind], max(0.0, value[sid] + rng.uniform(-step, step)))
            out.append((sid, kind, at, round(value[sid], 1)))
    return out


def measure_cost(rounds: int = 100) -> str:
    """Markdown lines: CPU µs per reading of ``SensorRules.observe`` (and with the lifecycle)
    over the 1,500-sensor sample fleet, CPU µs per silent-sensor timer tick, and bytes of
    state per sensor (Python heap, measured with tracemalloc, and serialized JSON)."""
    readings = fleet_readings(rounds)
    config = default_sensor_rules()
    rules = SensorRules(config)
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    first_round = len(readings) // rounds
    for sid, kind, at, v in readings[:first_round]:
        rules.observe(sid, kind, at, v)
    heap_bytes = (tracemalloc.get_traced_memory()[0] - before) / first_round
    tracemalloc.stop()
    t0 = time.process_time()
    for sid, kind, at, v in readings[first_round:]:
        rules.observe(sid, kind, at, v)
    plain_us = (time.process_time() - t0) / (len(readings) - first_round) * 1e6
    rules2, life = SensorRules(config), WarningLifecycle(RULES_LIFECYCLE)
    t0 = time.process_time()
    n_verdicts = 0
    for sid, kind, at, v in readings:
        verdicts = rules2.observe(sid, kind, at, v)
        n_verdicts += len(verdicts)
        life.observe_all(verdicts)
    full_us = (time.process_time() - t0) / len(readings) * 1e6
    t0 = time.process_time()
    ticks = 0
    for r in range(rounds):
        at = START + timedelta(minutes=r, seconds=30)
        rules2.due_silent(at, at)
        ticks += 1
    tick_us = (time.process_time() - t0) / ticks * 1e6
    snap = json.dumps(rules.snapshot(), separators=(",", ":"), ensure_ascii=False)
    n = len(rules.sensors)
    return "\n".join(
        [
            "| sensors | readings | CPU µs/reading (rules) | CPU µs/reading (rules + lifecycle) "
            "| verdicts | CPU µs per silent-timer tick | state B/sensor (heap) "
            "| state B/sensor (JSON) |",
            "|---|---|---|---|---|---|---|---|",
            f"| {n} | {len(readings)} | {plain_us:.2f} | {full_us:.2f} | {n_verdicts} "
            f"| {tick_us:.0f} | {heap_bytes:.0f} | {len(snap) / n:.0f} |",
        ]
    )


def fault_table(results: list[StationResult]) -> str:
    """Markdown: per station, the delay to each injected fault's warning."""

    def cell(d: timedelta | None) -> str:
        return "**missed**" if d is None else f"{d.total_seconds() / 3600:.0f} h"

    head = (
        "| station | stuck 36 h (12-15 00:00) | +500 spike (12-27 10:00) "
        "| dropout 6 h (12-03 06:00) |\n|---|---|---|---|"
    )
    rows = [
        f"| {r.station} | {cell(r.faults['stuck'])} | {cell(r.faults['rate'])} "
        f"| {cell(r.faults['silent'])} |"
        for r in results
    ]
    return "\n".join([head, *rows])


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    data_dir = Path(args[0]) if args else DATA_DIR
    files = sorted(data_dir.glob("PRSA_Data_*_20130301-20170228.csv"))
    if not files:
        print(f"no PRSA_Data_*.csv files in {data_dir}", file=sys.stderr)
        return 2
    config = default_sensor_rules()
    results = [evaluate(f, config) for f in files]
    print(table(results))
    print()
    print(fault_table(results))
    print()
    print(measure_cost())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
