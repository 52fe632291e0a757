"""Composition of the alert stage for a deployment: routes, city locator, working calendar,
ClickHouse store and the Faust registration (the worker calls :func:`wire_alerts`)."""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import faust

from alerts.agent import AgentOptions, register_alerts
from alerts.api import TokenStore
from alerts.config import load_config
from alerts.service import AlertService
from alerts.stage import AlertStage
from alerts.store import AlertStore, Backend
from core.calendar_config import WorkingCalendar
from core.city import City
from core.settings import Settings
from streams.calendar import UTC_EPOCH, day_intervals


def locator(city: City) -> Callable[[str], tuple[str, str, str]]:
    """``locate(grid) -> (district, street, community)`` codes; empty when unknown."""
    paths = city.grid_paths

    def locate(grid: str) -> tuple[str, str, str]:
        p = paths.get(grid)
        return (p.district, p.street, p.community) if p is not None else ("", "", "")

    return locate


def working_time(calendar: WorkingCalendar) -> Callable[[datetime], bool]:
    """``is_working_time(t)``: whether ``t`` lies in a working period of the city calendar."""
    tz = ZoneInfo(calendar.timezone)

    def is_working_time(t: datetime) -> bool:
        s = (t - UTC_EPOCH).total_seconds()  # the calendar's clock
        return any(a <= s < b for a, b in day_intervals(calendar, t.astimezone(tz).date()))

    return is_working_time


def alert_service(settings: Settings, backend: Backend) -> AlertService:
    """The durable alert stage for ``settings`` over ``backend`` (routes file validated and
    receiver secrets read now: a bad file or a missing secret stops the worker at start)."""
    a = settings.alerts
    store = AlertStore(backend, keep=timedelta(days=a.keep_days))
    stage = AlertStage(
        load_config(a.routes_path),
        store.outbox,
        locate=locator(settings.city),
        is_working_time=working_time(settings.city.calendar),
        environ=os.environ,
    )
    t = settings.topics
    return AlertService(
        stage,
        store,
        t.sla,
        t.warnings,
        tick_every=a.tick_seconds,
        retry_initial=settings.sink.retry_initial_seconds,
        retry_max=settings.sink.retry_max_seconds,
    )


def wire_alerts(app: faust.App, settings: Settings, backend: Backend) -> AlertService:
    """Register the alert stage on the worker's app (after ``create_app``)."""
    service = alert_service(settings, backend)
    t = settings.topics
    register_alerts(
        app,
        service,
        TokenStore.load(settings.alerts.tokens_file),
        AgentOptions(
            topics=(t.sla, t.warnings),
            api_host=settings.alerts.api_host,
            api_port=settings.alerts.api_port,
            batch_max=settings.alerts.batch_max,
            batch_seconds=settings.sink.batch_seconds,
        ),
    )
    return service
