"""The alerts HTTP API (aiohttp): list alerts, silences and the audit log; add and expire
silences; acknowledge and resolve alerts.

Every request needs ``Authorization: Bearer <token>``. Tokens belong to a user or a team and
carry a role: ``viewer`` (read) or ``operator`` (read and change). Only SHA-256 hashes of the
tokens are stored (tokens are 32 random bytes, so a fast hash suffices), read from a secrets
file or an environment variable; a presented token is hashed and compared in constant time with
every stored hash. Missing or unknown token: 401; a role too low: 403. Every change is made in
the token owner's name and recorded in the dispatcher's audit log.

Runs on the event loop that ticks the dispatcher (the dispatcher is not thread-safe).
"""

from __future__ import annotations

import hashlib
import hmac
import inspect
import json
import os
import secrets as _random
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import yaml
from aiohttp import web
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError

from alerts.dispatch.dispatcher import AlertState, AuditEntry, Dispatcher
from alerts.dispatch.silence import Silence
from alerts.model import Duration
from alerts.notify.outbox import OutboxRow
from alerts.notify.pipeline import Notifier

Role = Literal["viewer", "operator"]
ROLE_RANK = {"viewer": 0, "operator": 1}
TOKENS_ENV = "GRIDPULSE_ALERTS_API_TOKENS"


def new_token() -> str:
    """A new API token (give it to its owner; store only :func:`hash_token` of it)."""
    return "gpat_" + _random.token_urlsafe(32)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class Principal:
    who: str
    role: Role


class TokenEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    who: str = Field(min_length=1)
    role: Role
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


class TokenStore:
    """Hashed tokens; :meth:`authenticate` compares in constant time against every entry."""

    def __init__(self, entries: list[TokenEntry]) -> None:
        self._entries = [(bytes.fromhex(e.sha256), Principal(e.who, e.role)) for e in entries]

    @classmethod
    def from_file(cls, path: str | Path) -> TokenStore:
        """YAML: ``tokens: [{who: li.wei, role: operator, sha256: <hex>}, …]``."""
        data = yaml.safe_load(Path(path).read_text()) or {}
        return cls([TokenEntry.model_validate(t) for t in data.get("tokens", [])])

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> TokenStore:
        """``who:role:sha256hex`` entries, comma separated, in ``GRIDPULSE_ALERTS_API_TOKENS``."""
        env = os.environ if environ is None else environ
        entries = []
        for item in filter(None, (x.strip() for x in env.get(TOKENS_ENV, "").split(","))):
            who, role, digest = item.rsplit(":", 2)
            entries.append(TokenEntry(who=who, role=role, sha256=digest))  # type: ignore[arg-type]
        return cls(entries)

    @classmethod
    def load(cls, path: str | Path | None, environ: Mapping[str, str] | None = None) -> TokenStore:
        """The tokens of the file at ``path`` (if any) and of ``GRIDPULSE_ALERTS_API_TOKENS``."""
        env = cls.from_env(environ)
        if path is None:
            return env
        return cls([*cls.from_file(path).entries(), *env.entries()])

    def entries(self) -> list[TokenEntry]:
        return [TokenEntry(who=p.who, role=p.role, sha256=h.hex()) for h, p in self._entries]

    def authenticate(self, token: str) -> Principal | None:
        digest = hashlib.sha256(token.encode()).digest()
        found = None
        for stored, principal in self._entries:
            if hmac.compare_digest(stored, digest):
                found = principal
        return found

    def __repr__(self) -> str:
        return f"TokenStore({len(self._entries)} tokens)"


class SilenceIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    matchers: list[str] = Field(min_length=1)
    reason: str = Field(min_length=1)
    starts_at: AwareDatetime | None = None
    ends_at: AwareDatetime | None = None
    duration: Duration | None = None


class RedriveIn(BaseModel):
    """Which dead (or muted) deliveries to send again: ids, or all of a receiver's."""

    model_config = ConfigDict(extra="forbid")

    ids: list[str] = Field(default_factory=list)
    receiver: str = ""


class NoteIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    note: str = ""


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _iso(t: datetime | None) -> str | None:
    return t.isoformat() if t else None


def alert_view(s: AlertState) -> dict[str, Any]:
    a = s.alert
    return {
        "fingerprint": a.fingerprint,
        "status": a.status,
        "labels": a.labels,
        "annotations": a.annotations,
        "starts_at": _iso(a.starts_at),
        "ends_at": _iso(a.ends_at),
        "acknowledged_by": s.acked_by or None,
        "acknowledged_at": _iso(s.acked_at),
        "resolved_by": s.resolved_by or None,
        "silenced_by": list(s.silenced_by),
        "inhibited_by": list(s.inhibited_by),
    }


def silence_view(s: Silence, now: datetime) -> dict[str, Any]:
    return {
        "id": s.id,
        "matchers": [str(m) for m in s.matchers],
        "author": s.author,
        "reason": s.reason,
        "starts_at": _iso(s.starts_at),
        "ends_at": _iso(s.ends_at),
        "created_at": _iso(s.created_at),
        "expired_by": s.expired_by or None,
        "active": s.active(now),
    }


def delivery_view(r: OutboxRow) -> dict[str, Any]:
    return {
        "id": r.notification_id,
        "receiver": r.receiver,
        "status": r.status,
        "attempt": r.attempt,
        "last_error": r.last_error,
        "created_at": _iso(r.created_at),
        "updated_at": _iso(r.updated_at),
        "next_attempt_at": _iso(r.next_attempt_at),
    }


OnChange = Callable[[str, Principal, Any], Awaitable[None] | None]


def _error(status: int, message: str, **headers: str) -> web.HTTPException:
    cls = {
        400: web.HTTPBadRequest,
        401: web.HTTPUnauthorized,
        403: web.HTTPForbidden,
        404: web.HTTPNotFound,
        409: web.HTTPConflict,
    }[status]
    return cls(
        text=json.dumps({"error": message}), content_type="application/json", headers=headers
    )


def make_app(
    dispatcher: Dispatcher,
    tokens: TokenStore,
    clock: Callable[[], datetime] = _utcnow,
    on_change: OnChange | None = None,
    notifier: Notifier | None = None,
) -> web.Application:
    """The API over ``dispatcher``; ``on_change(action, principal, result)`` is called (and
    awaited, if it is a coroutine function) after every change, before the answer: to persist
    it. With ``notifier``, deliveries can be listed and dead ones re-driven."""

    def need(request: web.Request, role: Role) -> Principal:
        auth = request.headers.get("authorization", "")
        scheme, _, token = auth.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise _error(401, "missing bearer token", **{"WWW-Authenticate": "Bearer"})
        principal = tokens.authenticate(token.strip())
        if principal is None:
            raise _error(401, "unknown token", **{"WWW-Authenticate": "Bearer"})
        if ROLE_RANK[principal.role] < ROLE_RANK[role]:
            raise _error(403, f"role {principal.role} may not do this (needs {role})")
        return principal

    async def body(request: web.Request, model: type[BaseModel]) -> Any:
        try:
            raw = await request.json() if request.can_read_body else {}
            return model.model_validate(raw)
        except (ValueError, ValidationError) as e:
            raise _error(400, str(e).splitlines()[0]) from None

    async def changed(action: str, who: Principal, result: Any) -> web.Response:
        if on_change is not None:
            done = on_change(action, who, result)
            if inspect.isawaitable(done):
                await done
        return web.json_response(result)

    async def list_alerts(request: web.Request) -> web.Response:
        need(request, "viewer")
        return web.json_response([alert_view(s) for s in dispatcher.open_alerts()])

    async def list_silences(request: web.Request) -> web.Response:
        need(request, "viewer")
        now = clock()
        return web.json_response([silence_view(s, now) for s in dispatcher.silences.all()])

    async def list_audit(request: web.Request) -> web.Response:
        need(request, "viewer")
        return web.json_response(
            [
                {
                    "at": _iso(e.at),
                    "who": e.who,
                    "action": e.action,
                    "target": e.target,
                    "detail": e.detail,
                }
                for e in dispatcher.audit
            ]
        )

    async def add_silence(request: web.Request) -> web.Response:
        who = need(request, "operator")
        s_in: SilenceIn = await body(request, SilenceIn)
        now = clock()
        starts = s_in.starts_at or now
        ends = s_in.ends_at or (starts + s_in.duration if s_in.duration else None)
        if ends is None:
            raise _error(400, "give ends_at or duration")
        try:
            s = dispatcher.add_silence(s_in.matchers, who.who, s_in.reason, starts, ends, now)
        except ValueError as e:
            raise _error(400, str(e)) from None
        return await changed("silence_add", who, silence_view(s, now))

    async def expire_silence(request: web.Request) -> web.Response:
        who = need(request, "operator")
        now = clock()
        try:
            s = dispatcher.expire_silence(request.match_info["id"], who.who, now)
        except KeyError:
            raise _error(404, "no such silence") from None
        return await changed("silence_expire", who, silence_view(s, now))

    async def ack(request: web.Request) -> web.Response:
        who = need(request, "operator")
        note: NoteIn = await body(request, NoteIn)
        try:
            s = dispatcher.ack(request.match_info["fp"], who.who, clock(), note.note)
        except KeyError:
            raise _error(404, "no such alert") from None
        except ValueError as e:
            raise _error(409, str(e)) from None
        return await changed("ack", who, alert_view(s))

    async def resolve(request: web.Request) -> web.Response:
        who = need(request, "operator")
        note: NoteIn = await body(request, NoteIn)
        try:
            s = dispatcher.resolve(request.match_info["fp"], who.who, clock(), note.note)
        except KeyError:
            raise _error(404, "no such alert") from None
        return await changed("resolve", who, alert_view(s))

    async def list_deliveries(request: web.Request) -> web.Response:
        need(request, "viewer")
        assert notifier is not None
        receiver = request.query.get("receiver") or None
        if request.query.get("status", "dead") == "pending":
            rows = [r for r in notifier.outbox.pending() if receiver in (None, r.receiver)]
        else:
            rows = notifier.outbox.dead(receiver)
        return web.json_response(
            {
                "deliveries": [delivery_view(r) for r in rows],
                "disabled": notifier.disabled(),
            }
        )

    async def redrive(request: web.Request) -> web.Response:
        who = need(request, "operator")
        r_in: RedriveIn = await body(request, RedriveIn)
        assert notifier is not None
        if not r_in.ids and not r_in.receiver:
            raise _error(400, "give ids or receiver")
        ids = r_in.ids or [r.notification_id for r in notifier.outbox.dead(r_in.receiver)]
        now = clock()
        for receiver in {r_in.receiver} if r_in.receiver else set(notifier.disabled()):
            notifier.enable(receiver)
        rows = notifier.outbox.redrive(ids, now)
        detail = f"{len(rows)} of {len(ids)}" + (f" for {r_in.receiver}" if r_in.receiver else "")
        dispatcher.audit.append(
            AuditEntry(now, who.who, "redrive", r_in.receiver or ",".join(ids)[:200], detail)
        )
        notifier.wake()
        return await changed("redrive", who, {"redriven": [r.notification_id for r in rows]})

    app = web.Application()
    if notifier is not None:
        app.add_routes(
            [
                web.get("/api/v1/deliveries", list_deliveries),
                web.post("/api/v1/deliveries/redrive", redrive),
            ]
        )
    app.add_routes(
        [
            web.get("/api/v1/alerts", list_alerts),
            web.post("/api/v1/alerts/{fp}/ack", ack),
            web.post("/api/v1/alerts/{fp}/resolve", resolve),
            web.get("/api/v1/silences", list_silences),
            web.post("/api/v1/silences", add_silence),
            web.delete("/api/v1/silences/{id}", expire_silence),
            web.get("/api/v1/audit", list_audit),
        ]
    )
    return app
