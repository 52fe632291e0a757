"""The live view's alerts panel renders open alerts and failing receivers from the views."""

from __future__ import annotations

from rich.console import Console

from gridpulse.live_alerts import alerts_panel


def render(rows_by_view: dict[str, list[list[str]]]) -> str:
    asked: list[str] = []

    def sql(text: str) -> list[list[str]]:
        asked.append(text)
        return next((rows for view, rows in rows_by_view.items() if view in text), [])

    console = Console(width=120, record=True)
    console.print(alerts_panel(sql, "gp"))
    assert any("gp.open_alerts" in q for q in asked)
    assert any("gp.delivery_failures" in q for q in asked)
    return console.export_text()


def test_open_alerts_and_failing_receivers_are_shown():
    text = render(
        {
            "open_alerts": [
                ["a3f1c2d4e5b60718", "critical", "D", "S", "litter", "breach", "H-1", "x"]
                + ["1764493200", "0", "", "1"],
                ["b3f1c2d4e5b60718", "major", "D", "S", "litter", "breach", "H-2", "x"]
                + ["1764493200", "1", "li.wei", "0"],
            ],
            "delivery_failures": [["duty", "7", "1", "2026-11-30 09:00:00", "HTTP 503"]],
        }
    )
    assert "critical breach" in text and "H-1 esc 1 a3f1c2d4" in text
    assert "H-2 acked b3f1c2d4" in text
    assert "duty" in text and "7 failed, 1 dead: HTTP 503" in text


def test_a_query_error_is_shown_not_raised():
    text = render({"open_alerts": [["error", "no such table"]]})
    assert "error" in text and "no such table" in text
