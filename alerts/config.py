"""The alerts YAML: routing (``route``, ``rosters``, ``inhibit_rules``) and ``receivers``.

Routing sees receivers by name only; delivery sees each receiver's kind-specific settings.
Loading checks that every name a route, roster or escalation uses is a configured receiver.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field

from alerts.dispatch.config import DispatchConfig, InhibitRuleConfig, RosterConfig, RouteConfig
from alerts.notify.webhook.config import WebhookConfig


class ReceiverConfig(BaseModel):
    """A named receiver; ``webhook`` is the only kind so far."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    webhook: dict[str, Any]

    def webhook_config(self) -> WebhookConfig:
        return WebhookConfig.model_validate({"name": self.name, **self.webhook})


class AlertsConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)

    external_url: str = ""
    board_url: str = ""
    route: RouteConfig
    rosters: dict[str, RosterConfig] = Field(default_factory=dict)
    inhibit_rules: list[InhibitRuleConfig] = Field(default_factory=list)
    receivers: list[ReceiverConfig] = Field(min_length=1)

    def dispatch(self) -> DispatchConfig:
        return DispatchConfig(
            route=self.route,
            rosters=self.rosters,
            inhibit_rules=self.inhibit_rules,
            receivers=[r.name for r in self.receivers],
        )

    def webhooks(self) -> list[WebhookConfig]:
        return [r.webhook_config() for r in self.receivers]


def parse_config(data: dict[str, Any]) -> AlertsConfig:
    """Validate a decoded YAML document (raises ``pydantic.ValidationError``)."""
    cfg = AlertsConfig.model_validate(data)
    names = [r.name for r in cfg.receivers]
    if len(names) != len(set(names)):
        raise ValueError(f"duplicate receiver names in {names}")
    cfg.dispatch()
    cfg.webhooks()
    return cfg


def load_config(path: str | Path) -> AlertsConfig:
    return parse_config(yaml.safe_load(Path(path).read_text()))
