"""SLA policy: how long each case stage may take, per category, from a YAML file.

A limit runs from the entry into the previous stage (see ``streams.cases.TIMER_OF``) and is
counted on the city's working calendar (``working_hours``/``working_days``) or on the wall
clock (``natural_hours``, for hazards that cannot wait for office hours). Policies are keyed
by a subcategory code, a top-level category code or ``"*"``; the most specific one that
defines a stage wins. Validation happens once, at load.
"""

from __future__ import annotations

import re
from functools import cached_property
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from core.types import TimedStage

LimitUnit = Literal["working_hours", "working_days", "natural_hours"]

ANY_CATEGORY = "*"
"""Policy key that applies to every category (the fallback)."""

_CATEGORY_KEY = re.compile(r"\*|[A-Za-z0-9_\-]+(\.[A-Za-z0-9_\-]+)?")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Limit(_Model):
    """A time limit: ``amount`` of ``unit``."""

    amount: float = Field(gt=0)
    unit: LimitUnit


StagePolicy = dict[TimedStage, Limit]
"""Limits per timed stage (register, dispatch, acknowledge, handle, verify, close)."""


class CategoryPolicy(_Model):
    """Limits for one subcategory, top-level category or ``"*"``; ``urgent`` ones apply to
    cases flagged urgent and win over ``stages`` of the same policy."""

    category: str
    stages: StagePolicy = {}
    urgent: StagePolicy | None = None

    @field_validator("category")
    @classmethod
    def _category_key(cls, v: str) -> str:
        if not _CATEGORY_KEY.fullmatch(v):
            raise ValueError(f"category must be '*', 'category' or 'category.sub', not {v!r}")
        return v


def top_level(category: str) -> str:
    """The 大类 of a subcategory code: the part before the first dot."""
    return category.split(".", 1)[0]


class SlaPolicy(_Model):
    """The whole policy: warning thresholds, escalation step and per-category limits.

    ``warn_at`` are fractions of a stage's limit at which a warning is raised (before the
    breach at 1.0); ``escalation_every`` is how much overdue time raises the escalation level
    of a breached stage by one.
    """

    warn_at: list[float] = [0.5, 0.8]
    escalation_every: Limit = Limit(amount=4, unit="working_hours")
    max_escalation_level: int = Field(5, ge=1)  # the top of the ladder (e.g. district leaders)
    policies: list[CategoryPolicy]

    @field_validator("warn_at")
    @classmethod
    def _warn_fractions(cls, v: list[float]) -> list[float]:
        if any(not 0 < f < 1 for f in v):
            raise ValueError(f"warn_at fractions must lie in (0, 1): {v}")
        if any(a >= b for a, b in zip(v, v[1:], strict=False)):
            raise ValueError(f"warn_at must be strictly increasing: {v}")
        return v

    @model_validator(mode="after")
    def _unique_categories(self) -> SlaPolicy:
        keys = [p.category for p in self.policies]
        dupes = sorted({k for k in keys if keys.count(k) > 1})
        if dupes:
            raise ValueError(f"categories with more than one policy: {dupes}")
        return self

    @cached_property
    def by_category(self) -> dict[str, CategoryPolicy]:
        """Policies keyed by category code."""
        return {p.category: p for p in self.policies}

    def limit_for(self, category: str, stage: str, urgent: bool) -> Limit | None:
        """The limit of ``stage`` for a case of subcategory ``category``: subcategory, then its
        top-level category, then ``"*"``; at each level an urgent limit first if ``urgent``."""
        index = self.by_category
        for key in dict.fromkeys((category, top_level(category), ANY_CATEGORY)):
            policy = index.get(key)
            if policy is None:
                continue
            if urgent and policy.urgent and stage in policy.urgent:
                return policy.urgent[stage]  # type: ignore[index]
            if stage in policy.stages:
                return policy.stages[stage]  # type: ignore[index]
        return None

    def unknown_categories(self, known: set[str]) -> list[str]:
        """Policy keys that name neither a known subcategory nor its top-level category."""
        tops = {top_level(c) for c in known}
        return [
            p.category
            for p in self.policies
            if p.category != ANY_CATEGORY and p.category not in known | tops
        ]


def load_sla(path: str | Path) -> SlaPolicy:
    """Read and validate an SLA policy YAML file."""
    with open(path, encoding="utf-8") as f:
        return SlaPolicy.model_validate(yaml.safe_load(f))
