"""Inhibition: a firing source alert mutes target alerts sharing the ``equal`` labels."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence

from alerts.dispatch.config import InhibitRuleConfig
from alerts.dispatch.matchers import match_all
from alerts.model import Alert


class InhibitionIndex:
    """The firing source alerts of every rule, indexed by their ``equal`` label values, so a
    target is checked in time proportional to the number of rules, not of alerts."""

    def __init__(self, rules: Sequence[InhibitRuleConfig], firing: Iterable[Alert]) -> None:
        self.rules = list(rules)
        self._sources: list[dict[tuple[str, ...], set[str]]] = [
            defaultdict(set) for _ in self.rules
        ]
        for a in firing:
            if a.status != "firing":
                continue
            for i, r in enumerate(self.rules):
                if match_all(r.source_matchers, a.labels):
                    key = tuple(a.labels.get(k, "") for k in r.equal)
                    self._sources[i][key].add(a.fingerprint)

    def inhibited_by(self, target: Alert) -> list[str]:
        """Fingerprints of the firing alerts that inhibit ``target`` (never ``target`` itself).

        A rule applies when the source matches ``source_matchers``, the target matches
        ``target_matchers`` and both carry the same value (possibly empty) of every ``equal``
        label.
        """
        out: set[str] = set()
        for i, r in enumerate(self.rules):
            if match_all(r.target_matchers, target.labels):
                key = tuple(target.labels.get(k, "") for k in r.equal)
                out |= self._sources[i].get(key, set())
        out.discard(target.fingerprint)
        return sorted(out)
