"""Score the detectors on the simulator's labelled incidents: precision, recall, delay per type.

``evaluate(setup)`` runs one seed (``replay.simulate``: the simulator offline, the shipped
detectors and lifecycles in event-time order) and matches the warnings raised to the
injected incidents (``Incident``: ``complaint_burst``, ``sensor_spike``, ``sensor_silence``).

**Raise.** A published revision that starts an episode (the first ``firing`` revision of a
fingerprint or of a later episode) or raises an open warning's severity: what an operator
is alerted by. Its time is the revision's ``window_end``.

**Matching rule.** A raise matches an incident when

1. its kind fits the incident type (``INCIDENT_KINDS``): a burst is caught by ``count_spike``,
   ``level_shift`` of the count detectors and ``hotspot``; a spike by ``sensor_threshold``,
   ``sensor_rate``, ``sensor_anomaly`` and ``level_shift`` of a sensor series; a silence by
   ``sensor_silent``;
2. its key overlaps the incident's: bursts: same subcategory, and the warning's grid (a
   hotspot: its anchor or any member grid) is one of the incident's grids, or, for a
   roll-up, its community / street holds one of them; sensors: the same sensor;
3. it is raised between the incident's start and its end + ``TOLERANCE`` of the type
   (bursts 2 h: the hour bucket holding the end closes up to 1 h after it, the CUSUM may need
   one more; sensors 15 min).

An incident is detected when a raise matches it; its delay is the earliest matching raise's
time minus the incident's start. Precision = raises of the type's kinds that match an
incident / all such raises. A raise is *on an incident-free key* when its key overlaps no
incident of the run at any time; those are counted per simulated day.

**Evaluated span.** Incidents that start once their type's detectors are warm
(``type_warmups``: the hour count scale for bursts, the value series for spikes, none for
the silence rule) and whose end + tolerance falls within the run; raises in the same span.
"""

from __future__ import annotations

import argparse
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from core.city import City
from core.settings import REPO_ROOT
from core.warning import SEVERITY_RANK, EarlyWarning, WarningKind
from gridpulse.evaluate.replay import EvalSetup, SimulatedRun, simulate
from sources.simulator import Incident
from streams.detect.config import SeasonalConfig, hourly_counts, value_series

IncidentType = str
"""``Incident.kind``: ``complaint_burst``, ``sensor_spike`` or ``sensor_silence``."""
TYPES: tuple[IncidentType, ...] = ("complaint_burst", "sensor_spike", "sensor_silence")
INCIDENT_KINDS: dict[IncidentType, frozenset[WarningKind]] = {
    "complaint_burst": frozenset({"count_spike", "level_shift", "hotspot"}),
    "sensor_spike": frozenset({"sensor_threshold", "sensor_rate", "sensor_anomaly", "level_shift"}),
    "sensor_silence": frozenset({"sensor_silent"}),
}
TOLERANCE: dict[IncidentType, timedelta] = {
    "complaint_burst": timedelta(hours=2),
    "sensor_spike": timedelta(minutes=15),
    "sensor_silence": timedelta(minutes=15),
}
DOCS = REPO_ROOT / "docs" / "detection.md"
SECTION = "## Simulated incidents"


def warmup_of(config: SeasonalConfig, interval: timedelta) -> timedelta:
    """History a detector needs before it may alarm: its warm-up span and samples."""
    return max(config.warmup, config.warmup_samples * interval)


def type_warmups(sensor_period: timedelta) -> dict[IncidentType, timedelta]:
    """Per incident type, the longest warm-up of the detectors that catch it (shipped
    defaults): the hour count scale for bursts, the value series for spikes, none for the
    silence rule."""
    return {
        "complaint_burst": warmup_of(hourly_counts(), timedelta(hours=1)),
        "sensor_spike": warmup_of(value_series(), sensor_period),
        "sensor_silence": timedelta(0),
    }


# -- raises and the matching rule -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Raise:
    """A revision that alerts: a new episode or a higher severity; ``at`` is its window end."""

    warning: EarlyWarning
    at: datetime


def raises(warnings: Iterable[EarlyWarning]) -> list[Raise]:
    """The raises among revisions in publication order."""
    open_rank: dict[str, int] = {}
    out: list[Raise] = []
    for w in warnings:
        if w.status != "firing":
            open_rank.pop(w.fingerprint, None)
            continue
        rank = SEVERITY_RANK[w.severity]
        before = open_rank.get(w.fingerprint)
        if before is None or rank > before:
            out.append(Raise(w, w.window_end))
        open_rank[w.fingerprint] = rank
    return out


def is_alarm(r: Raise) -> bool:
    """A raise of severity minor or above (``info`` informs, it does not alarm)."""
    return SEVERITY_RANK[r.warning.severity] >= SEVERITY_RANK["minor"]


def incident_type_of(w: EarlyWarning) -> IncidentType | None:
    """The incident type a warning's kind can catch (None: no labelled type, e.g. gaps)."""
    if w.kind == "level_shift":
        return "sensor_spike" if w.sensor_id else "complaint_burst"
    return next((t for t, kinds in INCIDENT_KINDS.items() if w.kind in kinds), None)


def hotspot_grids(w: EarlyWarning) -> set[str]:
    """A hotspot's anchor and member grids (``grid:`` evidence)."""
    return {w.where.grid_code} | {e[5:] for e in w.evidence if e.startswith("grid:")}


def key_overlaps(w: EarlyWarning, inc: Incident, city: City) -> bool:
    """Rule 2: the warning's subject overlaps the incident's (ignoring time)."""
    if inc.kind != "complaint_burst":
        return bool(w.sensor_id) and w.sensor_id in inc.sensors
    if w.sensor_id or w.category != inc.subcategory:
        return False
    grids = set(inc.grids)
    if w.kind == "hotspot":
        return bool(hotspot_grids(w) & grids)
    if w.where.grid_code:
        return w.where.grid_code in grids
    paths = [city.grid_paths[g] for g in grids]
    if w.where.community:
        return w.where.community in {p.community for p in paths}
    return bool(w.where.street) and w.where.street in {p.street for p in paths}


def matches(r: Raise, inc: Incident, city: City) -> bool:
    """The matching rule: kind fits the type, key overlaps, raised within the incident's
    start .. end + tolerance."""
    kind_fits = incident_type_of(r.warning) == inc.kind
    in_time = inc.start <= r.at <= inc.end + TOLERANCE[inc.kind]
    return kind_fits and in_time and key_overlaps(r.warning, inc, city)


# -- scores -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TypeScore:
    """One incident type over one or more runs (sums, and every detection delay)."""

    incidents: int
    detected: int
    raised: int
    matched: int
    raised_alarm: int
    matched_alarm: int
    free_key_raises: int
    days: float
    delays_s: tuple[float, ...]

    def __add__(self, other: TypeScore) -> TypeScore:
        return TypeScore(
            self.incidents + other.incidents,
            self.detected + other.detected,
            self.raised + other.raised,
            self.matched + other.matched,
            self.raised_alarm + other.raised_alarm,
            self.matched_alarm + other.matched_alarm,
            self.free_key_raises + other.free_key_raises,
            self.days + other.days,
            self.delays_s + other.delays_s,
        )

    @property
    def recall(self) -> float:
        return self.detected / self.incidents if self.incidents else 0.0

    @property
    def precision(self) -> float:
        return self.matched / self.raised if self.raised else 0.0

    @property
    def free_per_day(self) -> float:
        return self.free_key_raises / self.days if self.days else 0.0


def quantile(values: Sequence[float], q: float) -> float:
    """The q-quantile by linear interpolation (nan when empty)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    pos = q * (len(ordered) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def score_type(
    kind: IncidentType,
    found: Sequence[Raise],
    incidents: Sequence[Incident],
    city: City,
    span: tuple[datetime, datetime],
) -> TypeScore:
    """Score one incident type over ``span`` (its warm part of the run)."""
    start, end = span
    typed = [r for r in found if incident_type_of(r.warning) == kind and start <= r.at <= end]
    scored = [
        i
        for i in incidents
        if i.kind == kind and i.start >= start and i.end + TOLERANCE[kind] <= end
    ]
    delays = []
    for inc in scored:
        hits = [r.at for r in typed if matches(r, inc, city)]
        if hits:
            delays.append((min(hits) - inc.start).total_seconds())
    same_type = [i for i in incidents if i.kind == kind]
    matched = [r for r in typed if any(matches(r, i, city) for i in same_type)]
    free = [
        r
        for r in typed
        if not any(key_overlaps(r.warning, i, city) for i in incidents if i.kind in INCIDENT_KINDS)
        and r not in matched
    ]
    return TypeScore(
        incidents=len(scored),
        detected=len(delays),
        raised=len(typed),
        matched=len(matched),
        raised_alarm=sum(is_alarm(r) for r in typed),
        matched_alarm=sum(is_alarm(r) for r in matched),
        free_key_raises=len(free),
        days=max(0.0, (end - start) / timedelta(days=1)),
        delays_s=tuple(delays),
    )


def score_run(run: SimulatedRun) -> dict[IncidentType, TypeScore]:
    """Every incident type's score in one run."""
    found = raises(run.warnings)
    warm = type_warmups(run.sensor_period)
    return {
        kind: score_type(
            kind, found, run.incidents, run.city, (run.setup.start + warm[kind], run.setup.end)
        )
        for kind in TYPES
    }


KindKey = tuple[str, str, bool, bool]
"""(warning kind, sensor kind or "", matched an incident of its type, severity >= minor)."""


def kind_counts(run: SimulatedRun) -> Counter[KindKey]:
    """Raises per warning kind, sensor kind, matched or not and alarm or not (whole run)."""
    sensor_kinds = {s.id: s.kind for s in run.city.sensors}
    out: Counter[KindKey] = Counter()
    for r in raises(run.warnings):
        kind = incident_type_of(r.warning)
        hit = kind is not None and any(
            i.kind == kind and matches(r, i, run.city) for i in run.incidents
        )
        sensor_kind = sensor_kinds.get(r.warning.sensor_id, "")
        out[(r.warning.kind, sensor_kind, hit, is_alarm(r))] += 1
    return out


def evaluate(setup: EvalSetup) -> dict[IncidentType, TypeScore]:
    """Run one seed and score it."""
    return score_run(simulate(setup))


# -- breakdowns --------------------------------------------------------------------------------


def sensor_kind_recall(run: SimulatedRun) -> Counter[tuple[str, str, bool]]:
    """Scored sensor incidents per (incident type, sensor kind, detected)."""
    kinds = {s.id: s.kind for s in run.city.sensors}
    warm = type_warmups(run.sensor_period)
    found = raises(run.warnings)
    out: Counter[tuple[str, str, bool]] = Counter()
    for inc in run.incidents:
        if inc.kind == "complaint_burst" or not inc.sensors:
            continue
        if inc.start < run.setup.start + warm[inc.kind]:
            continue
        if inc.end + TOLERANCE[inc.kind] > run.setup.end:
            continue
        hit = any(matches(r, inc, run.city) for r in found)
        out[(inc.kind, kinds[inc.sensors[0]], hit)] += 1
    return out


@dataclass(frozen=True, slots=True)
class SeedResult:
    """One seed's scores and breakdowns."""

    seed: int
    scores: dict[IncidentType, TypeScore]
    kinds: Counter[KindKey]
    sensor_kinds: Counter[tuple[str, str, bool]]
    days: float


def run_seed(setup: EvalSetup) -> SeedResult:
    """Simulate one seed and score it with its breakdowns."""
    run = simulate(setup)
    return SeedResult(
        setup.seed, score_run(run), kind_counts(run), sensor_kind_recall(run), setup.days
    )


# -- the report --------------------------------------------------------------------------------


def fmt_delay(seconds: float) -> str:
    """A delay for humans: seconds, minutes or hours."""
    if seconds != seconds:
        return "–"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def ratio(part: int, whole: int) -> str:
    """``part / whole`` to two decimals, "–" when there is nothing to divide."""
    return f"{part / whole:.2f}" if whole else "–"


def type_table(totals: dict[IncidentType, TypeScore]) -> str:
    """The per-type table: incidents, detected, recall, precision, delays, free-key rate."""
    lines = [
        "| incident type | incidents | detected | recall | raises | precision "
        "| raises ≥ minor | precision ≥ minor | median delay | p90 delay "
        "| raises/day on incident-free keys |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for kind in TYPES:
        s = totals[kind]
        lines.append(
            f"| `{kind}` | {s.incidents} | {s.detected} | {ratio(s.detected, s.incidents)} "
            f"| {s.raised} | {ratio(s.matched, s.raised)} "
            f"| {s.raised_alarm} | {ratio(s.matched_alarm, s.raised_alarm)} "
            f"| {fmt_delay(quantile(s.delays_s, 0.5))} "
            f"| {fmt_delay(quantile(s.delays_s, 0.9))} | {s.free_per_day:.2f} |"
        )
    return "\n".join(lines)


def kind_table(results: Sequence[SeedResult]) -> str:
    """Raises per warning kind (and sensor kind) over the whole runs: matched to an incident
    or not, unmatched ones per simulated day (all, and minor or above)."""
    total: Counter[KindKey] = Counter()
    for r in results:
        total.update(r.kinds)
    days = sum(r.days for r in results)
    lines = [
        "| warning kind | sensor kind | incident type | raises | matched "
        "| unmatched / day | unmatched ≥ minor / day |",
        "|---|---|---|---:|---:|---:|---:|",
    ]
    for kind, sensor_kind in sorted({(k, s) for k, s, _, _ in total}):
        counts = {
            (hit, alarm): total[(kind, sensor_kind, hit, alarm)]
            for hit in (True, False)
            for alarm in (True, False)
        }
        matched = counts[(True, True)] + counts[(True, False)]
        missed = counts[(False, True)] + counts[(False, False)]
        types = [t for t, kinds in INCIDENT_KINDS.items() if kind in kinds]
        if kind == "level_shift":
            types = ["sensor_spike" if sensor_kind else "complaint_burst"]
        lines.append(
            f"| `{kind}` | {sensor_kind or '–'} | {', '.join(types) or '–'} "
            f"| {matched + missed} | {matched} | {missed / days:.2f} "
            f"| {counts[(False, True)] / days:.2f} |"
        )
    return "\n".join(lines)


def sensor_kind_table(results: Sequence[SeedResult]) -> str:
    """Recall of the sensor incident types per sensor kind."""
    total: Counter[tuple[str, str, bool]] = Counter()
    for r in results:
        total.update(r.sensor_kinds)
    kinds = sorted({k for _, k, _ in total})
    lines = [
        "| sensor kind | " + " | ".join(f"`{t}` detected / incidents" for t in TYPES[1:]) + " |",
        "|---|" + "---:|" * len(TYPES[1:]),
    ]
    for k in kinds:
        cells = [
            f"{total[(t, k, True)]} / {total[(t, k, True)] + total[(t, k, False)]}"
            for t in TYPES[1:]
        ]
        lines.append(f"| {k} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def totals_of(results: Sequence[SeedResult]) -> dict[IncidentType, TypeScore]:
    """Every type's scores summed over the seeds."""
    out = dict(results[0].scores)
    for r in results[1:]:
        out = {k: out[k] + r.scores[k] for k in TYPES}
    return out


def report(results: Sequence[SeedResult], setup: EvalSetup) -> str:
    """The markdown tables of a multi-seed evaluation (per type, per kind, per sensor kind)."""
    seeds = ",".join(str(r.seed) for r in results)
    return "\n\n".join(
        [
            f"Seeds {seeds}; {setup.days:g} simulated days each from {setup.start.date()}; "
            f"a generated {setup.cols} x {setup.rows}-grid city with "
            f"{setup.sensors_per_kind} sensors of each of 5 kinds; incidents every "
            f"{setup.incident_every_h:g} h ({setup.bursts} bursts, {setup.spikes} spikes, "
            f"{setup.silences} silences).",
            type_table(totals_of(results)),
            "Raises per warning kind (whole runs, warm-up included):",
            kind_table(results),
            "Sensor incidents by sensor kind:",
            sensor_kind_table(results),
        ]
    )


# -- docs and the command line ----------------------------------------------------------------

BEGIN = "<!-- simulated-incidents:begin (generated by python -m gridpulse.evaluate.incidents) -->"
END = "<!-- simulated-incidents:end -->"


def with_tables(doc: str, tables: str) -> str:
    """``doc`` with the generated block replaced by ``tables``; the section (heading and an
    empty block) is appended first when the document has none. Nothing else changes."""
    if BEGIN not in doc:
        doc = doc.rstrip("\n") + f"\n\n{SECTION}\n\n{BEGIN}\n{END}\n"
    head, rest = doc.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{BEGIN}\n{tables}\n{END}{tail}"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m gridpulse.evaluate.incidents",
        description="Precision, recall and delay of the detectors on the simulator's incidents.",
    )
    p.add_argument("--seeds", default="1,2,3", help="comma-separated simulator seeds")
    p.add_argument("--days", type=float, default=EvalSetup().days, help="simulated days per seed")
    p.add_argument("--sensors-per-kind", type=int, default=EvalSetup().sensors_per_kind)
    p.add_argument("--write-docs", action="store_true", help=f"update the tables in {DOCS}")
    p.add_argument("--docs", type=Path, default=DOCS, help=argparse.SUPPRESS)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    setups = [
        EvalSetup(seed=s, days=args.days, sensors_per_kind=args.sensors_per_kind) for s in seeds
    ]
    results = [run_seed(setup) for setup in setups]
    tables = report(results, setups[0])
    print(tables)
    if args.write_docs:
        args.docs.write_text(with_tables(args.docs.read_text(encoding="utf-8"), tables), "utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
