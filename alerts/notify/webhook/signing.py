"""Standard Webhooks signatures (https://www.standardwebhooks.com), via ``standardwebhooks``.

Headers: ``webhook-id`` (the notification id, the same on every retry and redelivery),
``webhook-timestamp`` (integer Unix seconds of the attempt) and ``webhook-signature``: one
``v1,<base64 HMAC-SHA256 of "id.timestamp.body">`` per secret, space separated, so during a
rotation a receiver holding either the old or the new secret accepts the request.

Secrets are ``whsec_<base64>`` strings read from the environment or from files, never from
configuration text; :class:`WebhookSecret` never shows its value in ``repr``/``str``.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import os
import secrets as _random
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path

from standardwebhooks import Webhook

DEFAULT_TOLERANCE_S = 300


class SignatureError(Exception):
    """A request that must be refused; the message says why (never the secret)."""


class WebhookSecret:
    """One signing key. ``repr``/``str`` never reveal it."""

    __slots__ = ("_webhook", "_key", "label")

    def __init__(self, text: str, label: str = "") -> None:
        raw = text.strip()
        body = raw.removeprefix("whsec_")
        try:
            key = base64.b64decode(body + "=" * (-len(body) % 4), validate=True)
        except (binascii.Error, ValueError):
            raise ValueError(f"webhook secret {label or ''} is not whsec_<base64>") from None
        if len(key) < 16:
            raise ValueError(f"webhook secret {label or ''} is shorter than 16 bytes")
        self._key = key
        self._webhook = Webhook(key)
        self.label = label

    @classmethod
    def generate(cls) -> str:
        """A new ``whsec_`` secret of 32 random bytes (the text, to store in a secret file)."""
        return "whsec_" + base64.b64encode(_random.token_bytes(32)).decode()

    @classmethod
    def from_env(cls, name: str, environ: Mapping[str, str] | None = None) -> WebhookSecret:
        env = os.environ if environ is None else environ
        if not env.get(name):
            raise ValueError(f"webhook secret variable {name} is not set")
        return cls(env[name], label=f"env:{name}")

    @classmethod
    def from_file(cls, path: str | Path) -> WebhookSecret:
        return cls(Path(path).read_text(), label=f"file:{path}")

    def sign(self, msg_id: str, timestamp: int, body: str) -> str:
        """``v1,<base64 signature>`` of ``msg_id.timestamp.body``."""
        return self._webhook.sign(msg_id, datetime.fromtimestamp(timestamp, tz=UTC), body)

    def __repr__(self) -> str:
        return f"WebhookSecret({self.label or 'unnamed'}, ***)"

    __str__ = __repr__

    def __reduce__(self):  # never pickled into logs or task payloads
        raise TypeError("WebhookSecret cannot be pickled")


def sign_headers(
    msg_id: str, timestamp: int, body: str, secrets: Sequence[WebhookSecret]
) -> dict[str, str]:
    """The three Standard Webhooks headers, signed with every secret (rotation: two)."""
    if not secrets:
        raise ValueError("at least one webhook secret is needed to sign")
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": " ".join(s.sign(msg_id, timestamp, body) for s in secrets),
    }


def verify(
    headers: Mapping[str, str],
    body: bytes,
    secrets: Sequence[WebhookSecret],
    now: float,
    tolerance_s: int = DEFAULT_TOLERANCE_S,
) -> str:
    """Check a request; returns its ``webhook-id``, or raises :class:`SignatureError`.

    Refuses missing headers, a timestamp more than ``tolerance_s`` from ``now`` (Unix seconds,
    either way: replays and clock skew), a body that is not UTF-8, and a request none of whose
    ``v1`` signatures matches any of ``secrets``.
    """
    h = {k.lower(): v for k, v in headers.items()}
    msg_id, ts, sigs = h.get("webhook-id"), h.get("webhook-timestamp"), h.get("webhook-signature")
    if not (msg_id and ts and sigs):
        raise SignatureError("missing webhook-id, webhook-timestamp or webhook-signature")
    try:
        timestamp = int(ts)
    except ValueError:
        raise SignatureError("webhook-timestamp is not an integer") from None
    if abs(now - timestamp) > tolerance_s:
        raise SignatureError("webhook-timestamp outside the tolerance")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise SignatureError("body is not UTF-8") from None
    offered = []
    for part in sigs.split():
        version, _, value = part.partition(",")
        if version == "v1":
            try:
                offered.append(base64.b64decode(value, validate=True))
            except (binascii.Error, ValueError):
                continue
    for secret in secrets:
        expected = base64.b64decode(secret.sign(msg_id, timestamp, text).partition(",")[2])
        if any(hmac.compare_digest(expected, o) for o in offered):
            return msg_id
    raise SignatureError("no matching signature")


def load_secrets(
    env: Sequence[str] = (),
    files: Sequence[str | Path] = (),
    environ: Mapping[str, str] | None = None,
) -> tuple[WebhookSecret, ...]:
    """The secrets named by environment variables and secret files (one secret per file, or
    two lines during a rotation); one or two in all."""
    out = [WebhookSecret.from_env(n, environ) for n in env]
    for f in files:
        lines = [ln.strip() for ln in Path(f).read_text().splitlines() if ln.strip()]
        out += [WebhookSecret(ln, label=f"file:{f}#{i}") for i, ln in enumerate(lines)]
    if not 1 <= len(out) <= 2:
        raise ValueError(f"a receiver needs one or two webhook secrets, got {len(out)}")
    return tuple(out)
