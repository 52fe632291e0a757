"""The routing tree: which routes (and so which receivers and timings) an alert takes.

Depth first, as in Alertmanager: an alert descends into the first matching child, and keeps
trying siblings only while the matched child has ``continue``; a route none of whose children
match takes the alert itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta

from alerts.dispatch.config import Escalation, RouteConfig
from alerts.dispatch.matchers import Matcher, match_all

DEFAULT_GROUP_BY: tuple[str, ...] = ("alertname",)
DEFAULT_GROUP_WAIT = timedelta(seconds=30)
DEFAULT_GROUP_INTERVAL = timedelta(minutes=5)
DEFAULT_REPEAT_INTERVAL = timedelta(hours=4)


@dataclass(frozen=True)
class Route:
    """A resolved route: every setting filled in from its ancestors. ``id`` is its tree path."""

    id: str
    receiver: str
    matchers: tuple[Matcher, ...]
    continue_: bool
    group_by: tuple[str, ...]
    group_wait: timedelta
    group_interval: timedelta
    repeat_interval: timedelta
    escalation: Escalation | None
    routes: tuple[Route, ...] = field(default=())

    @classmethod
    def build(cls, cfg: RouteConfig, parent: Route | None = None, rid: str = "0") -> Route:
        def pick(mine, inherited, default):
            if mine is not None:
                return mine
            return inherited if parent is not None else default

        receiver = cfg.receiver or (parent.receiver if parent else "")
        node = cls(
            id=rid,
            receiver=receiver,
            matchers=tuple(cfg.matchers),
            continue_=cfg.continue_,
            group_by=tuple(pick(cfg.group_by, parent and parent.group_by, list(DEFAULT_GROUP_BY))),
            group_wait=pick(cfg.group_wait, parent and parent.group_wait, DEFAULT_GROUP_WAIT),
            group_interval=pick(
                cfg.group_interval, parent and parent.group_interval, DEFAULT_GROUP_INTERVAL
            ),
            repeat_interval=pick(
                cfg.repeat_interval, parent and parent.repeat_interval, DEFAULT_REPEAT_INTERVAL
            ),
            escalation=cfg.escalation or (parent.escalation if parent else None),
        )
        children = tuple(cls.build(c, node, f"{rid}.{i}") for i, c in enumerate(cfg.routes))
        object.__setattr__(node, "routes", children)
        return node

    def match(self, labels: Mapping[str, str]) -> list[Route]:
        """The routes that take an alert with ``labels`` (empty if this route does not match)."""
        if not match_all(self.matchers, labels):
            return []
        taken: list[Route] = []
        for child in self.routes:
            hit = child.match(labels)
            if hit:
                taken.extend(hit)
                if not child.continue_:
                    break
        return taken or [self]

    def group_labels(self, labels: Mapping[str, str]) -> dict[str, str]:
        """The labels an alert is grouped by on this route (``...`` groups by all labels)."""
        if "..." in self.group_by:
            return dict(labels)
        return {k: labels.get(k, "") for k in self.group_by}

    def walk(self) -> list[Route]:
        out = [self]
        for c in self.routes:
            out.extend(c.walk())
        return out
