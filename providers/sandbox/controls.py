"""`/_sandbox/*`: how tests make the sandbox misbehave over HTTP and look inside it.

GET  /_sandbox/health               charges held, webhooks waiting
GET  /_sandbox/knobs                POST /_sandbox/knobs {name: value, ...} (all or none)
POST /_sandbox/webhooks/pause       hold deliveries;  POST /_sandbox/webhooks/resume
GET  /_sandbox/webhooks/attempts    recent delivery attempts (event id, attempt, status)
POST /_sandbox/charges/{id}/dispute open a dispute on a succeeded charge now
POST /_sandbox/disputes/{id}/close  {"outcome": "won" | "lost"}
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from providers.sandbox.wire import Invalid, invalid, json_response, read_json

if TYPE_CHECKING:
    from providers.sandbox.processor import SandboxProcessor


def add_routes(app: web.Application, processor: SandboxProcessor) -> None:
    async def health(request: web.Request) -> web.Response:
        deliverer = processor.deliverer
        pending = deliverer.pending() if deliverer else 0
        body = {"ok": True, "charges": len(processor.charges), "webhooks_pending": pending}
        return json_response(200, body)

    async def get_knobs(request: web.Request) -> web.Response:
        return json_response(200, processor.knobs.as_dict())

    async def set_knobs(request: web.Request) -> web.Response:
        try:
            processor.knobs.update(await read_json(request))
        except ValueError as exc:
            return invalid(Invalid("knobs", str(exc)))
        except Invalid as exc:
            return invalid(exc)
        return json_response(200, processor.knobs.as_dict())

    async def pause(request: web.Request) -> web.Response:
        if processor.deliverer is not None:
            processor.deliverer.pause()
        return json_response(200, {"paused": True})

    async def resume(request: web.Request) -> web.Response:
        if processor.deliverer is not None:
            processor.deliverer.resume()
        return json_response(200, {"paused": False})

    async def attempts(request: web.Request) -> web.Response:
        entries = list(processor.deliverer.log) if processor.deliverer else []
        return json_response(200, {"data": entries, "has_more": False})

    async def open_dispute(request: web.Request) -> web.Response:
        try:
            opened = processor.open_dispute(request.match_info["id"])
        except Invalid as exc:
            return invalid(exc)
        return json_response(200, opened)

    async def close_dispute(request: web.Request) -> web.Response:
        try:
            outcome = (await read_json(request)).get("outcome")
            closed = processor.close_dispute(request.match_info["id"], outcome)
        except Invalid as exc:
            return invalid(exc)
        return json_response(200, closed)

    app.router.add_get("/_sandbox/health", health)
    app.router.add_get("/_sandbox/knobs", get_knobs)
    app.router.add_post("/_sandbox/knobs", set_knobs)
    app.router.add_post("/_sandbox/webhooks/pause", pause)
    app.router.add_post("/_sandbox/webhooks/resume", resume)
    app.router.add_get("/_sandbox/webhooks/attempts", attempts)
    app.router.add_post("/_sandbox/charges/{id}/dispute", open_dispute)
    app.router.add_post("/_sandbox/disputes/{id}/close", close_dispute)
