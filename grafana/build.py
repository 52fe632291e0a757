"""``gridpulse grafana build``: write the boards as dashboard JSON (``grafana/dashboards/``).

The committed files are this function's output for the defaults; ``--check`` compares instead
of writing and exits 1 when a file differs (the test does the same).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from grafana.boards import DEFAULT_DB, boards, dashboard
from grafana.catalogue import LANGS, Lang
from grafana.city import SAMPLE_CITY, load_city

DASHBOARDS = Path(__file__).resolve().parent / "dashboards"


def render_json(doc: dict[str, Any]) -> str:
    """The committed form: 2-space indent, UTF-8 text (Chinese titles readable), newline."""
    return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"


def dashboards(
    city_path: str | Path = SAMPLE_CITY, lang: Lang = "both", db: str = DEFAULT_DB
) -> dict[str, str]:
    """File name -> JSON text of every board."""
    city = load_city(city_path)
    return {
        f"{b.key}.json": render_json(dashboard(b, lang, db, city.timezone).to_json())
        for b in boards(city, lang)
    }


def write(files: dict[str, str], out: Path) -> list[str]:
    """Write the files that differ; returns their names."""
    out.mkdir(parents=True, exist_ok=True)
    changed = []
    for name, body in files.items():
        path = out / name
        if not path.exists() or path.read_text(encoding="utf-8") != body:
            path.write_text(body, encoding="utf-8")
            changed.append(name)
    return changed


def stale(files: dict[str, str], out: Path) -> list[str]:
    """Names of files missing or different under ``out``."""
    return [
        n
        for n, body in files.items()
        if not (out / n).exists() or (out / n).read_text(encoding="utf-8") != body
    ]


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="gridpulse grafana build", description=__doc__)
    p.add_argument("--out", type=Path, default=DASHBOARDS, help="folder of the JSON files")
    p.add_argument("--city", default=str(SAMPLE_CITY), help="city YAML (grids, time zone)")
    p.add_argument("--lang", choices=LANGS, default="both", help="titles: 中文 / English")
    p.add_argument("--db", default=DEFAULT_DB, help="ClickHouse database of the read model")
    p.add_argument("--check", action="store_true", help="compare only; exit 1 on a difference")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    files = dashboards(args.city, args.lang, args.db)
    if args.check:
        diff = stale(files, args.out)
        for name in diff:
            print(f"out of date: {args.out / name}", file=sys.stderr)
        return 1 if diff else 0
    for name in write(files, args.out):
        print(f"wrote {args.out / name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
