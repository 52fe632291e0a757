"""Every title the boards show, in Chinese and English, from one place.

``text(key, lang)`` gives ``"中文 / English"`` (``both``, the default), or one language.
"""

from __future__ import annotations

from typing import Literal

from sinks.clickhouse.kpis import RATES

Lang = Literal["both", "zh", "en"]
LANGS: tuple[str, ...] = ("both", "zh", "en")

TEXT: dict[str, tuple[str, str]] = {
    # boards
    "board.operations": ("运行监控", "Operations"),
    "board.sla": ("时限与值班", "SLA & on-call"),
    "board.leadership": ("领导驾驶舱", "Leadership"),
    # variables
    "var.district": ("区", "District"),
    "var.street": ("街道", "Street"),
    "var.community": ("社区", "Community"),
    "var.grid": ("网格", "Grid"),
    "var.category": ("大类", "Category"),
    "var.source": ("来源", "Source"),
    # operations
    "ops.rate": ("各来源事件速率", "Events per second by source"),
    "ops.total": ("事件数", "Events"),
    "ops.late": ("迟到事件", "Late events"),
    "ops.dead": ("死信", "Dead letters"),
    "ops.dead_by_reason": ("死信原因", "Dead letters by reason"),
    "ops.by_street": ("各街道事件数", "Events by street"),
    "ops.by_community": ("各社区事件数 (前 20)", "Events by community (top 20)"),
    "ops.by_grid": ("网格负荷 (前 15)", "Busiest grids (top 15)"),
    "ops.map": ("网格负荷地图", "Grid load map"),
    "ops.rising": ("上升最快的小类 (最近 1 小时)", "Top rising subcategories (last hour)"),
    "ops.ingest_delay": ("入库延迟", "Ingest delay (ingested_at − record_time)"),
    "ops.late_rate": ("迟到事件趋势", "Late events over time"),
    # sla
    "sla.countdown": ("在办案件倒计时 (最紧急在前)", "Open cases by time to deadline"),
    "sla.open": ("在办案件", "Open cases"),
    "sla.by_stage": ("各环节在办与超时", "Open and overdue cases by stage"),
    "sla.alerts_24h": ("最近 24 小时超时与升级", "Breaches and escalations, last 24 h"),
    "sla.alert_list": ("最近 24 小时超时与升级明细", "Breaches and escalations (list)"),
    "sla.by_unit": ("各处置单位超时 (24 小时)", "Breaches by unit, last 24 h"),
    # leadership
    "lead.trend": ("案件量趋势 (按日)", "Case volume per day"),
    "lead.top": ("红榜: 按期结案率前 10 街道", "Top 10 streets by on-time closure rate"),
    "lead.bottom": ("黑榜: 按期结案率后 10 街道", "Bottom 10 streets by on-time closure rate"),
    "lead.by_source": ("各来源与大类案件量", "Cases by source and category"),
    "lead.summary": ("月度通报汇总", "Monthly report summary"),
    "city_total": ("全市", "City"),
    # field names shown in tables
    "col.change": ("环比 (百分点)", "change (pp)"),
}
TEXT.update({f"kpi.{k}": (zh, en) for k, (_, _, zh, en) in RATES.items()})


def text(key: str, lang: Lang = "both") -> str:
    zh, en = TEXT[key]
    if lang == "zh":
        return zh
    if lang == "en":
        return en
    return f"{zh} / {en}"
