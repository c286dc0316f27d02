"""The local HTTP API, dashboard and Prometheus metrics, served by the agent itself (issue #9).

Routes (OpenAPI 3.1 document at `/openapi.json`, schemas from the pydantic models in `station/status.py`):

    GET  /                the dashboard: one server-rendered page, live values polled from /api/status
    GET  /api/status      connection, EVSEs, transaction, meter, last control step, override, queue depth
    GET  /api/plan        the current charge plan with its predicted temperature trajectory (404: none)
    POST /api/override    model on/off, current cap, pause — bearer token required
    GET  /metrics         Prometheus text format (station/metrics.py)
    GET  /openapi.json

aiohttp serves it (the [api] extra; openleadr already brings it for the [grid] extra): it runs as one more
task on the agent's own event loop (`ApiServer.run`), binds where `[api]` says (loopback by default), and
leaves signal handling to the CLI. It is imported only when `[api] enabled`, so an edge build without the
API pays nothing for it.

State changes go through the device model exactly as an OCPP SetVariables on ChargeAgentCtrlr does, so an
override from the API persists, is logged and audited the same way, and the safety envelope still
dominates. A POST needs `Authorization: Bearer <token>` (the token from the env var named by
`[api] token_env`, compared in constant time); with no token configured every POST is refused (403).
The token never reaches a log line.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import os
from typing import TYPE_CHECKING, Any

import structlog
from aiohttp import web
from pydantic import ValidationError

from chargeagent.config import ApiSettings
from chargeagent.errors import ConfigError
from station.dashboard import DASHBOARD_HTML
from station.metrics import agent_registry, render
from station.protocol.device_variables import MAX_CURRENT, MODEL_ENABLED, PAUSED
from station.status import OverrideRequest, PlanView, Status, plan, status

if TYPE_CHECKING:
    from station.agent import StationAgent

log = structlog.get_logger(__name__)


class ApiServer:
    def __init__(self, agent: StationAgent, settings: ApiSettings) -> None:
        self.agent, self.settings = agent, settings
        self._token: str | None = None
        if settings.token_env is not None:
            self._token = os.environ.get(settings.token_env) or None
            if self._token is None:
                raise ConfigError(f"api.token_env: the env var {settings.token_env} is not set")
        self.port: int | None = None  # the bound port once running (port 0 picks a free one)
        self._registry = agent_registry(agent)
        self.ready = asyncio.Event()
        app = web.Application()
        app.router.add_get("/", self._dashboard)
        app.router.add_get("/api/status", self._status)
        app.router.add_get("/api/plan", self._plan)
        app.router.add_post("/api/override", self._override)
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/openapi.json", self._openapi)
        self.app = app

    async def run(self) -> None:
        """Serve until cancelled."""
        runner = web.AppRunner(self.app, handle_signals=False, access_log=None)
        await runner.setup()
        try:
            site = web.TCPSite(runner, self.settings.host, self.settings.port)
            await site.start()
            self.port = _bound_port(runner, self.settings.port)
            log.info("api_listening", host=self.settings.host, port=self.port, auth=self._token is not None)
            self.ready.set()
            await asyncio.Event().wait()
        finally:
            self.ready.clear()  # a Reset restarts the agent's tasks: the server binds again
            await runner.cleanup()

    # --- handlers ---------------------------------------------------------------------------------
    async def _dashboard(self, _: web.Request) -> web.Response:
        html = DASHBOARD_HTML.replace("{{station_id}}", self.agent.station_id)
        return web.Response(text=html, content_type="text/html")

    async def _status(self, _: web.Request) -> web.Response:
        return web.json_response(text=status(self.agent).model_dump_json())

    async def _plan(self, _: web.Request) -> web.Response:
        current = plan(self.agent)
        if current is None:
            return _error(404, "no charge plan: no session running, or the model is off (CC-CV)")
        return web.json_response(text=current.model_dump_json())

    async def _metrics(self, _: web.Request) -> web.Response:
        body, content_type = render(self._registry)
        return web.Response(body=body, headers={"Content-Type": content_type})

    async def _openapi(self, _: web.Request) -> web.Response:
        return web.json_response(openapi_document(self.agent.settings.station.charger_max_current_a))

    async def _override(self, request: web.Request) -> web.Response:
        denied = self._check_token(request)
        if denied is not None:
            return denied
        try:
            body = OverrideRequest.model_validate(await request.json())
        except (json.JSONDecodeError, ValidationError, UnicodeDecodeError) as exc:
            return _error(400, f"bad override: {str(exc).splitlines()[0]}")
        rating_a = self.agent.limits.charger_max_current_a
        if body.max_current_a is not None and body.max_current_a > rating_a:  # as the document's maximum
            return _error(400, f"max_current_a {body.max_current_a:g} is above the rating {rating_a:g} A")
        data = []
        if body.model_enabled is not None:
            data.append((MODEL_ENABLED, str(body.model_enabled).lower()))
        if body.max_current_a is not None or body.clear_cap:
            cap = rating_a if body.clear_cap else body.max_current_a
            data.append((MAX_CURRENT, f"{cap:g}"))
        if body.paused is not None:
            data.append((PAUSED, str(body.paused).lower()))
        requests = [
            {"component": {"name": c.name}, "variable": {"name": v.name}, "attributeValue": value}
            for (c, v), value in data
        ]
        results, changes = self.agent.devices.model.set_variables(requests)
        rejected = [r for r in results if r["attributeStatus"] != "Accepted"]
        if rejected:  # e.g. a cap above the rating: nothing applied, say which
            reason = (
                rejected[0].get("attributeStatusInfo", {}).get("reasonCode", rejected[0]["attributeStatus"])
            )
            return _error(400, f"{rejected[0]['variable']['name']} rejected: {reason}")
        if changes:
            self.agent.variables_changed(changes)
        log.warning("api_override", **body.model_dump(exclude_none=True))
        return web.json_response(status(self.agent).override.model_dump())

    def _check_token(self, request: web.Request) -> web.Response | None:
        if self._token is None:
            return _error(403, "state changes are disabled: no API token configured ([api] token_env)")
        given = request.headers.get("Authorization", "")
        scheme, _, token = given.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.encode(), self._token.encode()):
            log.warning("api_unauthorized", path=request.path, remote=request.remote)
            return web.json_response(
                {"error": "a valid bearer token is required"},
                status=401,
                headers={"WWW-Authenticate": 'Bearer realm="chargeagent"'},
            )
        return None


def _bound_port(runner: web.AppRunner, configured: int) -> int:
    """The port actually bound (the configured one, or the free one picked for port 0)."""
    for address in runner.addresses:
        if isinstance(address, tuple) and len(address) >= 2:
            return int(address[1])
    return configured


def _error(code: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=code)


def openapi_document(rating_a: float | None = None) -> dict[str, Any]:
    """OpenAPI 3.1 for the routes above; component schemas are the pydantic models' JSON Schemas.

    `rating_a` (the station's `charger_max_current_a`): the highest cap an override may set, as the
    device model's ChargeAgent.MaxCurrent maxLimit; a served document states it.
    """
    schemas = {}
    for model in (Status, PlanView, OverrideRequest):
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas.update(schema.pop("$defs", {}))
        schemas[model.__name__] = schema
    if rating_a is not None:
        cap = schemas["OverrideRequest"]["properties"]["max_current_a"]
        number = next(branch for branch in cap["anyOf"] if branch.get("type") == "number")
        number["maximum"] = rating_a
    error = {"type": "object", "properties": {"error": {"type": "string"}}, "required": ["error"]}
    schemas["Error"] = error

    def ok(ref: str | None, media: str = "application/json") -> dict[str, Any]:
        content = {media: {"schema": {"$ref": f"#/components/schemas/{ref}"} if ref else {"type": "string"}}}
        return {"description": "OK", "content": content}

    err = {
        "description": "Error",
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "chargeagent local API", "version": "1"},
        "paths": {
            "/api/status": {"get": {"summary": "Station status", "responses": {"200": ok("Status")}}},
            "/api/plan": {
                "get": {
                    "summary": "Current charge plan",
                    "responses": {"200": ok("PlanView"), "404": err},
                }
            },
            "/api/override": {
                "post": {
                    "summary": "Operator override (model off, current cap, pause)",
                    "security": [{"bearer": []}],
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {"schema": {"$ref": "#/components/schemas/OverrideRequest"}}
                        },
                    },
                    "responses": {"200": ok("OverrideStatus"), "400": err, "401": err, "403": err},
                }
            },
            "/metrics": {
                "get": {"summary": "Prometheus metrics", "responses": {"200": ok(None, "text/plain")}}
            },
            "/": {"get": {"summary": "Dashboard", "responses": {"200": ok(None, "text/html")}}},
            "/openapi.json": {
                "get": {
                    "summary": "This document",
                    "responses": {
                        "200": {
                            "description": "OK",
                            "content": {"application/json": {"schema": {"type": "object"}}},
                        }
                    },
                }
            },
        },
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }
