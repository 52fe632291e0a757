"""City files by name: ``--city sample`` -> ``config/cities/sample.yaml``."""

from __future__ import annotations

from pathlib import Path

from core.settings import REPO_ROOT

CITIES = REPO_ROOT / "config" / "cities"


def city_path(name: str) -> Path:
    """A YAML path as given, or the city of that name under ``config/cities``.

    Raises SystemExit naming the known cities when there is no such city.
    """
    p = Path(name)
    if p.suffix in (".yaml", ".yml") and p.exists():
        return p
    candidate = CITIES / f"{name}.yaml"
    if not candidate.exists():
        known = ", ".join(sorted(q.stem for q in CITIES.glob("*.yaml")))
        raise SystemExit(f"unknown city {name!r}: give a YAML path or one of: {known}")
    return candidate
