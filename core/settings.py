"""The one validated settings object: env vars ``GRIDPULSE_*`` plus the city config file.

Every tunable the pipeline has lives here, so nothing downstream carries magic constants.
Nested groups are set with a double underscore, e.g. ``GRIDPULSE_SINK__BATCH_MAX=5000``.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Literal
from urllib.parse import urlparse

from pydantic import BaseModel, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from core.city import CITIES

if TYPE_CHECKING:
    from core.city import City
    from core.sla_config import SlaPolicy

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATABASE = "gridpulse"
DEFAULT_CITY = CITIES / "sample.yaml"
SLA_DIR = REPO_ROOT / "config" / "sla"
ALERTS_DIR = REPO_ROOT / "config" / "alerts"
DEV_CALLER_SALT = "gridpulse-dev-salt"


class WindowSettings(BaseModel):
    """Event-time windowing: bucket size, the grace for late events, and rollups."""

    bucket_seconds: int = Field(60, ge=1)
    grace_seconds: int = Field(120, ge=0)
    rollups: list[Literal["5m", "1h", "1d"]] = ["5m", "1h", "1d"]
    # Events whose time is further in the future than this (against the record timestamp)
    # are impossible and dead-lettered; likewise events older than max_age_days.
    max_future_skew_seconds: int = Field(300, ge=0)
    max_age_days: int = Field(3650, ge=1)


class SinkSettings(BaseModel):
    """Batching, retry and backpressure of the ClickHouse sink."""

    # messages per ingest batch (all three streams). At live rates the batch_seconds window
    # ends a batch first; while catching up, 10 000 single events per batch pay each table's
    # fixed insert cost a fifth as often as 2 000 did (+25 % events/s, docs/benchmarks.md).
    # Envelopes hold hundreds of readings each: checkpoints split a batch by bytes.
    ingest_batch_max: int = Field(10_000, ge=1, le=100_000)
    batch_max: int = Field(20_000, ge=1, le=500_000)  # case events per lifecycle batch
    # a batch is written as consecutive checkpoints of at most this much payload, which
    # bounds the rows built in memory at once (~16 MB of envelopes = ~100 k readings)
    max_batch_bytes: int = Field(16 * 1024 * 1024, ge=1024)
    batch_seconds: float = Field(1.0, gt=0)
    retry_initial_seconds: float = Field(0.2, gt=0)
    retry_max_seconds: float = Field(10.0, gt=0)
    raw_retention_days: int = Field(400, ge=1)
    # the count tables (every window, and late counts) take one insert per checkpoint,
    # routed by materialized views; off = one insert per table (e.g. on a cluster whose
    # count tables are Distributed, where the views belong on the shards)
    route_counts: bool = True


class TopicSettings(BaseModel):
    prefix: str = "gridpulse"
    partitions: int = Field(4, ge=1)
    replication_factor: int = Field(1, ge=1)

    def name(self, stream: str) -> str:
        return f"{self.prefix}.{stream}"

    @property
    def inspector(self) -> str:
        return self.name("inspector.reports")

    @property
    def sensor(self) -> str:
        return self.name("sensor.readings")

    @property
    def hotline(self) -> str:
        return self.name("hotline.requests")

    @property
    def case(self) -> str:
        return self.name("case.events")

    @property
    def dead_letter(self) -> str:
        return self.name("dead-letter")

    @property
    def sla(self) -> str:
        return self.name("sla.events")

    @property
    def warnings(self) -> str:
        return self.name("warnings")

    @property
    def ingest(self) -> list[str]:
        return [self.inspector, self.sensor, self.hotline]

    @property
    def all(self) -> list[str]:
        return [*self.ingest, self.case, self.dead_letter, self.sla, self.warnings]


class WorkerSettings(BaseModel):
    app_id: str = "gridpulse"
    web_host: str = "127.0.0.1"
    web_port: int = Field(6066, ge=0, le=65535)
    use_uvloop: bool = True
    session_timeout_seconds: float = 6.0
    heartbeat_interval_seconds: float = 1.5
    rebalance_timeout_seconds: float = 6.0
    stream_buffer_maxsize: int = Field(20_000, ge=100)
    # longest a consumer fetch may wait for data (Faust hard-codes 1 500 ms; see
    # streams/transport.py): bounds how long a fresh record can sit unseen in the broker
    fetch_max_wait_ms: int = Field(100, ge=0, le=30_000)
    # how long the event loop may hold the GIL while the ClickHouse thread waits for it
    # (Python's default is 5 ms). An insert re-takes the GIL many times, so with the loop
    # busy a 9 ms chdb insert took 47 ms at 5 ms and 18 ms at 1 ms (docs/benchmarks.md).
    gil_switch_interval_ms: float = Field(1.0, gt=0, le=100)
    # bearer token for ``/query/``; required when the web server listens beyond loopback
    web_token: SecretStr | None = None


class SlaSettings(BaseModel):
    """Case timers: how often the clock ticks, how many alerts one tick may fire."""

    tick_seconds: float = Field(1.0, gt=0)
    # a tick fires at most this many alerts (~50 us each: 2 000 hold the event loop ~0.1 s),
    # so a backlog of due timers drains over a few ticks instead of stalling ingest
    max_alerts_per_tick: int = Field(2_000, ge=1)
    # a lifecycle event of a case not opened yet waits this long (wall seconds) for the
    # case's accept before it is recorded as illegal (unknown_case)
    hold_unopened_seconds: float = Field(900.0, ge=0)


class DetectSettings(BaseModel):
    """Early warnings in the worker (docs/detection.md): the count detectors judge each closed
    hour once every ingest partition is stored past it (plus the window grace)."""

    enabled: bool = True
    tick_seconds: float = Field(5.0, gt=0)
    # hours of stored counts read back to rebuild the detectors when a worker takes over
    history_hours: int = Field(14 * 24, ge=1)
    # a new deployment (no detection cursor yet) judges the last N closed hours of history;
    # 0: history only trains the detectors and raises nothing
    backfill_hours: int = Field(0, ge=0)
    # sensor rules (graded thresholds with hysteresis, rate, stuck, silent) on every reading
    sensor_rules: bool = True
    # patrol gaps: a grid without an inspector report for longer than its interval (24 h)
    patrol_gaps: bool = True
    # hotspots: the same subcategory rising in adjacent grids within an hour
    hotspots: bool = True
    # duplicate clusters (reports of one problem within a radius and time) and repeat
    # complaints (the same hashed caller within 30 days), on every stored report/request
    report_rules: bool = True
    # backlog spikes: a handling unit's open cases rising abnormally (hourly snapshots)
    backlog: bool = True
    # the day scale: counts per local day (rises over days); its warm-up is 21 days, so a
    # takeover rebuilds it from this many days of counts_1d
    day_scale: bool = True
    day_history_days: int = Field(42, ge=1)
    # a DetectionConfig YAML (scales, per-category sensitivity, sensitive periods, lifecycle);
    # default: the shipped defaults in the city's time zone
    config_file: Path | None = None


class AlertSettings(BaseModel):
    """The alert stage (docs/alerts.md). Receiver secrets and API tokens are never set here:
    receivers name env vars or secret files in the routes file; tokens come from
    ``tokens_file`` and ``GRIDPULSE_ALERTS_API_TOKENS`` (SHA-256 hashes only)."""

    enabled: bool = False
    # default: config/alerts/routes.yaml if it exists, else the example next to it
    routes_file: Path | None = None
    api_host: str = "127.0.0.1"
    api_port: int = Field(9094, ge=0, le=65535)
    tokens_file: Path | None = None
    tick_seconds: float = Field(1.0, gt=0)
    batch_max: int = Field(1_000, ge=1)
    # delivered notification ids remembered (refused again after a restart) this long
    keep_days: int = Field(30, ge=1)

    @property
    def routes_path(self) -> Path:
        if self.routes_file is not None:
            return self.routes_file
        own = ALERTS_DIR / "routes.yaml"
        return own if own.exists() else ALERTS_DIR / "routes.example.yaml"

    @property
    def api_url(self) -> str:
        return f"http://{self.api_host}:{self.api_port}/api/v1"


class QuerySettings(BaseModel):
    """Limits of one user query (``gridpulse query``, ``/query/``, KPIs, the live view)."""

    max_result_rows: int = Field(1_000_000, ge=1)
    max_execution_seconds: int = Field(60, ge=1)
    max_memory_bytes: int = Field(4 * 1024**3, ge=1024**2)


class LocalStackSettings(BaseModel):
    """Ports of the services ``gridpulse up`` starts on this machine."""

    broker_port: int = 9092
    s3_port: int = 18333
    seaweed_master_port: int = 19333
    seaweed_volume_port: int = 19340
    seaweed_filer_port: int = 18888
    clickhouse_server: bool = False
    clickhouse_tcp_port: int = 19000
    clickhouse_http_port: int = 18123


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="GRIDPULSE_", env_nested_delimiter="__", extra="ignore"
    )

    broker: str = "kafka://127.0.0.1:9092"
    clickhouse: str = "chdb://.gridpulse/chdb"
    city_file: Path = DEFAULT_CITY
    # SLA limits per category and stage; default: config/sla/<city file stem>.yaml if it
    # exists, else config/sla/default.yaml
    sla_file: Path | None = None
    data_dir: Path = Path(".gridpulse")
    # Key of the caller-id HMAC; a secret per deployment (``gridpulse up`` keeps one in the
    # data dir). The worker refuses the default outside the local dev stack.
    caller_salt: SecretStr = SecretStr(DEV_CALLER_SALT)
    # log lines: "text" (human-readable) or "json" (one JSON object per line)
    log_format: Literal["text", "json"] = "text"

    topics: TopicSettings = TopicSettings()
    window: WindowSettings = WindowSettings()
    sink: SinkSettings = SinkSettings()
    worker: WorkerSettings = WorkerSettings()
    local: LocalStackSettings = LocalStackSettings()
    sla: SlaSettings = SlaSettings()
    detect: DetectSettings = DetectSettings()
    alerts: AlertSettings = AlertSettings()
    query: QuerySettings = QuerySettings()

    @field_validator("broker")
    @classmethod
    def _broker_url(cls, v: str) -> str:
        u = urlparse(v)
        if u.scheme not in ("kafka", "aiokafka") or not u.hostname or not u.port:
            raise ValueError(f"broker must look like kafka://host:port, got {v!r}")
        return v

    @field_validator("clickhouse")
    @classmethod
    def _clickhouse_url(cls, v: str) -> str:
        u = urlparse(v)
        if u.scheme not in ("chdb", "clickhouse"):
            raise ValueError(
                "clickhouse must be chdb:///path (embedded) or "
                f"clickhouse://user:pw@host:9000/db (native protocol), got {v!r}"
            )
        return v

    @property
    def database(self) -> str:
        """The ClickHouse database gridpulse's tables and views live in."""
        return database_of(self.clickhouse)

    @property
    def bootstrap_servers(self) -> str:
        u = urlparse(self.broker)
        return f"{u.hostname}:{u.port}"

    @cached_property
    def city(self) -> City:
        from core.city import load_city

        return load_city(self.city_file)

    @cached_property
    def sla_policy(self) -> SlaPolicy:
        from core.sla_config import load_sla

        path = self.sla_file
        if path is None:
            own = SLA_DIR / f"{Path(self.city_file).stem}.yaml"
            path = own if own.exists() and own.stem != "sample" else SLA_DIR / "default.yaml"
        return load_sla(path)


def database_of(url: str) -> str:
    """The database a ClickHouse URL names: ``clickhouse://…/db``, else ``gridpulse``."""
    u = urlparse(url)
    name = (u.path or "").strip("/") if u.scheme == "clickhouse" else ""
    return name or DEFAULT_DATABASE
