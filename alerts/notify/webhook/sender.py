"""Webhook delivery: one signed POST per attempt, over the receiver's own connection pool."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping, Sequence

import httpx

from alerts.model import Notification
from alerts.notify.pipeline import AttemptResult, Integration
from alerts.notify.webhook.config import WebhookConfig
from alerts.notify.webhook.payload import render
from alerts.notify.webhook.signing import WebhookSecret, load_secrets, sign_headers

USER_AGENT = "gridpulse-alerts/1"


class WebhookSender:
    """Signs and POSTs a stored body; every outcome (status, timeout, connection error) is
    returned, never raised. The whole attempt is bounded by the receiver's ``timeout``."""

    def __init__(
        self,
        config: WebhookConfig,
        secrets: Sequence[WebhookSecret],
        clock_s: Callable[[], float] = time.time,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        self.name = config.name
        self._url = config.url
        self._secrets = tuple(secrets)
        self._timeout = config.timeout.total_seconds()
        self._clock_s = clock_s
        self._client = client or httpx.AsyncClient(
            timeout=httpx.Timeout(self._timeout),
            limits=httpx.Limits(
                max_connections=config.concurrency, max_keepalive_connections=config.concurrency
            ),
            follow_redirects=False,
        )

    def __repr__(self) -> str:
        return f"WebhookSender({self.name!r}, {self._url!r})"

    async def send(self, notification_id: str, payload: str) -> AttemptResult:
        headers = sign_headers(notification_id, int(self._clock_s()), payload, self._secrets)
        headers |= {"content-type": "application/json", "user-agent": USER_AGENT}
        try:
            async with asyncio.timeout(self._timeout):
                r = await self._client.post(self._url, content=payload.encode(), headers=headers)
        except (TimeoutError, httpx.TimeoutException):
            return AttemptResult(None, f"timeout after {self._timeout:g}s")
        except httpx.TransportError as e:
            return AttemptResult(None, f"connection error: {type(e).__name__}: {e}"[:300])
        error = "" if r.is_success else f"HTTP {r.status_code}: {r.text[:200]}"
        return AttemptResult(r.status_code, error, r.headers.get("retry-after"))

    async def aclose(self) -> None:
        await self._client.aclose()


def webhook_integration(
    config: WebhookConfig,
    external_url: str = "",
    environ: Mapping[str, str] | None = None,
    clock_s: Callable[[], float] = time.time,
) -> Integration:
    """A receiver of kind webhook: its renderer, its signed sender and its limits."""
    secrets = load_secrets(config.secret_env, config.secret_files, environ)

    def render_body(n: Notification) -> str:
        return render(n, config.format, external_url, config.max_alerts)

    return Integration(
        name=config.name,
        render=render_body,
        sender=WebhookSender(config, secrets, clock_s),
        concurrency=config.concurrency,
        rate_per_s=config.rate_per_s,
        burst=config.burst,
        retry=config.retry.policy(),
    )
