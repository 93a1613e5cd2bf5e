"""The node's client API: intake of signed intents, queries, streams, metrics (docs/API.md).

An ASGI app (FastAPI, so the OpenAPI document is generated from the real routes) served
by hypercorn's trio worker inside the node process. The app knows the node only through
`NodeFacade` (node/api/facade.py), which node/runtime.py implements; decoding, rate
limits and per-intent answers live in node/api/intake.py, the WebSocket intake in
node/api/ws.py, the documented shapes in node/api/schema.py. When the facade is a whole
node (`IndexedNode`: it has an engine and block listeners), the app also indexes blocks
(node/api/indexer.py) for the market queries (node/api/query.py) and the streams at
/v1/stream (node/api/streams.py); /metrics (node/api/metrics.py) is always served.

Errors are {"error": {"code", "message", ...}} on every route, FastAPI's own included.
Bad input is a 4xx with a machine-readable code, never a 5xx: the boundary catches
everything, and only a failure of the node itself answers 500.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Awaitable, Callable
from typing import Any, Final, Literal, cast

import structlog
import trio
from fastapi import FastAPI, Query, Request, WebSocket
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from hypercorn.config import Config
from hypercorn.trio import serve
from starlette.exceptions import HTTPException as StarletteHTTPException

from node.api.facade import ApiLimits, NodeFacade, SubmitResult, SubmitStatus
from node.api.fairness import install_fairness_routes
from node.api.history import HistoryStore
from node.api.indexer import IndexedNode, Indexer, IndexLimits
from node.api.intake import (
    ApiError,
    Intake,
    PostHelpers,
    client_key,
    decode_http_body,
    dumps_json,
    wait_and_timeout,
)
from node.api.listings import install_listing_routes
from node.api.metrics import CONTENT_TYPE, CountingFacade, NodeMetrics, RequestMetricsMiddleware
from node.api.query import QueryFacade, install_market_routes, install_query_routes
from node.api.ratelimit import retry_after_header
from node.api.schema import (
    DomainResponse,
    HealthResponse,
    ReadyResponse,
    SubmitResponse,
    error_responses,
    submit_body_schema,
)
from node.api.streams import StreamHub, StreamLimits, StreamSession
from node.api.ws import CLOSE_TRY_AGAIN_LATER, ConnectionCounter, IntakeSession

__all__ = [
    "ApiError",
    "ApiLimits",
    "NodeFacade",
    "SubmitResult",
    "SubmitStatus",
    "create_app",
    "serve_api",
]

log = structlog.get_logger("seqnet.api")

JSON: Final = "application/json"
_HTTP_CODES: Final = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    408: "timeout",
    409: "conflict",
    413: "too_large",
    415: "unsupported_media_type",
    429: "rate_limited",
    503: "unavailable",
}


def _json(status: int, body: Any, headers: dict[str, str] | None = None) -> Response:
    return Response(dumps_json(body), status_code=status, media_type=JSON, headers=headers)


def _error(error: ApiError) -> Response:
    headers = None
    if error.retry_after_s is not None:
        headers = {"Retry-After": retry_after_header(error.retry_after_s)}
    return _json(error.status, error.body(), headers)


def create_app(
    facade: NodeFacade,
    limits: ApiLimits | None = None,
    *,
    stream_limits: StreamLimits | None = None,
    index_limits: IndexLimits | None = None,
    history: HistoryStore | None = None,
) -> FastAPI:
    """`history`: the indexer's persistent file (node/api/history.py); None keeps the
    history in memory (tests, a node without a data directory)."""
    limits = limits or ApiLimits()
    stream_limits = stream_limits or StreamLimits()
    app = FastAPI(
        title="seqnet node API",
        version="1",
        description="Client API of a seqnet committee node: signed-intent intake, "
        "market and account queries, streams, checkpoints and proofs (docs/API.md).",
        openapi_url="/v1/openapi.json",
        docs_url=None,
        redoc_url=None,
    )
    node = facade if isinstance(facade, IndexedNode) else None
    hub = StreamHub()
    metrics = NodeMetrics(node, hub)
    indexer = None
    if node is not None:
        indexer = Indexer.attach(node, index_limits, hub, history)
        node.add_block_listener(metrics.on_block)
    intake = Intake(CountingFacade(facade, metrics), limits)
    connections = ConnectionCounter(limits.ws_max_connections, limits.ws_max_connections_per_ip)
    app.state.limits = limits
    app.state.metrics = metrics
    app.state.hub = hub
    app.state.indexer = indexer
    app.add_middleware(RequestMetricsMiddleware, metrics=metrics)
    _install_error_handlers(app)

    @app.post(
        "/v1/intents",
        response_model=SubmitResponse,
        responses=error_responses(400, 408, 413, 415, 429, 500),
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {JSON: {"schema": submit_body_schema(limits.max_batch_intents)}},
            }
        },
        summary="Submit one signed intent or a batch",
    )
    async def submit_intents(
        request: Request,
        wait: Literal["committed"] | None = Query(None, description="wait until committed"),
        timeout_ms: int | None = Query(None, ge=1, le=limits.max_wait_timeout_ms),
    ) -> Response:
        """One result per intent, in order. A batch with rejected intents is still 200."""
        return await submit(request, wait, timeout_ms)

    async def submit(request: Request, wait: str | None, timeout_ms: int | None) -> Response:
        try:
            client = client_key(request.scope)
            intake.charge_request(client)
            _check_content_type(request)
            wait_committed, timeout_s = wait_and_timeout(wait, timeout_ms, limits)
            items = decode_http_body(await _read_body(request, limits), limits)
            results = await intake.submit(client, items, wait_committed, timeout_s)
            add_result_ids(results)
            return _json(200, {"results": results})
        except ApiError as error:
            return _error(error)
        except Exception:
            log.exception("intake failed")
            return _error(ApiError(500, "internal", "internal error"))

    app.state.asgi = FastIntake(app, submit, limits, metrics)

    @app.get("/v1/status", responses=error_responses(429, 500), summary="Node status")
    async def status(request: Request) -> Response:
        try:
            intake.charge_request(client_key(request.scope))
            return _json(200, facade.status())
        except ApiError as error:
            return _error(error)

    @app.get(
        "/v1/domain",
        response_model=DomainResponse,
        responses=error_responses(429),
        summary="The EIP-712 domain intents are signed under (PROTOCOL.md §4.2)",
    )
    async def domain(request: Request) -> Response:
        try:
            intake.charge_request(client_key(request.scope))
        except ApiError as error:
            return _error(error)
        d = facade.domain
        body = {
            "name": d.name,
            "version": d.version,
            "chain_id": d.chain_id,
            "verifying_contract": "0x" + d.verifying_contract.hex(),
        }
        return _json(200, body)

    def add_result_ids(results: list[dict[str, Any]]) -> None:
        if indexer is not None:
            _add_order_ids(results, indexer)

    helpers = PostHelpers(_json, _error, _read_body, _check_content_type, add_result_ids)
    install_fairness_routes(app, facade, intake, limits, helpers)
    install_listing_routes(app, facade, intake, limits, helpers)

    if isinstance(facade, QueryFacade):
        install_query_routes(
            app,
            facade,
            lambda request: intake.charge_request(client_key(request.scope)),
            _json,
            _error,
        )

    if indexer is not None:
        install_market_routes(
            app,
            indexer,
            lambda request: intake.charge_request(client_key(request.scope)),
            _json,
            _error,
            facade.domain.verifying_contract,
        )
        checkpoints = facade.checkpoints if isinstance(facade, QueryFacade) else None
        stream_connections = ConnectionCounter(
            limits.ws_max_connections, limits.ws_max_connections_per_ip
        )

        @app.websocket("/v1/stream")
        async def stream(websocket: WebSocket) -> None:
            assert indexer is not None
            client = client_key(websocket.scope)
            if not stream_connections.open(client):
                await websocket.close(CLOSE_TRY_AGAIN_LATER, "too many connections")
                return
            try:
                await websocket.accept()
                session = StreamSession(
                    websocket, hub, indexer, intake, client, stream_limits, checkpoints
                )
                await session.run()
            finally:
                stream_connections.close(client)

    @app.get(
        "/metrics",
        summary="Prometheus metrics (text exposition format)",
        responses={200: {"content": {CONTENT_TYPE.split(";")[0]: {"schema": {"type": "string"}}}}},
    )
    async def prometheus_metrics() -> Response:
        return Response(metrics.render(), media_type=CONTENT_TYPE)

    @app.get("/healthz", response_model=HealthResponse, summary="Process alive")
    async def healthz() -> Response:
        return _json(200, {"status": "ok"})

    @app.get(
        "/readyz",
        response_model=ReadyResponse,
        responses=error_responses(503),
        summary="Joined the committee and caught up",
    )
    async def readyz() -> Response:
        if facade.is_ready():
            return _json(200, {"ready": True})
        status = facade.status()
        phase = status.get("phase", "starting")
        height, seen = status.get("committed_height"), status.get("highest_seen_height")
        body = ApiError(
            503, "not_ready", f"the node is not ready: {phase} (height {height}, seen {seen})"
        ).body()
        # The same fields as the start-up probe's answer (node/api/probe.py).
        body.update(phase=phase, committed_height=height, target_height=seen)
        return _json(503, body)

    @app.websocket("/v1/ws")
    async def websocket_intake(websocket: WebSocket) -> None:
        client = client_key(websocket.scope)
        if not connections.open(client):
            await websocket.close(CLOSE_TRY_AGAIN_LATER, "too many connections")
            return
        try:
            await websocket.accept()
            await IntakeSession(websocket, intake, client).run()
        finally:
            connections.close(client)

    _trim_openapi(app)
    return app


SUBMIT_PATH: Final = "/v1/intents"


class FastIntake:
    """The served ASGI app: POST /v1/intents goes straight to its handler, every other
    request to FastAPI. FastAPI's router, dependency solver and middleware stack cost
    about 1 ms of CPU per request on these machines, most of a node's HTTP time at light
    load (docs/BENCHMARKS.md); the submit handler, its query rules, error format and
    request metrics are the same either way (the FastAPI route stays, for the OpenAPI
    document and for in-process clients of the bare app)."""

    def __init__(
        self,
        app: FastAPI,
        submit: Callable[[Request, str | None, int | None], Awaitable[Response]],
        limits: ApiLimits,
        metrics: NodeMetrics,
    ) -> None:
        self._app = app
        self._submit = submit
        self._limits = limits
        self._requests = metrics.api_requests

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] != SUBMIT_PATH or scope["method"] != "POST":
            await self._app(scope, receive, send)
            return
        request = Request(scope, receive)
        try:
            wait, timeout_ms = _submit_query(request.query_params.get, self._limits)
        except ApiError as error:
            response = _error(error)
        else:
            response = await self._submit(request, wait, timeout_ms)
        self._requests.labels(SUBMIT_PATH, "POST", str(response.status_code)).inc()
        await response(scope, receive, send)


def _submit_query(
    get: Callable[[str], str | None], limits: ApiLimits
) -> tuple[str | None, int | None]:
    """The query of POST /v1/intents, validated as the FastAPI route declares it (a bad
    value is a 400 `bad_request` naming the parameter, as FastAPI's validation is)."""
    wait = get("wait")
    if wait is not None and wait != "committed":
        raise ApiError(400, "bad_request", "query.wait: Input should be 'committed'", field="wait")
    raw = get("timeout_ms")
    if raw is None:
        return wait, None
    text = raw.strip()
    digits = text[1:] if text[:1] in "+-" else text
    if not (digits.isascii() and digits.isdigit()) or len(digits) > 18:
        message = "query.timeout_ms: Input should be a valid integer"
        raise ApiError(400, "bad_request", message, field="timeout_ms")
    timeout_ms = int(text)
    if not 1 <= timeout_ms <= limits.max_wait_timeout_ms:
        message = f"query.timeout_ms: Input should be in 1..{limits.max_wait_timeout_ms}"
        raise ApiError(400, "bad_request", message, field="timeout_ms")
    return wait, timeout_ms


def _add_order_ids(results: list[dict[str, Any]], indexer: Indexer) -> None:
    """A committed `place` gets the id of the order it created, a committed `withdraw`
    the id of its withdrawal (HTTP answers only)."""
    for result in results:
        if result["status"] == "committed" and isinstance(result["id"], bytes):
            oid = indexer.oid_of_intent(result["id"])
            if oid is not None:
                result["oid"] = oid
                continue
            withdrawal_id = indexer.withdrawal_of_intent(result["id"])
            if withdrawal_id is not None:
                result["withdrawal_id"] = withdrawal_id


def _check_content_type(request: Request) -> None:
    media_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media_type != JSON:
        raise ApiError(415, "unsupported_media_type", "Content-Type must be application/json")


DRAIN_BYTES = 1 << 20  # how much of an oversized streamed body is read and dropped


async def _read_body(request: Request, limits: ApiLimits) -> bytes:
    """The body, refused with 413 as soon as it is known to exceed the limit (from the
    Content-Length header, or while streaming a chunked body), 408 if it dawdles."""
    length = request.headers.get("content-length")
    if length is not None:
        if not length.isdigit():
            raise ApiError(400, "bad_request", "Content-Length is not a number")
        if len(length) > 12 or int(length) > limits.max_body_bytes:
            if int(length) <= DRAIN_BYTES:  # small enough: read it, so the 413 is seen
                with trio.move_on_after(limits.body_read_timeout_s):
                    async for _ in request.stream():
                        pass
            raise ApiError(413, "too_large", f"body larger than {limits.max_body_bytes} bytes")
    body = bytearray()
    too_large = False
    discarded = 0
    with trio.move_on_after(limits.body_read_timeout_s) as scope:
        async for chunk in request.stream():
            if too_large:
                # Read (and drop) a bounded tail, so that the client, still sending, is
                # not reset before it reads our 413; a longer stream is simply cut.
                discarded += len(chunk)
                if discarded > DRAIN_BYTES:
                    break
                continue
            body += chunk
            if len(body) > limits.max_body_bytes:
                too_large = True
                body.clear()
    if too_large:
        raise ApiError(413, "too_large", f"body larger than {limits.max_body_bytes} bytes")
    if scope.cancelled_caught:
        raise ApiError(408, "timeout", "the body took too long to arrive")
    return bytes(body)


def _install_error_handlers(app: FastAPI) -> None:
    async def http_error(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        code = _HTTP_CODES.get(exc.status_code, "http_error")
        body = {"error": {"code": code, "message": str(exc.detail)}}
        return _json(exc.status_code, body, dict(exc.headers or {}))

    async def validation_error(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        errors = exc.errors()
        first = errors[0] if errors else {}
        where = ".".join(str(part) for part in first.get("loc", ()))
        message = f"{where}: {first.get('msg', 'invalid request')}"
        field = str(first["loc"][-1]) if first.get("loc") else None
        return _error(ApiError(400, "bad_request", message, field=field))

    async def api_error(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, ApiError)
        return _error(exc)

    async def internal_error(_: Request, exc: Exception) -> Response:
        log.error("unhandled error", error=repr(exc))
        return _error(ApiError(500, "internal", "internal error"))

    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(ApiError, api_error)
    app.add_exception_handler(Exception, internal_error)


def _trim_openapi(app: FastAPI) -> None:
    """FastAPI documents a 422 for every route with parameters; this API answers 400
    (with the common error body) instead, so say that."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = generate()
            for path in schema.get("paths", {}).values():
                for operation in path.values():
                    operation.get("responses", {}).pop("422", None)
            components = schema.get("components", {}).get("schemas", {})
            components.pop("HTTPValidationError", None)
            components.pop("ValidationError", None)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


# ---------------------------------------------------------------------------------------
# Serving


def hypercorn_config(host: str, port: int, limits: ApiLimits, graceful_timeout_s: float) -> Config:
    config = Config()
    config.bind = [f"[{host}]:{port}" if ":" in host else f"{host}:{port}"]
    config.accesslog = None
    config.errorlog = logging.getLogger("hypercorn.error")
    config.graceful_timeout = graceful_timeout_s
    # A WebSocket message is bounded like an HTTP body; hypercorn closes with 1009 above.
    config.websocket_max_message_size = limits.max_body_bytes
    return config


async def serve_api(
    app: FastAPI,
    host: str,
    port: int,
    *,
    graceful_timeout_s: float = 3.0,
    sock: socket.socket | None = None,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve until cancelled; `task_status.started(port)` with the bound port (useful
    with port 0). `sock`: a socket already listening on host:port (node/api/probe.py
    answered on it during start-up), served instead of binding a new one. On
    cancellation, stop accepting and give open requests `graceful_timeout_s` to
    finish."""
    limits: ApiLimits = app.state.limits
    config = hypercorn_config(host, port, limits, graceful_timeout_s)
    if sock is not None:
        # hypercorn takes ownership of the descriptor it is given: hand it a duplicate.
        config.bind = [f"fd://{os.dup(sock.fileno())}"]
    shutdown = trio.Event()
    # Once serving, shielded, so that an outer cancel becomes a graceful shutdown with a
    # hard deadline. Not while it starts: trio keeps a child that reports started after
    # its `start` was cancelled under that `start`, and a shielded one would never end
    # (a member stopped during start-up hung until SIGKILL); unshielded, it ends there.
    server_scope = trio.CancelScope()

    async def run_server(task_status: trio.TaskStatus[list[str]]) -> None:
        with server_scope:
            # hypercorn's ASGI types are narrower than Starlette's; the app is plain ASGI.
            await serve(
                cast(Any, app.state.asgi),
                config,
                shutdown_trigger=shutdown.wait,
                task_status=task_status,
            )

    async with trio.open_nursery() as nursery:
        binds: list[str] = await nursery.start(run_server)
        server_scope.shield = True  # no checkpoint since `start` returned
        try:
            bound_port = int(binds[0].rsplit(":", 1)[1])
            log.info("api listening", host=host, port=bound_port)
            task_status.started(bound_port)
            await trio.sleep_forever()
        finally:
            shutdown.set()
            server_scope.deadline = trio.current_time() + graceful_timeout_s + 1.0
