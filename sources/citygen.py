"""Deterministic sample-city generator: a Fuzhou-like prefecture of ~800 grids.

The grids are the cells of a jittered lattice: neighbouring cells share their vertices, so
the polygons tile the city box without gaps or overlaps and point-in-polygon is meaningful.
Lattice rows are cut into bands of ``band_rows`` rows; each band is cut into communities
(contiguous runs of columns), communities are chained in serpentine order (so consecutive
ones touch) and that chain is cut into streets, the first streets forming district one.

    python -m sources.citygen --seed 7 --out config/cities/sample.yaml
"""

from __future__ import annotations

import argparse
import copy
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from pydantic import BaseModel

from core.city import City


class CityGenConfig(BaseModel):
    """Every tunable of the generated city."""

    code: str = "FZS"
    name: str = "Sample prefecture (generated)"
    timezone: str = "Asia/Shanghai"
    lon_range: tuple[float, float] = (119.25, 119.40)
    lat_range: tuple[float, float] = (26.03, 26.12)
    cols: int = 40
    rows: int = 20
    band_rows: int = 2  # lattice rows per band of communities
    communities_per_band: int = 10
    community_cols: tuple[int, int] = (3, 5)  # min/max columns of one community
    streets_per_district: tuple[int, ...] = (4, 3)
    street_communities: tuple[int, int] = (11, 18)  # min/max communities of one street
    # vertex jitter as a fraction of a cell side; < 0.25 keeps every cell convex
    jitter: float = 0.2
    households: tuple[int, int] = (220, 420)
    sensors_per_kind: dict[str, int] = {
        "water_level": 250,
        "manhole_tilt": 400,
        "pm25": 150,
        "noise": 300,
        "bin_fill": 400,
    }
    sensor_margin: float = 0.1  # keep sensors this far (cell fraction) from a cell's edges
    decimals: int = 6
    shuffle_rounds: int = 200  # random +1/-1 moves that vary community and street sizes


DISTRICTS = [("Gulou", "鼓楼区"), ("Taijiang", "台江区")]
STREETS = [
    ("Dongjie", "东街街道"),
    ("Nanjie", "南街街道"),
    ("Wenquan", "温泉街道"),
    ("Gudong", "鼓东街道"),
    ("Yingzhou", "瀛洲街道"),
    ("Houzhou", "后洲街道"),
    ("Yizhou", "义洲街道"),
]
COMMUNITY_STEMS = str.split(
    "三坊 七巷 乌山 屏山 西湖 温泉 琴亭 冶山 华林 树兜 湖前 杨桥 洪山 铜盘 双抛 达明 茶亭 福新 "
    "鳌峰 三保 洋头 河口 排尾 中亭 新港 帮洲 苍霞 南公 亚峰 青年 龙峰 光明 东升 水部 五一 "
    "庆城 井大 文藻 安泰 朱紫"
)
COMMUNITY_SUFFIXES = ["", "东", "西", "南", "北", "新村", "里"]
SURNAMES = list("陈林黄张李王吴刘蔡杨郑许谢郭洪曾邱廖赖周")
GIVEN = list("秀英美玲建华志强丽娟伟明晓燕国平小红文杰海峰春梅")

SENSOR_KINDS: list[dict[str, Any]] = [
    {
        "code": "water_level",
        "name": "Water level (road / river)",
        "unit": "m",
        "min": 0.0,
        "max": 10.0,
    },
    {"code": "manhole_tilt", "name": "Manhole cover tilt", "unit": "deg", "min": 0.0, "max": 90.0},
    {"code": "pm25", "name": "PM2.5", "unit": "µg/m³", "min": 0.0, "max": 1000.0},
    {"code": "noise", "name": "Noise level", "unit": "dB", "min": 20.0, "max": 140.0},
    {"code": "bin_fill", "name": "Waste bin fill level", "unit": "%", "min": 0.0, "max": 100.0},
]

# China's public holidays and 调休 working days, from the State Council General Office notices
# 国务院办公厅关于2025年部分节假日安排的通知 / 关于2026年部分节假日安排的通知.
CN_HOLIDAY_RANGES: list[tuple[date, date]] = [  # inclusive (first, last) days off
    (date(2025, 1, 1), date(2025, 1, 1)),  # 元旦
    (date(2025, 1, 28), date(2025, 2, 4)),  # 春节
    (date(2025, 4, 4), date(2025, 4, 6)),  # 清明节
    (date(2025, 5, 1), date(2025, 5, 5)),  # 劳动节
    (date(2025, 5, 31), date(2025, 6, 2)),  # 端午节
    (date(2025, 10, 1), date(2025, 10, 8)),  # 国庆节、中秋节
    (date(2026, 1, 1), date(2026, 1, 3)),  # 元旦
    (date(2026, 2, 15), date(2026, 2, 23)),  # 春节
    (date(2026, 4, 4), date(2026, 4, 6)),  # 清明节
    (date(2026, 5, 1), date(2026, 5, 5)),  # 劳动节
    (date(2026, 6, 19), date(2026, 6, 21)),  # 端午节
    (date(2026, 9, 25), date(2026, 9, 27)),  # 中秋节
    (date(2026, 10, 1), date(2026, 10, 7)),  # 国庆节
]
CN_ADJUSTED_WORKDAYS: list[date] = [
    date(2025, 1, 26),
    date(2025, 2, 8),
    date(2025, 4, 27),
    date(2025, 9, 28),
    date(2025, 10, 11),
    date(2026, 1, 4),
    date(2026, 2, 14),
    date(2026, 2, 28),
    date(2026, 5, 9),
    date(2026, 9, 20),
    date(2026, 10, 10),
]
WORK_PERIODS = [("08:30", "12:00"), ("14:00", "17:30")]
WEEKEND = [6, 7]  # ISO weekday numbers: Saturday, Sunday
CALENDAR_COMMENT = (
    "# Working calendar for case time limits. Holidays and adjusted working days (调休) are\n"
    "# China's 2025 and 2026 public holidays per the State Council General Office notices\n"
    "# (国务院办公厅关于2025年/2026年部分节假日安排的通知). Cities must keep them current:\n"
    "# add each new year's days when its notice is published (usually in November).\n"
)

_I, _H, _S = "inspector", "hotline", "sensor"
CATEGORIES: list[tuple[str, str, str, list[tuple[str, str, str, list[str]]]]] = [
    (
        "sanitation",
        "Sanitation",
        "环境卫生",
        [
            ("overflowing_bin", "Overflowing bin", "垃圾满溢", [_I, _H, _S]),
            ("exposed_garbage", "Exposed garbage", "暴露垃圾", [_I, _H]),
            ("street_cleanliness", "Street cleanliness", "道路不洁", [_I, _H]),
        ],
    ),
    (
        "facilities",
        "Public facilities",
        "市政设施",
        [
            ("broken_streetlight", "Broken streetlight", "路灯损坏", [_I, _H]),
            ("damaged_road", "Damaged road", "道路破损", [_I, _H]),
            ("manhole_cover", "Manhole cover missing or damaged", "井盖缺失破损", [_I, _H, _S]),
        ],
    ),
    (
        "order",
        "City order",
        "市容秩序",
        [
            ("illegal_construction", "Illegal construction", "违章搭建", [_I, _H]),
            ("street_vending", "Street vending", "占道经营", [_I, _H]),
            ("illegal_parking", "Illegal parking", "违规停车", [_I, _H]),
        ],
    ),
    (
        "disputes",
        "Disputes",
        "矛盾纠纷",
        [
            ("neighbour_dispute", "Neighbour dispute", "邻里纠纷", [_I, _H]),
            ("noise_complaint", "Noise complaint", "噪音扰民", [_I, _H, _S]),
        ],
    ),
    (
        "safety",
        "Safety hazards",
        "安全隐患",
        [
            ("fire_hazard", "Fire hazard", "消防隐患", [_I, _H]),
            ("hazardous_structure", "Hazardous structure", "危房隐患", [_I, _H]),
        ],
    ),
    (
        "environment",
        "Environment",
        "生态环境",
        [
            ("water_logging", "Water logging", "道路积水", [_I, _H, _S]),
            ("air_quality", "Air quality", "空气污染", [_H, _S]),
        ],
    ),
]


def vary_sizes(
    rng: np.random.Generator, parts: int, total: int, lo: int, hi: int, rounds: int
) -> list[int]:
    """``parts`` integers in [lo, hi] summing to ``total``, randomised by +1/-1 moves."""
    base, extra = divmod(total, parts)
    sizes = [base + (1 if i < extra else 0) for i in range(parts)]
    if not all(lo <= s <= hi for s in sizes):
        raise ValueError(f"cannot split {total} into {parts} parts of {lo}..{hi}")
    for _ in range(rounds):
        a, b = (int(x) for x in rng.integers(0, parts, size=2))
        if a != b and sizes[a] < hi and sizes[b] > lo:
            sizes[a] += 1
            sizes[b] -= 1
    return sizes


def lattice_vertices(cfg: CityGenConfig, rng: np.random.Generator) -> np.ndarray:
    """(cols+1, rows+1, 2) lon/lat vertices; interior ones jittered, the box edges kept."""
    xs = np.linspace(*cfg.lon_range, cfg.cols + 1)
    ys = np.linspace(*cfg.lat_range, cfg.rows + 1)
    dx, dy = xs[1] - xs[0], ys[1] - ys[0]
    vx, vy = np.meshgrid(xs, ys, indexing="ij")
    jx = rng.uniform(-cfg.jitter, cfg.jitter, vx.shape) * dx
    jy = rng.uniform(-cfg.jitter, cfg.jitter, vy.shape) * dy
    jx[[0, -1], :] = 0.0
    jy[:, [0, -1]] = 0.0
    return np.round(np.stack([vx + jx, vy + jy], axis=-1), cfg.decimals)


def cell_ring(v: np.ndarray, i: int, j: int) -> list[list[float]]:
    """The closed counter-clockwise ring of lattice cell (column i, row j)."""
    corners = [v[i, j], v[i + 1, j], v[i + 1, j + 1], v[i, j + 1], v[i, j]]
    return [[float(x), float(y)] for x, y in corners]


def community_blocks(cfg: CityGenConfig, rng: np.random.Generator) -> list[list[tuple[int, int]]]:
    """Communities as lists of (col, row) cells, in serpentine order (neighbours consecutive)."""
    bands = cfg.rows // cfg.band_rows
    blocks: list[list[tuple[int, int]]] = []
    for band in range(bands):
        widths = vary_sizes(
            rng, cfg.communities_per_band, cfg.cols, *cfg.community_cols, cfg.shuffle_rounds
        )
        edges = np.concatenate([[0], np.cumsum(widths)])
        band_blocks = [
            [
                (i, j)
                for j in range(band * cfg.band_rows, (band + 1) * cfg.band_rows)
                for i in range(int(a), int(b))
            ]
            for a, b in zip(edges[:-1], edges[1:], strict=True)
        ]
        blocks.extend(band_blocks if band % 2 == 0 else band_blocks[::-1])
    return blocks


def person_name(rng: np.random.Generator) -> str:
    given = "".join(rng.choice(GIVEN, size=int(rng.integers(1, 3))))
    return f"{rng.choice(SURNAMES)}{given}"


def community_names(rng: np.random.Generator, n: int) -> list[str]:
    pool = [f"{s}{x}社区" for s in COMMUNITY_STEMS for x in COMMUNITY_SUFFIXES]
    return [pool[int(k)] for k in rng.permutation(len(pool))[:n]]


def point_in_cell(v: np.ndarray, i: int, j: int, u: float, w: float) -> tuple[float, float]:
    """Bilinear point of a convex cell: a convex combination of its corners, so inside."""
    p = (
        (1 - u) * (1 - w) * v[i, j]
        + u * (1 - w) * v[i + 1, j]
        + u * w * v[i + 1, j + 1]
        + (1 - u) * w * v[i, j + 1]
    )
    return float(p[0]), float(p[1])


def categories() -> list[dict[str, Any]]:
    return [
        {
            "code": code,
            "name": name,
            "name_zh": zh,
            "subcategories": [
                {"code": f"{code}.{s}", "name": sn, "name_zh": sz, "streams": list(streams)}
                for s, sn, sz, streams in subs
            ],
        }
        for code, name, zh, subs in CATEGORIES
    ]


def sample_calendar(timezone: str) -> dict[str, Any]:
    """The working-calendar section (``core.calendar_config.WorkingCalendar``)."""
    holidays = [
        first + timedelta(days=k)
        for first, last in CN_HOLIDAY_RANGES
        for k in range((last - first).days + 1)
    ]
    return {
        "timezone": timezone,
        "work_periods": [list(p) for p in WORK_PERIODS],
        "weekend": list(WEEKEND),
        "holidays": holidays,
        "adjusted_workdays": list(CN_ADJUSTED_WORKDAYS),
    }


def generate_city(seed: int, cfg: CityGenConfig | None = None) -> dict[str, Any]:
    """A city-config dict (validates as ``City``); the same seed gives the same city."""
    cfg = cfg or CityGenConfig()
    rng = np.random.default_rng(seed)
    v = lattice_vertices(cfg, rng)
    blocks = community_blocks(cfg, rng)
    n_streets = sum(cfg.streets_per_district)
    street_sizes = vary_sizes(
        rng, n_streets, len(blocks), *cfg.street_communities, cfg.shuffle_rounds
    )
    names = community_names(rng, len(blocks))
    cell_of: dict[str, tuple[int, int]] = {}
    districts: list[dict[str, Any]] = []
    block_iter = iter(enumerate(blocks))
    street_iter = iter(zip(street_sizes, STREETS, strict=False))
    owner = 0
    for d, n_in_district in enumerate(cfg.streets_per_district, start=1):
        dcode = f"D{d:02d}"
        streets = []
        for s in range(1, n_in_district + 1):
            size, (s_py, s_zh) = next(street_iter)
            scode = f"{dcode}S{s:02d}"
            comms = []
            for c in range(1, size + 1):
                k, cells = next(block_iter)
                ccode = f"{scode}C{c:03d}"
                grids = []
                for g, (i, j) in enumerate(cells, start=1):
                    owner += 1
                    gcode = f"{ccode}G{g:02d}"
                    cell_of[gcode] = (i, j)
                    grids.append(
                        {
                            "code": gcode,
                            "name": f"{names[k]}第{g}网格",
                            "owner": f"owner-{owner:04d} {person_name(rng)}",
                            "households": int(
                                rng.integers(cfg.households[0], cfg.households[1] + 1)
                            ),
                            "polygon": {"type": "Polygon", "coordinates": [cell_ring(v, i, j)]},
                        }
                    )
                comms.append({"code": ccode, "name": names[k], "grids": grids})
            streets.append({"code": scode, "name": f"{s_zh} ({s_py})", "communities": comms})
        d_py, d_zh = DISTRICTS[(d - 1) % len(DISTRICTS)]
        districts.append({"code": dcode, "name": f"{d_zh} ({d_py})", "streets": streets})
    return {
        "code": cfg.code,
        "name": cfg.name,
        "timezone": cfg.timezone,
        "calendar": sample_calendar(cfg.timezone),
        "districts": districts,
        "categories": categories(),
        "sensor_kinds": [dict(k) for k in SENSOR_KINDS if k["code"] in cfg.sensors_per_kind],
        "sensors": sensors(cfg, rng, v, cell_of),
    }


def sensors(
    cfg: CityGenConfig, rng: np.random.Generator, v: np.ndarray, cell_of: dict[str, tuple[int, int]]
) -> list[dict[str, Any]]:
    """Sensors of every kind, each at a point well inside a random grid."""
    codes = list(cell_of)
    lo, hi = cfg.sensor_margin, 1 - cfg.sensor_margin
    out = []
    for kind, count in cfg.sensors_per_kind.items():
        for n in range(1, count + 1):
            grid = codes[int(rng.integers(len(codes)))]
            lon, lat = point_in_cell(v, *cell_of[grid], rng.uniform(lo, hi), rng.uniform(lo, hi))
            out.append(
                {
                    "id": f"S-{kind}-{n:04d}",
                    "kind": kind,
                    "grid": grid,
                    "lon": round(lon, cfg.decimals),
                    "lat": round(lat, cfg.decimals),
                }
            )
    return out


YAML_WIDTH = 1000  # one line per polygon: compact and diff-friendly


class _Flow(list):  # type: ignore[type-arg]
    """A list dumped in YAML flow style (``[a, b]``)."""


class _FlowMap(dict):  # type: ignore[type-arg]
    """A mapping dumped in YAML flow style (``{k: v}``)."""


class _Quoted(str):
    """A string always dumped double-quoted (``"12:00"`` would otherwise be an int)."""


class _Dumper(yaml.SafeDumper):
    pass


_Dumper.add_representer(
    _Flow, lambda d, x: d.represent_sequence("tag:yaml.org,2002:seq", x, flow_style=True)
)
_Dumper.add_representer(
    _FlowMap, lambda d, x: d.represent_mapping("tag:yaml.org,2002:map", x, flow_style=True)
)
_Dumper.add_representer(
    _Quoted, lambda d, x: d.represent_scalar("tag:yaml.org,2002:str", str(x), style='"')
)


def compact(city: dict[str, Any]) -> dict[str, Any]:
    """The same data with polygon coordinates and sensors marked for flow style."""
    City.model_validate(city)  # never write an invalid file
    out = copy.deepcopy(city)
    for d in out["districts"]:
        for s in d["streets"]:
            for c in s["communities"]:
                for g in c["grids"]:
                    rings = g["polygon"]["coordinates"]
                    g["polygon"]["coordinates"] = _Flow(_Flow(_Flow(p) for p in r) for r in rings)
    for cat in out["categories"]:
        for sub in cat["subcategories"]:
            sub["streams"] = _Flow(sub["streams"])
    out["sensors"] = [_FlowMap(s) for s in out["sensors"]]
    cal = out.get("calendar")
    if cal:
        cal["work_periods"] = _Flow(_Flow(_Quoted(t) for t in p) for p in cal["work_periods"])
        cal["weekend"] = _Flow(cal["weekend"])
    return out


def dump_city(city: dict[str, Any]) -> str:
    text = yaml.dump(
        compact(city), Dumper=_Dumper, allow_unicode=True, sort_keys=False, width=YAML_WIDTH
    )
    return text.replace("\ncalendar:\n", "\n" + CALENDAR_COMMENT + "calendar:\n", 1)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="write a deterministic sample city config (YAML)")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(dump_city(generate_city(args.seed)), encoding="utf-8")
    print(f"wrote {args.out} ({args.out.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
