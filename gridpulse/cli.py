"""The ``gridpulse`` console script: operate the pipeline piece by piece, or all at once."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from datetime import UTC, datetime
from pathlib import Path

from core.settings import REPO_ROOT, Settings
from gridpulse.cities import city_path

FORMATS = REPO_ROOT / "sources" / "formats"


def _settings(args: argparse.Namespace) -> Settings:
    overrides = {}
    if getattr(args, "city", None):
        overrides["city_file"] = city_path(args.city)
    return Settings(**overrides)  # type: ignore[arg-type]


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
    from sources.run import simulate

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
    from sources.run import replay

    s = _settings(args)
    report = replay(s, args.file, args.format, speed=args.speed)
    print(report)
    return 0


def cmd_query(args: argparse.Namespace) -> int:
    from gridpulse.query import run_query

    sys.stdout.write(run_query(_settings(args), args.sql))
    return 0


def _day(value: str) -> datetime:
    dt = datetime.fromisoformat(value)
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def cmd_kpi(args: argparse.Namespace) -> int:
    from gridpulse.kpi import kpi_table, ranking_table

    s = _settings(args)
    start, end = _day(args.start), _day(args.end)
    if args.rank:
        sys.stdout.write(ranking_table(s, args.level, start, end, args.rank))
    else:
        sys.stdout.write(kpi_table(s, args.level, start, end))
    return 0


def cmd_countdown(args: argparse.Namespace) -> int:
    from gridpulse.kpi import countdown_table

    sys.stdout.write(countdown_table(_settings(args), args.limit))
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    if args.cases:
        from gridpulse.bench.cases import run_case_bench

        result = run_case_bench(args.cases)
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
    rep.set_defaults(fn=cmd_replay)

    q = add("query", help="read-only SQL against the configured ClickHouse (TSV)")
    q.add_argument("sql")
    q.set_defaults(fn=cmd_query)

    k = add("kpi", help="case KPIs (立案率, 结案率, 按期结案率, …) per unit, or a ranking")
    k.add_argument(
        "--level",
        default="street",
        choices=["grid", "community", "street", "district", "unit", "city"],
    )
    k.add_argument("--start", required=True, help="period start (ISO date/time, UTC if naive)")
    k.add_argument("--end", required=True, help="period end, exclusive")
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
    return p


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    for noisy in ("httpx", "kafka"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
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
