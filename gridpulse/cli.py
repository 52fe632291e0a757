"""The ``gridpulse`` console script: operate the pipeline piece by piece, or all at once."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from datetime import UTC, datetime
from pathlib import Path

from pydantic import SecretStr

from core.city import city_path
from core.settings import REPO_ROOT, Settings
from gridpulse.logs import LogFormat
from gridpulse.logs import configure as configure_logging

FORMATS = REPO_ROOT / "sources" / "formats"


def _settings(args: argparse.Namespace) -> Settings:
    """The settings of a command; the caller-id key comes from ``GRIDPULSE_CALLER_SALT``,
    else from the data dir (kept there by ``gridpulse up``)."""
    from infra.caller_salt import read_caller_salt

    overrides: dict[str, object] = {}
    if getattr(args, "city", None):
        overrides["city_file"] = city_path(args.city)
    settings = Settings(**overrides)  # type: ignore[arg-type]
    if "caller_salt" not in settings.model_fields_set:
        kept = read_caller_salt(settings.data_dir)
        if kept:
            settings = Settings(**overrides, caller_salt=SecretStr(kept))  # type: ignore[arg-type]
    return settings


def cmd_up(args: argparse.Namespace) -> int:
    from infra.stack import LocalStack

    s = _settings(args)
    stack = LocalStack(s, durable=args.durable, with_clickhouse_server=args.clickhouse_server)
    times = stack.up()
    print(stack.format_status(stack.status()))
    print("started in " + ", ".join(f"{k} {v:.2f}s" for k, v in times.items()))
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    from infra.stack import LocalStack

    LocalStack(_settings(args)).down()
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from infra.stack import LocalStack

    stack = LocalStack(_settings(args))
    print(stack.format_status(stack.status()))
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    from gridpulse.worker import run_worker

    run_worker(_settings(args), loglevel=args.loglevel)
    return 0


def _parse_start(value: str | None) -> datetime | None:
    if not value:
        return None
    dt = datetime.fromisoformat(value)
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def cmd_simulate(args: argparse.Namespace) -> int:
    from gridpulse.feeds import simulate

    stats = simulate(
        _settings(args),
        seed=args.seed,
        duration_s=args.duration,
        speed=args.speed,
        rate=args.rate,
        start=_parse_start(args.start),
        truth_path=args.truth,
        envelopes=not args.single_readings,
        bad_fraction=args.bad_fraction,
    )
    print(json.dumps(stats, default=str))
    return 0


def cmd_replay(args: argparse.Namespace) -> int:
    from gridpulse.feeds import replay

    s = _settings(args)
    report = replay(s, args.file, args.format, speed=args.speed, dry_run=args.dry_run)
    print(report)
    return 0


def cmd_city_import(args: argparse.Namespace) -> int:
    from sources.cityimport import CityMeta, city_file_text, import_city, load_mapping
    from sources.formats import load_format

    mapping = load_mapping(args.mapping)
    flags = {k: getattr(args, k) for k in CITY_PROPERTY_FLAGS if getattr(args, k) is not None}
    if flags:
        mapping = mapping.model_copy(
            update={"properties": mapping.properties.model_copy(update=flags)}
        )
    meta = CityMeta(
        code=args.code,
        name=args.name or args.code,
        timezone=args.timezone,
        tolerance=args.tolerance,
    )
    result = import_city(
        load_format(args.format),
        meta,
        geojson=args.geojson,
        export=args.export or (),
        mapping=mapping,
        parents=args.parents,
    )
    print(result.report(), file=sys.stderr)
    if result.city is None:
        return 1
    out = Path(args.out) if args.out else REPO_ROOT / "config" / "cities" / f"{args.code}.yaml"
    out.parent.mkdir(parents=True, exist_ok=True)
    made_by = " ".join(
        ["gridpulse city import", "--format", args.format, "--code", args.code]
        + (["--geojson", args.geojson] if args.geojson else ["--export", *args.export])
        + (["--mapping", args.mapping] if args.mapping else [])
        + [f"--{k.replace('_', '-')} {v}" for k, v in flags.items()]
    )
    out.write_text(city_file_text(result, made_by), encoding="utf-8")
    print(f"wrote {out}", file=sys.stderr)
    return 0


CITY_PROPERTY_FLAGS = (
    "grid_code",
    "grid_name",
    "community_code",
    "community_name",
    "street_code",
    "street_name",
    "district_code",
    "district_name",
    "owner",
    "households",
)
"""``gridpulse city import`` flags naming GeoJSON properties (``--grid-code`` …)."""


def cmd_query(args: argparse.Namespace) -> int:
    from gridpulse.query import run_query

    answer = run_query(_settings(args), args.sql)
    sys.stdout.write(answer)
    if not answer:
        print("0 rows", file=sys.stderr)
    return 0


def cmd_kpi(args: argparse.Namespace) -> int:
    from gridpulse.kpi import kpi_rows, period_bound, ranking_rows, render

    s = _settings(args)
    tz = s.city.timezone
    start, end = period_bound(args.start, tz), period_bound(args.end, tz)
    if args.rank:
        table = ranking_rows(s, args.level, start, end, args.rank)
    else:
        table = kpi_rows(s, args.level, start, end)
    sys.stdout.write(render(table, args.format))
    return 0


def cmd_countdown(args: argparse.Namespace) -> int:
    from gridpulse.kpi import countdown_table

    sys.stdout.write(countdown_table(_settings(args), args.limit))
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    if args.cases:
        from gridpulse.bench.cases import run_case_bench

        result = run_case_bench(args.cases)
    elif args.warnings:
        from gridpulse.bench.warnings import run_warning_bench

        result = run_warning_bench(args.warnings)
    elif args.alerts:
        from gridpulse.bench.alerts import run_alert_bench

        result = run_alert_bench(args.alerts, args.keep)
    else:
        from gridpulse.bench.run import run_bench

        result = run_bench(args)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return 0


GRAFANA_ACTIONS = {
    "build": "grafana.build",
    "push": "grafana.push",
    "render": "grafana.render",
}
"""``gridpulse grafana ACTION``: the module whose ``main(argv)`` does it."""


def cmd_detect(args: argparse.Namespace) -> int:
    from streams.detect.csvrun import main as detect_main

    return int(detect_main(args.rest))


def cmd_grafana(args: argparse.Namespace) -> int:
    import importlib

    module = importlib.import_module(GRAFANA_ACTIONS[args.action])
    return int(module.main(args.rest))


def cmd_run(args: argparse.Namespace) -> int:
    from gridpulse.run import run_all

    return run_all(_settings(args), args)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="gridpulse",
        description="City grid-management stream processing: broker -> Faust -> ClickHouse.",
    )
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--city",
        default=argparse.SUPPRESS,
        help="city name under config/cities (sample, la) or a YAML path",
    )
    p.add_argument("--city", help="city name under config/cities (sample, la) or a YAML path")
    sub = p.add_subparsers(dest="cmd", required=True)

    def add(name: str, help: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help, parents=[common])

    up = add("up", help="start the local broker (and optionally clickhouse-server)")
    up.add_argument("--durable", action="store_true", help="S3-backed broker via SeaweedFS")
    up.add_argument(
        "--clickhouse-server", action="store_true", help="also start Debian's clickhouse-server"
    )
    up.set_defaults(fn=cmd_up)
    add("down", help="stop what `up` started").set_defaults(fn=cmd_down)
    add("status", help="what is running").set_defaults(fn=cmd_status)

    w = add("worker", help="run the Faust worker")
    w.add_argument("--loglevel", default="INFO")
    w.set_defaults(fn=cmd_worker)

    sim = add("simulate", help="publish simulated city streams")
    sim.add_argument("--seed", type=int, default=7)
    sim.add_argument("--duration", type=float, default=3600.0, help="simulated seconds")
    sim.add_argument(
        "--speed",
        type=float,
        default=1.0,
        help="simulated seconds per wall second; 0 = as fast as possible",
    )
    sim.add_argument("--rate", type=float, default=1.0, help="rate multiplier")
    sim.add_argument("--start", help="simulated start time (ISO 8601); default now")
    sim.add_argument("--truth", help="write injected incidents (ground truth) to this JSONL")
    sim.add_argument(
        "--single-readings",
        action="store_true",
        help="one message per sensor reading instead of gateway envelopes",
    )
    sim.add_argument(
        "--bad-fraction",
        type=float,
        default=None,
        help="fraction of deliberately malformed messages",
    )
    sim.set_defaults(fn=cmd_simulate)

    rep = add("replay", help="publish a real 311 export as hotline requests")
    rep.add_argument("file")
    rep.add_argument(
        "--format",
        default="la311",
        help=f"an import format under {FORMATS} (e.g. la311) or a YAML path",
    )
    rep.add_argument(
        "--speed",
        type=float,
        default=0.0,
        help="event-time seconds per wall second; 0 = as fast as possible",
    )
    rep.add_argument(
        "--dry-run",
        action="store_true",
        help="read and check the export against the city, print the report; publish nothing",
    )
    rep.set_defaults(fn=cmd_replay)

    city = sub.add_parser("city", help="city files: import one from boundaries or an export")
    city_sub = city.add_subparsers(dest="city_cmd", required=True)
    ci = city_sub.add_parser(
        "import",
        parents=[common],
        help="build config/cities/<code>.yaml from a GeoJSON of grid polygons, or from "
        "311 export(s) when no boundaries exist (see docs/cities.md)",
    )
    src = ci.add_mutually_exclusive_group(required=True)
    src.add_argument("--geojson", help="FeatureCollection with one polygon per grid")
    src.add_argument("--export", nargs="+", help="311 export file(s) read with --format")
    ci.add_argument("--format", required=True, help="import format: categories, grid column")
    ci.add_argument("--code", required=True, help="city code (lower snake case)")
    ci.add_argument("--name", help="display name (default: the code)")
    ci.add_argument("--timezone", help="IANA zone (default: the format's)")
    ci.add_argument("--mapping", help="YAML: properties (GeoJSON) and levels (export columns)")
    ci.add_argument("--parents", help="GeoJSON of community/street/district polygons")
    ci.add_argument(
        "--tolerance",
        type=float,
        default=0.01,
        help="fraction of area tolerated in overlaps, gaps, repairs, outside a parent",
    )
    for flag in CITY_PROPERTY_FLAGS:
        ci.add_argument(f"--{flag.replace('_', '-')}", dest=flag, help="GeoJSON property name")
    ci.add_argument("--out", help="output path (default: config/cities/<code>.yaml)")
    ci.set_defaults(fn=cmd_city_import)

    q = add(
        "query",
        help="read-only SQL against the configured ClickHouse (TSV, or the query's FORMAT)",
    )
    q.add_argument("sql")
    q.set_defaults(fn=cmd_query)

    k = add("kpi", help="case KPIs (立案率, 结案率, 按期结案率, …) per unit, or a ranking")
    k.add_argument(
        "--level",
        default="street",
        choices=["grid", "community", "street", "district", "unit", "city"],
    )
    k.add_argument(
        "--start",
        required=True,
        help="period start (ISO date/time; naive: the city's local time)",
    )
    k.add_argument("--end", required=True, help="period end, exclusive")
    k.add_argument(
        "--format",
        default="table",
        choices=["table", "tsv", "csv", "json"],
        help="readable table (default) or tsv/csv/json for machines",
    )
    k.add_argument("--rank", help="rank units by this rate, e.g. on_time_close_rate")
    k.set_defaults(fn=cmd_kpi)

    cd = add("countdown", help="open cases by remaining time of their current stage")
    cd.add_argument("--limit", type=int, default=50)
    cd.set_defaults(fn=cmd_countdown)

    b = add("bench", help="end-to-end benchmark on a private local stack")
    b.add_argument("--json", help="also write the results to this file")
    b.add_argument("--seconds", type=float, default=20.0, help="length of each measured run")
    b.add_argument(
        "--phases",
        default="all",
        help="comma list: aiokafka,faust-take,faust-iter,single,envelopes,latency",
    )
    b.add_argument(
        "--latency-rate",
        type=float,
        default=None,
        help="msg/s of the latency run (default: half the single-event rate)",
    )
    b.add_argument(
        "--profile",
        metavar="DIR",
        help="py-spy the worker in phases 3-4; raw stacks and hot spots to DIR",
    )
    b.add_argument("--keep", action="store_true", help="keep the temp dir (logs) afterwards")
    b.add_argument(
        "--cases",
        type=int,
        metavar="N",
        const=1_000_000,
        nargs="?",
        help="instead: SLA case timers with N open cases in process (default 1 M)",
    )
    b.add_argument(
        "--alerts",
        type=int,
        metavar="N",
        const=10_000,
        nargs="?",
        help="instead: alert stage latency and an N-breach storm through a worker (10 000)",
    )
    b.add_argument(
        "--warnings",
        type=int,
        metavar="HOURS",
        const=14 * 24,
        nargs="?",
        help="instead: the warning judge on the sample city, rebuilt from HOURS of counts (336)",
    )
    b.set_defaults(fn=cmd_bench)

    det = add(
        "detect",
        help="the streaming detector over a CSV series (--csv FILE --time-col C --value-col V "
        "[--out OUT]): timestamp,value,score,alert per row",
    )
    det.set_defaults(fn=cmd_detect, passthrough=True)

    g = add("grafana", help="Grafana boards: build the JSON, push to a Grafana, render PNGs")
    g.add_argument(
        "action",
        choices=sorted(GRAFANA_ACTIONS),
        help="build: regenerate grafana/dashboards (--check: fail if stale); push --url "
        "--token: create/update folder, datasource and boards; render: PNGs to docs/boards",
    )
    g.set_defaults(fn=cmd_grafana, passthrough=True)

    r = add("run", help="local stack + worker + simulator + live view until Ctrl-C")
    r.add_argument("--seed", type=int, default=7)
    r.add_argument("--speed", type=float, default=60.0)
    r.add_argument("--rate", type=float, default=1.0)
    r.add_argument("--durable", action="store_true")
    r.set_defaults(fn=cmd_run)

    from gridpulse.alerts_cli import add_parsers as add_alert_parsers

    add_alert_parsers(sub, common)
    return p


def _log_format() -> LogFormat:
    """``settings.log_format``, or text while the settings do not validate (the command
    then reports why)."""
    try:
        return Settings().log_format
    except ValueError:
        return "text"


def main(argv: list[str] | None = None) -> int:
    configure_logging(_log_format())
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    if rest and not getattr(args, "passthrough", False):
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    args.rest = rest  # a pass-through command's own options (its module parses them)
    try:
        return int(args.fn(args) or 0)
    except KeyboardInterrupt:
        return 130
    except (ValueError, RuntimeError, OSError) as exc:  # user-facing errors, no traceback
        logging.getLogger("gridpulse").debug("command failed", exc_info=True)
        print(f"gridpulse {args.cmd}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
