"""The IOmeter emulator: a GraphQL-over-HTTP server at `/api/v1/query` plus `/_sandbox/*` controls.

Request handling, in order: fault knobs (not on `/_sandbox/*`), authentication (WSSE or Basic, 401
with `UNAUTHENTICATED`), request parsing (POST JSON body or GET query parameters), parsing and
validation against the pinned schema (400, `GRAPHQL_PARSE_FAILED` / `GRAPHQL_VALIDATION_FAILED`),
variable coercion (400, `BAD_USER_INPUT`), execution (200 with `data` and any field `errors`).

Subscriptions are served on the same path over WebSocket with the `graphql-transport-ws` protocol:
`connection_init` carries `{"Authorization": ...}`, checked like an HTTP request's (4403 when refused),
then `subscribe` / `next` / `complete` / `error` per that protocol.

Stats (`Emulator.stats`, a Counter): `requests` (every vendor-path request), one key per executed
operation named by its operation name (`PartnerReadings`, `Installations`, ...; `anonymous` when
unnamed), `field:<root field>` per root field executed, and `auth:<reason>` per rejected request.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import json
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from typing import Any, TypeGuard

from graphql import (
    DocumentNode,
    ExecutionResult,
    FieldNode,
    GraphQLError,
    GraphQLSchema,
    OperationDefinitionNode,
    OperationType,
    execute,
    get_operation_ast,
    parse,
    subscribe,
    validate,
    visit,
)
from graphql.execution.values import get_variable_values
from graphql.language import Visitor
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from app.backends.iometer.emulator.auth import Authenticator, NonceStore
from app.backends.iometer.emulator.data import DemoData, PartnerRecord
from app.backends.iometer.emulator.schema import RequestContext, build_executable_schema
from app.sandbox.faults import Faults

QUERY_PATH = "/api/v1/query"
SUBPROTOCOL = "graphql-transport-ws"

BREAKS: dict[str, str] = {
    "no_introspection": "introspection is disabled (the doctor cannot diff the schema: UNKNOWN, not FAIL)",
    "schema_drift": "`Installation.externalId` is gone (the page: 'No longer supported')",
    "obis_format_upper": "the `ObisFormat` enum values are upper case (`DECIMAL`)",
    "pagination_first_after": "`Pagination` is `{first, after}`, not `{limit, offset}`",
    "receive_order": "readings come in receive order (a page newest first, one reading twice)",
    "cursor_ignored": "the `cursor` argument is ignored (every page is the first)",
    "hex_default": "`obisCode` without `format:` answers the hex form (`01-00:01.08.00*ff`)",
    "upper_ids": "every id is sent in upper case",
}
"""The emulator variants: name → the pinned assumption it breaks."""


def _errors(message: str, code: str, status: int, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"errors": [{"message": message, "extensions": {"code": code}}]}, status, headers=headers)


_FAULT_CODES = {
    429: "RATE_LIMITED",
    500: "INTERNAL_SERVER_ERROR",
    502: "BAD_GATEWAY",
    503: "SERVICE_UNAVAILABLE",
    504: "GATEWAY_TIMEOUT",
    401: "UNAUTHENTICATED",
}


def _never_awaitable(_: Any) -> TypeGuard[Awaitable[Any]]:
    return False


class Emulator:
    """One emulator instance: `.app` (ASGI), `.faults`, `.stats`, `.data` (see `data.DemoData`)."""

    def __init__(
        self,
        clock: Callable[[], float],
        *,
        seed: int,
        page_size: int | None = None,
        window_days: int = 90,
        subscription_poll: float = 1.0,
        breaks: frozenset[str] | set[str] = frozenset(),
        partners: dict[str, str] | None = None,
    ) -> None:
        if page_size is not None and page_size < 1:
            raise ValueError("page_size must be at least 1")
        unknown = set(breaks) - set(BREAKS)
        if unknown:
            raise ValueError(f"unknown emulator variant(s): {', '.join(sorted(unknown))}")
        self.breaks = frozenset(breaks)
        self.clock = clock
        self.seed = seed
        self.page_size = page_size
        self.data = DemoData(seed, clock, window_days=window_days)
        for partner_id, secret in (partners or {}).items():  # e.g. the page's example partners, no installations
            self.data.partners[partner_id] = PartnerRecord(partner_id, "Example Partner", secret)
        self.faults = Faults()
        self.stats: Counter[str] = Counter()
        self.nonces = NonceStore()
        self.disabled_installations: set[str] = set()
        self._rng = random.Random(seed)
        self._auth = Authenticator({p.id: p.secret for p in self.data.partners.values()}, self.nonces)
        self._schema: GraphQLSchema = build_executable_schema(subscription_poll, self.breaks)
        self._documents: dict[str, DocumentNode | list[GraphQLError]] = {}
        self._hung: set[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = set()
        self.app = Starlette(
            routes=[
                Route(QUERY_PATH, self._query, methods=["GET", "POST"]),
                WebSocketRoute(QUERY_PATH, self._subscriptions),
                Route("/_sandbox/faults", self._get_faults, methods=["GET"]),
                Route("/_sandbox/faults", self._put_faults, methods=["PUT"]),
                Route("/_sandbox/stats", self._get_stats, methods=["GET"]),
                Route("/_sandbox/reset", self._reset, methods=["POST"]),
                Route("/_sandbox/data", self._get_data, methods=["GET"]),
            ]
        )

    def reset(self) -> None:
        """Clear faults, stats and disabled installations; release hung requests."""
        self.faults.reset()
        self.stats.clear()
        self.disabled_installations.clear()
        self._release_hung()

    def _release_hung(self) -> None:
        # Thread-safe: a test may reset the emulator from outside the server's event loop.
        for loop, event in list(self._hung):
            loop.call_soon_threadsafe(event.set)

    # --- faults ----------------------------------------------------------------------------------

    async def _hang(self, request: Request) -> None:
        """Wait until the knob is released or the client disconnects."""
        await request.body()  # read (and keep) the body first: afterwards `receive` only reports a disconnect
        event = asyncio.Event()
        waiter = (asyncio.get_running_loop(), event)
        self._hung.add(waiter)

        async def disconnected() -> None:
            while (await request.receive())["type"] != "http.disconnect":
                pass

        tasks = [asyncio.ensure_future(event.wait()), asyncio.ensure_future(disconnected())]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            self._hung.discard(waiter)

    async def _fault(self, request: Request) -> Response | None:
        faults = self.faults
        if faults.hang:
            await self._hang(request)
        if faults.outage:
            return _errors("Service unavailable", "SERVICE_UNAVAILABLE", 503)
        if faults.fail_next:
            status = faults.fail_next.pop(0)
            return self._fault_response(status)
        if faults.latency > 0:
            await asyncio.sleep(self._rng.uniform(0, faults.latency))
        if faults.rate_limit_rate > 0 and self._rng.random() < faults.rate_limit_rate:
            return self._fault_response(429)
        if faults.error_rate > 0 and self._rng.random() < faults.error_rate:
            return self._fault_response(500)
        return None

    def _fault_response(self, status: int) -> Response:
        headers = {"Retry-After": str(self.faults.retry_after)} if status in (429, 503) else None
        code = _FAULT_CODES.get(status, "INTERNAL_SERVER_ERROR")
        return _errors("Too many requests" if status == 429 else f"Injected failure {status}", code, status, headers)

    # --- the GraphQL endpoint --------------------------------------------------------------------

    async def _query(self, request: Request) -> Response:
        self.stats["requests"] += 1
        fault = await self._fault(request)
        if fault is not None:
            return fault
        partner_id, reason = self._auth.check(request.headers.get("authorization"), self.clock())
        if partner_id is None:
            self.stats[f"auth:{reason}"] += 1
            return _errors("Unauthenticated", "UNAUTHENTICATED", 401, {"WWW-Authenticate": "UsernameToken"})
        params = await self._params(request)
        if isinstance(params, Response):
            return params
        query, variables, operation_name = params
        document = self._document(query)
        if isinstance(document, list):
            code = (
                "GRAPHQL_PARSE_FAILED"
                if document and document[0].message.startswith("Syntax Error")
                else "GRAPHQL_VALIDATION_FAILED"
            )
            return self._result(ExecutionResult(None, document), 400, code)
        operation = get_operation_ast(document, operation_name)
        if operation is None:
            return _errors("Could not determine which operation to run", "BAD_REQUEST", 400)
        if operation.operation == OperationType.SUBSCRIPTION:
            return _errors("Subscriptions are served over WebSocket", "BAD_REQUEST", 400)
        if operation.operation == OperationType.MUTATION and request.method == "GET":
            return _errors("Mutations need POST", "BAD_REQUEST", 405, {"Allow": "POST"})
        coerced = get_variable_values(self._schema, operation.variable_definitions or (), variables or {})
        if isinstance(coerced, list):
            return self._result(ExecutionResult(None, coerced), 400, "BAD_USER_INPUT")
        self._count(operation)
        context = RequestContext(self.data, partner_id, self.page_size, self.disabled_installations, self.breaks)
        result = execute(
            self._schema,
            document,
            context_value=context,
            variable_values=variables,
            operation_name=operation_name,
            is_awaitable=_never_awaitable,  # every resolver is synchronous: skip graphql-core's probing
        )
        assert isinstance(result, ExecutionResult)  # every resolver is synchronous
        return self._result(result, 200, None)

    # --- subscriptions: GraphQL over WebSocket, `graphql-transport-ws` ------------------------------------
    async def _subscriptions(self, websocket: WebSocket) -> None:
        """The `graphql-transport-ws` protocol on the query path. The `Authorization` value comes in the
        `connection_init` payload and is checked like an HTTP request's (WSSE window, nonce replay)."""
        if SUBPROTOCOL not in websocket.scope.get("subprotocols", []):
            await websocket.close(code=4406, reason="Subprotocol not acceptable")
            return
        await websocket.accept(subprotocol=SUBPROTOCOL)
        self.stats["ws:connections"] += 1
        partner_id: str | None = None
        running: dict[str, asyncio.Task[None]] = {}
        try:
            while True:
                try:
                    message = json.loads(await websocket.receive_text())
                    kind = message["type"]
                except (ValueError, KeyError, TypeError):
                    await websocket.close(code=4400, reason="Invalid message")
                    return
                if kind == "connection_init":
                    if partner_id is not None:
                        await websocket.close(code=4429, reason="Too many initialisation requests")
                        return
                    payload = message.get("payload") or {}
                    header = payload.get("Authorization") if isinstance(payload, dict) else None
                    partner_id, reason = self._auth.check(header if isinstance(header, str) else None, self.clock())
                    if partner_id is None:
                        self.stats[f"auth:{reason}"] += 1
                        await websocket.close(code=4403, reason="Forbidden")
                        return
                    await websocket.send_json({"type": "connection_ack"})
                elif kind == "ping":
                    await websocket.send_json({"type": "pong"})
                elif kind == "subscribe":
                    if partner_id is None:
                        await websocket.close(code=4401, reason="Unauthorized")
                        return
                    sub_id = message.get("id")
                    if not isinstance(sub_id, str) or sub_id in running:
                        await websocket.close(code=4409, reason=f"Subscriber for {sub_id} already exists")
                        return
                    payload = message.get("payload") or {}
                    task = asyncio.create_task(self._stream(websocket, sub_id, payload, partner_id))
                    running[sub_id] = task
                    task.add_done_callback(functools.partial(_forget, running, sub_id))
                elif kind == "complete":
                    finished = running.pop(str(message.get("id")), None)
                    if finished is not None:
                        finished.cancel()
                elif kind != "pong":
                    await websocket.close(code=4400, reason=f"Unknown message type {kind!r}")
                    return
        except WebSocketDisconnect:
            pass
        finally:
            for task in list(running.values()):
                task.cancel()

    async def _stream(self, websocket: WebSocket, sub_id: str, payload: Any, partner_id: str) -> None:
        """Run one subscription: `next` per event, `complete` at the end, `error` if it cannot start."""
        query = payload.get("query") if isinstance(payload, dict) else None
        variables = payload.get("variables") if isinstance(payload, dict) else None
        document = self._document(query) if isinstance(query, str) else [GraphQLError("query is required")]
        if isinstance(document, list):
            await websocket.send_json({"type": "error", "id": sub_id, "payload": [e.formatted for e in document]})
            return
        operation = get_operation_ast(document, payload.get("operationName"))
        if operation is None or operation.operation != OperationType.SUBSCRIPTION:
            error = GraphQLError("only subscriptions are served over WebSocket")
            await websocket.send_json({"type": "error", "id": sub_id, "payload": [error.formatted]})
            return
        self._count(operation)
        context = RequestContext(self.data, partner_id, self.page_size, self.disabled_installations, self.breaks)
        started = subscribe(
            self._schema,
            document,
            context_value=context,
            variable_values=variables,
            operation_name=payload.get("operationName"),
        )
        stream = await started if inspect.isawaitable(started) else started
        if isinstance(stream, ExecutionResult):  # it could not start: bad variables, unknown installation
            await websocket.send_json({"type": "error", "id": sub_id, "payload": stream.formatted["errors"]})
            return
        try:
            async for result in stream:
                await websocket.send_json({"type": "next", "id": sub_id, "payload": result.formatted})
            await websocket.send_json({"type": "complete", "id": sub_id})
        except GraphQLError as exc:
            await websocket.send_json({"type": "error", "id": sub_id, "payload": [exc.formatted]})
        except WebSocketDisconnect:
            pass
        finally:
            await stream.aclose()  # type: ignore[attr-defined]

    async def _params(self, request: Request) -> tuple[str, dict[str, Any] | None, str | None] | Response:
        if request.method == "GET":
            raw: dict[str, Any] = dict(request.query_params)
            if "variables" in raw:
                try:
                    raw["variables"] = json.loads(raw["variables"])
                except ValueError:
                    return _errors("variables is not JSON", "BAD_REQUEST", 400)
        else:
            content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
            if content_type != "application/json":
                return _errors("Content-Type must be application/json", "BAD_REQUEST", 415)
            try:
                raw = json.loads(await request.body())
            except ValueError:
                return _errors("Body is not JSON", "BAD_REQUEST", 400)
            if not isinstance(raw, dict):
                return _errors("Body must be a JSON object", "BAD_REQUEST", 400)
        query, variables, operation_name = raw.get("query"), raw.get("variables"), raw.get("operationName")
        if not isinstance(query, str) or not query:
            return _errors("query must be a string", "BAD_REQUEST", 400)
        if variables is not None and not isinstance(variables, dict):
            return _errors("variables must be an object", "BAD_REQUEST", 400)
        if operation_name is not None and not isinstance(operation_name, str):
            return _errors("operationName must be a string", "BAD_REQUEST", 400)
        return query, variables, operation_name

    def _document(self, query: str) -> DocumentNode | list[GraphQLError]:
        """Parsed and validated document, remembered by its text (a client repeats the same few)."""
        cached = self._documents.get(query)
        if cached is None:
            try:
                document = parse(query)
            except GraphQLError as error:
                cached = [error]
            else:
                errors = validate(self._schema, document)
                if not errors and "no_introspection" in self.breaks and _introspects(document):
                    errors = [GraphQLError("GraphQL introspection is not allowed by the server")]
                cached = list(errors) if errors else document
            if len(self._documents) > 256:
                self._documents.clear()
            self._documents[query] = cached
        return cached

    def _count(self, operation: OperationDefinitionNode) -> None:
        self.stats[operation.name.value if operation.name else "anonymous"] += 1
        for selection in operation.selection_set.selections:
            if isinstance(selection, FieldNode):
                self.stats[f"field:{selection.name.value}"] += 1

    @staticmethod
    def _result(result: ExecutionResult, status: int, code: str | None) -> Response:
        body: dict[str, Any] = {}
        if result.errors:
            errors = []
            for error in result.errors:
                formatted = error.formatted
                if code is not None:
                    formatted["extensions"] = {**(formatted.get("extensions") or {}), "code": code}
                errors.append(formatted)
            body["errors"] = errors
        if status == 200:
            body["data"] = result.data
        return JSONResponse(body, status)

    # --- controls --------------------------------------------------------------------------------

    async def _get_faults(self, _: Request) -> Response:
        return JSONResponse(asdict(self.faults))

    async def _put_faults(self, request: Request) -> Response:
        try:
            update = json.loads(await request.body())
        except ValueError:
            return JSONResponse({"detail": "body is not JSON"}, 400)
        if not isinstance(update, dict):
            return JSONResponse({"detail": "body must be an object"}, 400)
        try:
            self.faults.update(update)
        except ValueError as exc:
            return JSONResponse({"detail": str(exc)}, 400)
        if not self.faults.hang:
            self._release_hung()
        return JSONResponse(asdict(self.faults))

    async def _get_stats(self, _: Request) -> Response:
        return JSONResponse(dict(self.stats))

    async def _reset(self, _: Request) -> Response:
        self.reset()
        return JSONResponse({"reset": True})

    async def _get_data(self, _: Request) -> Response:
        data = self.data
        return JSONResponse(
            {
                "partner_id": data.partner.id,
                "window_start": data.window_start.isoformat(),
                "installations": [asdict(i) for i in data.installations],
                "meters": [{"id": m.id, "number": m.number, "installation_id": m.installation_id} for m in data.meters],
                "devices": [asdict(d) for d in data.devices],
                "gaps": {k: [[a.isoformat(), b.isoformat()] for a, b in v] for k, v in data.gaps.items()},
                "swaps": {k: v.isoformat() for k, v in data.swaps.items()},
            }
        )


def _introspects(document: DocumentNode) -> bool:
    """Whether any field selected anywhere in the document is `__schema` or `__type`."""
    found = False

    class Finder(Visitor):
        def enter_field(self, node: FieldNode, *_: Any) -> None:
            nonlocal found
            if node.name.value in ("__schema", "__type"):
                found = True

    visit(document, Finder())
    return found


def _forget(running: dict[str, asyncio.Task[None]], sub_id: str, task: asyncio.Task[None]) -> None:
    if running.get(sub_id) is task:
        del running[sub_id]


def create_emulator(clock: Callable[[], float] = time.time, *, seed: int = 7, **options: Any) -> Emulator:
    """A fresh emulator. Options: `page_size` (int: cap every readings page below `limit`, so tests
    can force many pages), `window_days` (days of history before today, default 90) and
    `subscription_poll` (seconds between checks for new readings on a subscription, default 1) and
    `breaks` (variants that each break one pinned assumption, see `BREAKS`) and `partners` (extra
    partner id → secret, without installations: the vendor page's example credentials)."""
    return Emulator(clock, seed=seed, **options)
