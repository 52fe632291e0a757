"""``python -m grafana.render``: draw each board's panels, from the boards' own SQL, over a
simulated day, to PNG files in ``docs/boards/`` (one per board, panels where the board puts
them), so readers of the docs see what each board shows.

The SQL is the committed dashboards' ``rawSql`` expanded by ``grafana.macros`` exactly as for
the tests, run on the embedded engine loaded by ``grafana.sample``. Titles default to English:
matplotlib's bundled fonts have no CJK glyphs (``--lang both`` when a CJK font is installed).
"""

from __future__ import annotations

import argparse
import re
import tempfile
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from grafana import readmodel, sample
from grafana.boards import Board, boards, dashboard
from grafana.catalogue import LANGS, Lang
from grafana.city import SAMPLE_CITY, load_city
from grafana.macros import ALL, TimeRange, VariableValue, expand, panel_interval_ms
from grafana.model import Thresholds

DOCS = Path(__file__).resolve().parent.parent / "docs" / "boards"
DB = "gridpulse_render"
UNIT = 0.42  # inches per Grafana grid unit (24 columns wide)


def board_range(board: Board, day: sample.SampleDay, tz: str) -> TimeRange:
    """The time range shown: the day (operations), its last 24 h (SLA), the month so far
    (leadership)."""
    if board.key == "leadership":
        local = day.end.astimezone(_zone(tz)) - timedelta(seconds=1)
        month = datetime(local.year, local.month, 1, tzinfo=_zone(tz))
        return TimeRange.of(month, day.end)
    if board.key == "sla":
        return TimeRange.of(day.end - timedelta(hours=24), day.end)
    return TimeRange.of(day.start, day.end)


def _zone(tz: str) -> Any:
    from zoneinfo import ZoneInfo

    return ZoneInfo(tz)


def resolve_variables(
    backend: Any, doc: dict[str, Any], tr: TimeRange, db: str
) -> dict[str, VariableValue]:
    """Every variable at "All", options from its own query; ``db`` for the constant."""
    out: dict[str, VariableValue] = {}
    for v in doc["templating"]["list"]:
        if v["type"] == "constant":
            out[v["name"]] = VariableValue(db if v["name"] == "db" else v["query"])
        elif v["type"] == "custom":
            out[v["name"]] = VariableValue([ALL], options=tuple(v["query"].split(",")))
        else:
            opts = tuple(r[0] for r in backend.rows_sync(expand(v["query"], tr, out)))
            out[v["name"]] = VariableValue([ALL], options=opts)
    return out


def _frame(backend: Any, sql: str, columns: Sequence[str]) -> Any:
    import pandas as pd

    return pd.DataFrame(backend.rows_sync(sql), columns=list(columns))


_COLORS = {"green": "#2e9e44", "orange": "#e08a00", "red": "#d23c3c", "blue": "#1f60c4"}


def _threshold_color(value: Any, thresholds: Thresholds | None) -> str:
    """The colour Grafana gives ``value``: the last step whose value it reaches."""
    color = "black"
    if thresholds is None or not isinstance(value, (int, float)) or value != value:
        return color
    for step in thresholds.steps:
        if step.value is None or value >= step.value:
            color = _COLORS.get(step.color, step.color)
    return color


def _draw_stat(ax: Any, df: Any, unit: str | None, thresholds: Thresholds | None) -> None:
    ax.axis("off")
    if df.empty:
        return
    row = df.iloc[0]
    suffix = " %" if unit == "percent" else ""
    cols = [c for c in ("current", "change") if c in df.columns] or list(df.columns)
    lines = []
    for c in cols:
        v = row[c]
        if c == "change":
            lines.append((f"Δ {v:+.2f} pp" if v == v else "Δ –", 13, "dimgray"))
        else:
            shown = f"{v:,.2f}{suffix}" if isinstance(v, float) else f"{v:,}{suffix}"
            label = "" if c == "current" or len(cols) == 1 else f"{c}  "
            color = _threshold_color(v, thresholds) if len(cols) < 3 else "black"
            lines.append((label + shown, 22 if len(cols) < 3 else 15, color))
    for i, (s, size, color) in enumerate(lines):
        ax.text(
            0.5,
            0.62 - i * 0.3,
            s,
            ha="center",
            va="center",
            fontsize=size,
            color=color,
            transform=ax.transAxes,
        )


def _numeric(column: Any) -> bool:
    import pandas as pd

    return bool(pd.to_numeric(column, errors="coerce").notna().all())


def _draw_timeseries(
    ax: Any, df: Any, tz: str, bars_s: int | None = None, stacked: bool = False
) -> None:
    """Lines, or bars ``bars_s`` seconds wide (a panel drawn as bars), stacked or side by
    side."""
    import pandas as pd

    df = df.copy()
    df["time"] = pd.to_datetime(df["time"], utc=True).dt.tz_convert(tz).dt.tz_localize(None)
    labels = [c for c in df.columns if c != "time" and not _numeric(df[c])]
    values = [c for c in df.columns if c != "time" and c not in labels]
    for c in values:
        df[c] = pd.to_numeric(df[c])
    if labels:
        wide = df.pivot_table(index="time", columns=labels[0], values=values[0], aggfunc="sum")
    else:
        wide = df.set_index("time")[values]
    if bars_s:
        width = pd.Timedelta(seconds=bars_s) * 0.9 / (1 if stacked else len(wide.columns))
        bottom = pd.Series(0.0, index=wide.index)
        for k, name in enumerate(wide.columns):
            height = wide[name].fillna(0)
            x = wide.index if stacked else wide.index + width * k
            ax.bar(x, height, width, bottom=bottom, align="edge", label=str(name))
            if stacked:
                bottom += height
    else:
        for name in wide.columns:
            ax.plot(wide.index, wide[name], label=str(name), linewidth=1.2)
    ax.legend(fontsize=7, loc="upper left")
    ax.tick_params(labelsize=7)
    ax.grid(alpha=0.3)


def _draw_bars(ax: Any, df: Any, stacked: bool) -> None:
    label = df.columns[0]
    vals = [c for c in df.columns[1:]]
    df = df.iloc[::-1]
    left = [0.0] * len(df)
    for c in vals:
        ax.barh(
            df[label].astype(str),
            df[c].astype(float),
            left=left if stacked else None,
            label=c,
            height=0.7,
        )
        if stacked:
            left = [a + float(b) for a, b in zip(left, df[c], strict=True)]
    if len(vals) > 1:
        ax.legend(fontsize=7)
    ax.tick_params(labelsize=7)
    ax.grid(axis="x", alpha=0.3)


_DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$")


def _local_times(column: Any, tz: str) -> Any:
    """UTC ``DateTime`` strings as the board shows them: in the city's time zone."""
    import pandas as pd

    return pd.to_datetime(column, utc=True).dt.tz_convert(tz).dt.strftime("%m-%d %H:%M")


_SEVERITY_FILL = {"critical": "#f2b8b8", "major": "#f7d29c", "minor": "#f5eca6", "info": "#c4d7f2"}
_LONG = 48  # characters of a text cell shown (Grafana truncates a cell to its width)


def _short(v: Any) -> str:
    text = str(v)
    return text if len(text) <= _LONG else text[: _LONG - 1] + "…"


def _draw_table(ax: Any, df: Any, max_rows: int, tz: str) -> None:
    ax.axis("off")
    shown = df.head(max_rows).copy()
    for c in shown.columns:
        if len(shown) and shown[c].map(lambda v: bool(_DATETIME.match(str(v)))).all():
            shown[c] = _local_times(shown[c], tz)
        elif shown[c].dtype == float:
            shown[c] = shown[c].map(lambda v: "–" if v != v else f"{v:.2f}")
    table = ax.table(
        cellText=shown.map(_short).values,
        colLabels=list(shown.columns),
        loc="upper center",
        cellLoc="left",
    )
    table.auto_set_font_size(False)
    table.set_fontsize(6.5)
    table.scale(1, 1.1)
    if "severity" in shown.columns:  # the board colours the severity cell
        col = list(shown.columns).index("severity")
        for row, severity in enumerate(shown["severity"], start=1):
            table[row, col].set_facecolor(_SEVERITY_FILL.get(severity, "white"))


def _draw_map(ax: Any, df: Any, city_path: Path) -> None:
    import yaml
    from shapely.geometry import shape

    doc = yaml.load(
        city_path.read_text(encoding="utf-8"), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    )
    for d in doc["districts"]:
        for s in d["streets"]:
            for c in s["communities"]:
                for g in c["grids"]:
                    x, y = shape(g["polygon"]).exterior.xy
                    ax.plot(x, y, color="lightgray", linewidth=0.3)
    sc = ax.scatter(
        df["longitude"],
        df["latitude"],
        c=df["events"],
        s=6 + df["events"] / 3,
        cmap="RdYlGn_r",
        alpha=0.8,
    )
    ax.figure.colorbar(sc, ax=ax, shrink=0.7, label="events")
    ax.set_aspect("equal")
    ax.tick_params(labelsize=6)


def _bar_seconds(df: Any, interval_ms: int) -> int:
    """A bar's width: the gap between the series' buckets (hourly ones too), at least the
    panel's interval."""
    import pandas as pd

    times = pd.to_datetime(df["time"], utc=True).drop_duplicates().sort_values()
    gaps = times.diff().dropna().dt.total_seconds()
    return int(max(interval_ms // 1000, gaps.min() if len(gaps) else 0))


def render_board(
    backend: Any,
    board: Board,
    lang: Lang,
    tz: str,
    day: sample.SampleDay,
    city_path: Path,
    out: Path,
    db: str = DB,
) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    doc = dashboard(board, lang, db, tz).to_json()
    tr = board_range(board, day, tz)
    variables = resolve_variables(backend, doc, tr, db)
    height = max(p["gridPos"]["y"] + p["gridPos"]["h"] for p in doc["panels"])
    fig = plt.figure(figsize=(24 * UNIT * 1.6, height * UNIT + 0.8))
    start = datetime.fromtimestamp(tr.from_s, _zone(tz)).strftime("%Y-%m-%d %H:%M")
    end = datetime.fromtimestamp(tr.to_s + 1, _zone(tz)).strftime("%Y-%m-%d %H:%M")
    fig.suptitle(f"{doc['title']}  ·  simulated data  ·  {start} – {end} ({tz})", fontsize=14)
    top = 1 - 0.6 / (height * UNIT + 0.8)
    for panel, spec in zip(doc["panels"], board.panels, strict=True):
        g = panel["gridPos"]
        rect = (
            g["x"] / 24 + 0.035 / 2,
            top - (g["y"] + g["h"]) / height * top + 0.03,
            g["w"] / 24 - 0.035,
            g["h"] / height * top - 0.06,
        )
        ax = fig.add_axes(rect)
        ax.set_title(panel["title"], fontsize=9, loc="left")
        interval_ms = 300_000
        if spec.max_data_points:
            interval_ms = max(interval_ms, panel_interval_ms(tr, spec.max_data_points))
        sql = expand(panel["targets"][0]["rawSql"], tr, variables, interval_ms=interval_ms)
        df = _frame(backend, sql, spec.queries[0].columns)
        if spec.type == "stat":
            _draw_stat(ax, df, spec.unit, spec.thresholds)
        elif spec.type == "timeseries":
            custom = spec.custom or {}
            bars = _bar_seconds(df, interval_ms) if custom.get("drawStyle") == "bars" else None
            stacked = custom.get("stacking", {}).get("mode") == "normal"
            _draw_timeseries(ax, df, tz, bars, stacked)
        elif spec.type in ("bargauge", "barchart"):
            _draw_bars(ax, df.head(15), stacked=spec.type == "barchart")
        elif spec.type == "geomap":
            _draw_map(ax, df, city_path)
        else:
            _draw_table(ax, df, max_rows=max(3, int(g["h"] * 1.6) - 2), tz=tz)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{board.key}.png"
    fig.savefig(path, dpi=80, metadata={"Software": None})
    plt.close(fig)
    return path


def render_all(
    backend: Any,
    out: Path,
    lang: Lang = "en",
    city_path: Path = SAMPLE_CITY,
    day: str = "2026-11-30",
) -> list[Path]:
    """Load the simulated ``day`` into ``backend`` (a fresh database) and draw every board."""
    city = load_city(city_path)
    data = sample.generate(city, day)
    readmodel.prepare(backend)
    sample.load(backend, data)
    return [
        render_board(backend, b, lang, city.timezone, data, Path(city_path), out)
        for b in boards(city, lang)
    ]


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m grafana.render", description=__doc__)
    p.add_argument("--out", type=Path, default=DOCS)
    p.add_argument("--lang", choices=LANGS, default="en")
    p.add_argument("--city", type=Path, default=SAMPLE_CITY)
    p.add_argument("--day", default="2026-11-30", help="the simulated local day")
    args = p.parse_args(argv)
    from sinks.clickhouse.backend import ChdbBackend

    with tempfile.TemporaryDirectory(prefix="gridpulse-render-") as tmp:
        backend = ChdbBackend(tmp, db=DB)
        try:
            for path in render_all(backend, args.out, args.lang, args.city, args.day):
                print(f"wrote {path}")
        finally:
            backend.close_sync()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
