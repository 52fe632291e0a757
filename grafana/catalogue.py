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
    "ops.warnings_active": ("当前预警 (按级别)", "Active warnings by severity"),
    "ops.warnings": ("当前预警及证据 (最严重在前)", "Active warnings with evidence"),
    "ops.warnings_by_kind": ("新增预警 (按类型)", "Warnings raised, by kind"),
    # sla
    "sla.countdown": ("在办案件倒计时 (最紧急在前)", "Open cases by time to deadline"),
    "sla.open": ("在办案件", "Open cases"),
    "sla.by_stage": ("各环节在办与超时", "Open and overdue cases by stage"),
    "sla.alerts_24h": ("最近 24 小时超时与升级", "Breaches and escalations, last 24 h"),
    "sla.alert_list": ("最近 24 小时超时与升级明细", "Breaches and escalations (list)"),
    "sla.by_unit": ("各处置单位超时 (24 小时)", "Breaches by unit, last 24 h"),
    "sla.oncall": ("值班告警", "On-call alerts"),
    "sla.ack_time": ("告警确认用时 (按级别)", "Time to acknowledge, by severity"),
    "sla.open_alerts": ("未关闭告警: 确认与升级", "Open alerts: ack status and escalation"),
    "sla.delivery_failures": ("Webhook 推送失败 (按接收方)", "Webhook delivery failures"),
    "sla.deliveries": ("各接收方推送", "Webhook deliveries by receiver"),
    "sla.receivers": ("接收方当前队列", "Receivers' outbox now"),
    "sla.dead_deliveries": ("放弃的推送 (可重推)", "Dead deliveries (re-drivable)"),
    # leadership
    "lead.trend": ("案件量趋势 (按日)", "Case volume per day"),
    "lead.top": ("红榜: 按期结案率前 10 街道", "Top 10 streets by on-time closure rate"),
    "lead.bottom": ("黑榜: 按期结案率后 10 街道", "Bottom 10 streets by on-time closure rate"),
    "lead.by_source": ("各来源与大类案件量", "Cases by source and category"),
    "lead.summary": ("月度通报汇总", "Monthly report summary"),
    "city_total": ("全市", "City"),
    # field names and values shown in tables
    "col.change": ("环比 (百分点)", "change (pp)"),
    "severity.critical": ("严重", "critical"),
    "severity.major": ("重要", "major"),
    "severity.minor": ("一般", "minor"),
    "severity.info": ("提示", "info"),
    "ack.yes": ("已确认", "yes"),
    "ack.no": ("未确认", "no"),
}
TEXT.update({f"kpi.{k}": (zh, en) for k, (_, _, zh, en) in RATES.items()})


def text(key: str, lang: Lang = "both") -> str:
    zh, en = TEXT[key]
    if lang == "zh":
        return zh
    if lang == "en":
        return en
    return f"{zh} / {en}"
