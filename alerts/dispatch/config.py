"""The routing configuration (YAML), validated with pydantic; see ``docs/alerts.md``.

Keys follow Alertmanager's: ``route`` (``receiver``, ``matchers``, ``continue``, ``group_by``,
``group_wait``, ``group_interval``, ``repeat_interval``, ``routes``), ``inhibit_rules``
(``source_matchers``, ``target_matchers``, ``equal``), plus gridpulse's ``rosters`` (who is on
call in and outside working time) and per-route ``escalation``. Durations are ``90s``,
``5m``, ``4h``, ``1d`` or a number of seconds.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import (
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    model_validator,
)

from alerts.dispatch.matchers import Matcher
from alerts.model import LABEL_NAMES, Duration, Severity


def _matchers(v: Any) -> Any:
    if isinstance(v, list):
        return [Matcher.parse(x) if isinstance(x, str) else x for x in v]
    return v


Matchers = Annotated[
    list[Matcher],
    BeforeValidator(_matchers),
    PlainSerializer(lambda ms: [str(m) for m in ms], return_type=list[str]),
]
"""Matchers written as strings (``'kind=~"breach|escalation"'``), in YAML and in JSON."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)


class EscalationStep(_Strict):
    """Page ``receiver`` when an alert is still unacknowledged ``after`` its first notification."""

    after: Duration
    receiver: str


def _critical_only() -> list[Severity]:
    return ["critical"]


class Escalation(_Strict):
    severities: list[Severity] = Field(default_factory=_critical_only)
    steps: list[EscalationStep] = Field(min_length=1)

    @model_validator(mode="after")
    def _increasing(self) -> Escalation:
        afters = [s.after for s in self.steps]
        if afters != sorted(afters):
            raise ValueError("escalation steps must be in increasing 'after' order")
        return self


class RouteConfig(_Strict):
    """A node of the routing tree; unset fields are inherited from the parent route."""

    receiver: str | None = None
    matchers: Matchers = Field(default_factory=list)
    continue_: bool = Field(default=False, alias="continue")
    group_by: list[str] | None = None
    group_wait: Duration | None = None
    group_interval: Duration | None = None
    repeat_interval: Duration | None = None
    escalation: Escalation | None = None
    routes: list[RouteConfig] = Field(default_factory=list)

    model_config = ConfigDict(
        extra="forbid", frozen=True, populate_by_name=True, arbitrary_types_allowed=True
    )

    @model_validator(mode="after")
    def _labels_known(self) -> RouteConfig:
        for name in (self.group_by or []) + [m.name for m in self.matchers]:
            if name not in LABEL_NAMES and name != "...":
                raise ValueError(f"unknown label {name!r} (labels: {sorted(LABEL_NAMES)})")
        return self


class RosterOverride(_Strict):
    """Cover from ``start`` (inclusive) to ``end`` (exclusive), e.g. a holiday stand-in."""

    start: AwareDatetime
    end: AwareDatetime
    receiver: str


class RosterConfig(_Strict):
    """Who is on call: ``working`` in the city's working time, ``off_hours`` outside it."""

    working: str
    off_hours: str
    overrides: list[RosterOverride] = Field(default_factory=list)


class InhibitRuleConfig(_Strict):
    """A firing alert matching ``source_matchers`` mutes alerts matching ``target_matchers``
    that have the same values of the ``equal`` labels."""

    source_matchers: Matchers = Field(min_length=1)
    target_matchers: Matchers = Field(min_length=1)
    equal: list[str] = Field(default_factory=list)


class DispatchConfig(_Strict):
    """Routing, rosters and inhibition; ``receivers`` are the names delivery knows."""

    route: RouteConfig
    rosters: dict[str, RosterConfig] = Field(default_factory=dict)
    inhibit_rules: list[InhibitRuleConfig] = Field(default_factory=list)
    receivers: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _names_resolve(self) -> DispatchConfig:
        if self.route.receiver is None:
            raise ValueError("the root route needs a receiver")
        if self.route.matchers:
            raise ValueError("the root route matches every alert: it takes no matchers")
        known = set(self.receivers)
        clash = known & set(self.rosters)
        if clash:
            raise ValueError(f"names used for both a receiver and a roster: {sorted(clash)}")
        for name, r in self.rosters.items():
            for target in [r.working, r.off_hours, *(o.receiver for o in r.overrides)]:
                if target not in known:
                    raise ValueError(f"roster {name!r} names unknown receiver {target!r}")
        for target in _route_targets(self.route):
            if target not in known and target not in self.rosters:
                raise ValueError(f"route names unknown receiver or roster {target!r}")
        return self


def _route_targets(route: RouteConfig) -> list[str]:
    out = [route.receiver] if route.receiver else []
    if route.escalation:
        out += [s.receiver for s in route.escalation.steps]
    for child in route.routes:
        out += _route_targets(child)
    return out
