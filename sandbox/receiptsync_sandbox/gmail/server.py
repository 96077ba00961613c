"""The emulator's HTTP face (aiohttp): Gmail API routes, /batch, POST /token, and /_emulator admin.

Paths are the ones google-api-python-client builds from its bundled gmail v1 discovery document
with ``client_options={"api_endpoint": "http://HOST:PORT/"}``: ``/gmail/v1/users/...``. Note that
the client's ``new_batch_http_request()`` ignores api_endpoint (it uses the document's rootUrl), so
clients build ``BatchHttpRequest(batch_uri="http://HOST:PORT/batch")``; ``/batch/gmail/v1`` (Gmail's
documented batch path) is served too.

Admin endpoints (no auth): GET/POST /_emulator/config, GET /_emulator/stats,
POST /_emulator/stats/reset, POST /_emulator/history/expire {"mailbox": ADDR},
POST /_emulator/rescan, GET /_emulator/mailboxes, GET /_emulator/health.
"""
from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web
from multidict import CIMultiDict, MultiDict

from . import auth
from .api import ApiAnswer, ApiCall, GmailApi
from .batch import format_batch, parse_batch
from .config import EmulatorConfig
from .errors import ApiError, backend_error, not_found
from .faults import Faults
from .mailbox import MailboxDirectory
from .quota import QuotaLimiter
from .stats import Stats

log = logging.getLogger(__name__)


@dataclass
class Emulator:
    """Everything the running app holds: mailboxes, knobs, tokens, quota buckets, counters."""

    config: EmulatorConfig
    mailboxes: MailboxDirectory
    tokens: auth.TokenStore
    quota: QuotaLimiter
    stats: Stats
    faults: Faults
    api: GmailApi


EMULATOR = web.AppKey("emulator", Emulator)


def build_emulator(mailbox_dir: Path | str, config: EmulatorConfig | None = None,
                   state_dir: Path | str | None = None) -> Emulator:
    config = config or EmulatorConfig()
    mailboxes = MailboxDirectory(Path(mailbox_dir), Path(state_dir) if state_dir else None,
                                 rescan_interval=lambda: config.rescan_interval_s)
    mailboxes.load_all()
    tokens, quota, stats, faults = auth.TokenStore(), QuotaLimiter(), Stats(), Faults(config.seed)
    api = GmailApi(mailboxes, config, tokens, quota, stats, faults)
    return Emulator(config, mailboxes, tokens, quota, stats, faults, api)


def create_app(mailbox_dir: Path | str, config: EmulatorConfig | None = None,
               state_dir: Path | str | None = None) -> web.Application:
    app = web.Application(middlewares=[_google_errors, _latency], client_max_size=64 * 1024 * 1024)
    app[EMULATOR] = build_emulator(mailbox_dir, config, state_dir)
    app.router.add_post("/token", token)
    app.router.add_post("/batch", batch)
    app.router.add_post("/batch/{api}/{version}", batch)
    app.router.add_route("*", "/gmail/v1/{tail:.*}", gmail_call)
    app.router.add_get("/_emulator/health", health)
    app.router.add_get("/_emulator/config", get_config)
    app.router.add_post("/_emulator/config", set_config)
    app.router.add_get("/_emulator/stats", get_stats)
    app.router.add_post("/_emulator/stats/reset", reset_stats)
    app.router.add_post("/_emulator/history/expire", expire_history)
    app.router.add_post("/_emulator/rescan", rescan)
    app.router.add_get("/_emulator/mailboxes", list_mailboxes)
    return app


# ---------------------------------------------------------------- middlewares


@web.middleware
async def _google_errors(request: web.Request, handler):
    """Whatever goes wrong is answered in Google's error shape, never as an HTML page."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        error = not_found() if exc.status == 404 else ApiError(exc.status, exc.reason, "badRequest")
        return _json(error.code, error.body())
    except ApiError as error:
        return _json(error.code, error.body(), error.headers)
    except Exception:
        log.exception("emulator bug answering %s %s", request.method, request.path)
        error = backend_error(500)
        return _json(500, error.body())


@web.middleware
async def _latency(request: web.Request, handler):
    """The configured per-request latency; the admin endpoints answer at once."""
    emulator = request.app[EMULATOR]
    if not request.path.startswith("/_emulator"):
        emulator.stats.http_requests += 1
        if emulator.config.latency_ms > 0:
            await asyncio.sleep(emulator.config.latency_ms / 1000.0)
    return await handler(request)


# ---------------------------------------------------------------- OAuth and the API


async def token(request: web.Request) -> web.Response:
    emulator = request.app[EMULATOR]
    form = await _form_or_json(request)
    address = auth.grant(form, lambda name: emulator.mailboxes.get(name) is not None, emulator.config.revoked)
    if address is None:
        emulator.stats.token_refusals += 1
        return _json(400, auth.INVALID_GRANT)
    emulator.stats.token_grants += 1
    ttl = emulator.config.token_ttl_s
    return _json(200, {"access_token": emulator.tokens.issue(address, ttl), "expires_in": ttl,
                       "token_type": "Bearer", "scope": auth.GMAIL_READONLY_SCOPE})


async def _form_or_json(request: web.Request) -> dict[str, str]:
    if request.content_type == "application/json":
        try:
            data = await request.json()
        except ValueError:
            return {}
        return {str(key): str(value) for key, value in data.items()} if isinstance(data, dict) else {}
    return {key: str(value) for key, value in (await request.post()).items()}


async def gmail_call(request: web.Request) -> web.Response:
    call = ApiCall(request.method, request.path, MultiDict(request.query), CIMultiDict(request.headers))
    answer = await request.app[EMULATOR].api.call(call)
    return _json(answer.status, answer.body, answer.headers)


async def batch(request: web.Request) -> web.Response:
    emulator = request.app[EMULATOR]
    emulator.stats.batch_requests += 1
    parts = parse_batch(request.headers.get("Content-Type", ""), await request.read(),
                        CIMultiDict(request.headers))
    answers: list[ApiAnswer] = list(await asyncio.gather(*(emulator.api.call(part.call) for part in parts)))
    content_type, body = format_batch(parts, answers)
    return web.Response(status=200, body=body, headers={"Content-Type": content_type})


# ---------------------------------------------------------------- admin


async def health(request: web.Request) -> web.Response:
    return _json(200, {"ok": True})


async def get_config(request: web.Request) -> web.Response:
    return _json(200, request.app[EMULATOR].config.as_json())


async def set_config(request: web.Request) -> web.Response:
    emulator = request.app[EMULATOR]
    changes = await _json_body(request)
    if not isinstance(changes, dict):
        raise ApiError(400, "config must be a JSON object", "badRequest")
    try:
        unknown = emulator.config.update(changes)
    except (TypeError, ValueError) as exc:
        raise ApiError(400, f"bad config value: {exc}", "badRequest") from None
    if unknown:
        raise ApiError(400, f"unknown config keys: {', '.join(sorted(unknown))}", "badRequest")
    if "seed" in changes:
        emulator.faults.reseed(emulator.config.seed)
    if {"quota_rate", "quota_burst", "quota_enabled"} & set(changes):
        emulator.quota.reset()  # start the new rate from a full bucket
    return _json(200, emulator.config.as_json())


async def get_stats(request: web.Request) -> web.Response:
    emulator = request.app[EMULATOR]
    config = emulator.config
    quota = {"enabled": config.quota_enabled, "rate_units_per_s": config.quota_rate,
             "burst_units": config.quota_burst, "status": config.quota_status}
    return _json(200, emulator.stats.as_json(quota))


async def reset_stats(request: web.Request) -> web.Response:
    emulator = request.app[EMULATOR]
    emulator.stats.reset()
    emulator.quota.reset()
    return _json(200, {"ok": True})


async def expire_history(request: web.Request) -> web.Response:
    emulator = request.app[EMULATOR]
    body = await _json_body(request)
    addresses = [body["mailbox"]] if isinstance(body, dict) and body.get("mailbox") else emulator.mailboxes.addresses()
    expired = {}
    for address in addresses:
        mailbox = emulator.mailboxes.get(address)
        if mailbox is None:
            raise ApiError(404, f"no mailbox {address}", "notFound")
        mailbox.expire_history()
        expired[mailbox.address] = str(mailbox.expired_below)
    return _json(200, {"expired_below": expired})


async def rescan(request: web.Request) -> web.Response:
    emulator = request.app[EMULATOR]
    counts = {}
    for mailbox in emulator.mailboxes.all():
        mailbox.refresh(force=True)
        counts[mailbox.address] = len(mailbox.messages)
    return _json(200, {"messages": counts})


async def list_mailboxes(request: web.Request) -> web.Response:
    emulator = request.app[EMULATOR]
    result = {mailbox.address: {"messages": len(mailbox.messages), "historyId": str(mailbox.history_id)}
              for mailbox in emulator.mailboxes.all()}
    return _json(200, result)


async def _json_body(request: web.Request) -> Any:
    if not request.can_read_body:
        return {}
    try:
        return await request.json()
    except ValueError:
        raise ApiError(400, "the body must be JSON", "badRequest") from None


def _json(status: int, body: Any, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(status=status, text=json.dumps(body), content_type="application/json",
                        charset="utf-8", headers=headers)
