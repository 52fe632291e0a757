"""A webhook receiver's delivery settings (the ``receivers:`` section of the alerts YAML)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, model_validator

from alerts.model import Duration
from alerts.notify.retry import RetryPolicy
from alerts.notify.webhook.payload import PayloadFormat


class RetryConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    max_attempts: int = Field(default=12, ge=1)
    base: Duration = timedelta(seconds=1)
    cap: Duration = timedelta(minutes=10)
    max_retry_after: Duration = timedelta(hours=1)

    def policy(self) -> RetryPolicy:
        return RetryPolicy(self.max_attempts, self.base, self.cap, self.max_retry_after)


class WebhookConfig(BaseModel):
    """Where and how one receiver is called. Secrets are named, never written here: one or two
    of ``secret_env`` (variable names) and ``secret_files`` (paths)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1)
    url: str = Field(pattern=r"^https?://")
    format: PayloadFormat = "gridpulse"
    max_alerts: int = Field(default=0, ge=0)
    secret_env: list[str] = Field(default_factory=list, max_length=2)
    secret_files: list[Path] = Field(default_factory=list, max_length=2)
    timeout: Duration = timedelta(seconds=10)
    concurrency: int = Field(default=4, ge=1, le=64)
    rate_per_s: float = Field(default=20.0, gt=0)
    burst: int = Field(default=10, ge=1)
    retry: RetryConfig = Field(default_factory=RetryConfig)

    @model_validator(mode="after")
    def _has_secret(self) -> WebhookConfig:
        if not 1 <= len(self.secret_env) + len(self.secret_files) <= 2:
            raise ValueError(
                f"receiver {self.name!r}: name one or two secrets (secret_env / secret_files)"
            )
        return self
