"""`ThinRoute`: a data route that parses its few parameters itself instead of FastAPI's per-request
dependency solving, from the same declarations (`Query(...)`, `Path(...)`) that make the OpenAPI
document, so the docs and the parsing cannot drift.

FastAPI solves a route's dependencies anew on every request (walking the dependant tree, inspecting
each field's annotation, validating through pydantic): about 1 ms of a cache miss's CPU. At start-up a
`ThinRoute` turns its dependant into a plan: one parser per parameter, chosen by the parameter's kind
(an optional or required `str` with `min_length`/`max_length`, an `int` with `ge`/`le`/`gt`/`lt`, a
repeatable `list[str]`, a `Literal` or `Enum` choice, a path `str`), the dependencies that only take
the `Request` (called in FastAPI's order), and the endpoint called with keyword arguments.

A parser only ever accepts what FastAPI would accept, giving the same value; anything else (a missing
required parameter, a value out of range, `05` for an int) defers the whole request to FastAPI's own
handler, which answers exactly as it always did (the 422 problem with its `errors`). A route whose
declarations the plan does not know (a header, a body, a pattern, a dependency with parameters of its
own, an endpoint that does not return a `Response`) keeps FastAPI's handler, so correctness never
depends on the fast path covering everything. `tests/unit/test_thin_route.py` checks that both
handlers answer every route the same, valid and invalid queries alike.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from enum import Enum
from types import NoneType, UnionType
from typing import Any, Literal, Union, get_args, get_origin

import annotated_types
from fastapi import params, routing
from fastapi.dependencies.models import Dependant
from fastapi.dependencies.utils import get_typed_return_annotation
from starlette.datastructures import QueryParams
from starlette.requests import Request
from starlette.responses import Response

Handler = Callable[[Request], Coroutine[Any, Any, Response]]
Parser = Callable[[QueryParams, dict[str, Any]], Any]


class _Defer:
    """A parser's answer for a value it does not vouch for: FastAPI's handler takes the request."""


DEFER: Any = _Defer()
_INT = re.compile(r"(?:0|[1-9][0-9]{0,17})\Z")
"""Plain decimal digits: pydantic reads them as the same int (signs, spaces, `_`, `05`, `5.0` defer)."""
_BOUNDS = (annotated_types.MinLen, annotated_types.MaxLen, annotated_types.Ge, annotated_types.Le)
_STRICT_BOUNDS = (annotated_types.Gt, annotated_types.Lt)


class ThinRoute(routing.APIRoute):
    """An `APIRoute` whose handler parses its parameters without FastAPI's dependency solving when it
    can (see the module's docstring); use it with `APIRouter(route_class=ThinRoute)`."""

    def get_route_handler(self) -> Handler:
        fallback = super().get_route_handler()
        effective = _effective(self)
        if effective is None:
            return fallback
        return thin_handler(effective.dependant, effective.dependency_overrides_provider, fallback) or fallback


def _effective(route: routing.APIRoute) -> Any:
    """The route as included in its app, with the including router's dependencies (`known_parameters_only`):
    FastAPI builds an included route's handler lazily, with that context in a private `ContextVar`, the
    way its own `get_route_handler` reads it; the route itself when it is not being included. None when
    this FastAPI has no such variable (another version): without it the including router's dependencies
    could be missed, so the route keeps FastAPI's handler (and `tests/unit/test_thin_route.py` fails on
    the lost speed, never on lost checks)."""
    context_var = getattr(routing, "_effective_route_context_var", None)
    if context_var is None:
        return None
    context = context_var.get()
    if context is not None and getattr(context, "original_route", None) is route:
        return context
    return route


def thin_handler(dependant: Dependant, overrides_provider: Any, fallback: Handler) -> Handler | None:
    """The thin handler of `dependant`, or None when the plan does not know one of its declarations."""
    call = dependant.call
    if call is None or not _plain_coroutine(call) or _has_extras(dependant):
        return None
    returns = get_typed_return_annotation(call)
    if not (isinstance(returns, type) and issubclass(returns, Response)):
        return None  # FastAPI would serialize the value through the response model
    if dependant.header_params or dependant.cookie_params or dependant.body_params:
        return None
    parsers: list[tuple[str, Parser]] = []
    for field in dependant.path_params:
        parser = _path_parser(field)
        if parser is None:
            return None
        parsers.append((field.name, parser))
    for field in dependant.query_params:
        parser = _query_parser(field)
        if parser is None:
            return None
        parsers.append((field.name, parser))
    dependencies: list[tuple[str | None, Callable[..., Awaitable[Any]], str | None]] = []
    seen: set[Any] = set()
    for sub in dependant.dependencies:
        if not _request_only(sub) or sub.call in seen:
            return None
        seen.add(sub.call)
        dependencies.append((sub.name, sub.call, sub.request_param_name))  # type: ignore[arg-type]
    request_name = dependant.request_param_name

    async def handler(request: Request) -> Response:
        if overrides_provider is not None and overrides_provider.dependency_overrides:
            return await fallback(request)  # tests that override dependencies get FastAPI's solving
        query, path = request.query_params, request.path_params
        values: dict[str, Any] = {}
        for name, parse in parsers:  # parse first: a value FastAPI must judge costs no dependency call
            value = parse(query, path)
            if value is DEFER:
                return await fallback(request)
            values[name] = value
        for solved_name, dependency, takes_request in dependencies:  # FastAPI's order: the router's first
            solved = await (dependency(**{takes_request: request}) if takes_request else dependency())
            if solved_name is not None:
                values[solved_name] = solved
        if request_name is not None:
            values[request_name] = request
        response = await call(**values)
        if not isinstance(response, Response):
            raise TypeError(f"{getattr(call, '__name__', call)!r} returned {type(response).__name__}, not a Response")
        return response

    return handler


def _plain_coroutine(call: Callable[..., Any]) -> bool:
    return inspect.iscoroutinefunction(call) and not inspect.isasyncgenfunction(call)


def _has_extras(dependant: Dependant) -> bool:
    """Anything FastAPI injects besides the request (background tasks, the response, scopes, ...)."""
    return bool(
        dependant.http_connection_param_name
        or dependant.websocket_param_name
        or dependant.background_tasks_param_name
        or dependant.response_param_name
        or dependant.security_scopes_param_name
        or dependant.own_oauth_scopes
    )


def _request_only(sub: Dependant) -> bool:
    """A dependency that takes at most the `Request` and has no dependencies or parameters of its own."""
    return (
        sub.call is not None
        and _plain_coroutine(sub.call)
        and not _has_extras(sub)
        and not (sub.dependencies or sub.path_params or sub.query_params)
        and not (sub.header_params or sub.cookie_params or sub.body_params)
        and getattr(sub, "concurrency", None) is None
    )


def _plain_field(field: Any) -> bool:
    """No alias, default factory or validation beyond the bounds the parsers check."""
    info = field.field_info
    return (
        info.alias in (None, field.name)
        and info.validation_alias is None
        and info.default_factory is None
        and not info.validate_default
        and all(isinstance(m, _BOUNDS + _STRICT_BOUNDS) for m in info.metadata)
        and (info.default is None or isinstance(info.default, (str, int)) or info.is_required())
    )


def _optional(annotation: Any) -> tuple[Any, bool]:
    """`X | None` → (X, True); `X` → (X, False); a wider union → (None, False)."""
    if get_origin(annotation) in (Union, UnionType):
        args = [a for a in get_args(annotation) if a is not NoneType]
        if len(args) == 1 and len(get_args(annotation)) == 2:
            return args[0], True
        return None, False
    return annotation, False


def _path_parser(field: Any) -> Parser | None:
    if not (isinstance(field.field_info, params.Path) and _plain_field(field)) or field.field_info.metadata:
        return None
    if field.field_info.annotation is not str:
        return None
    name = field.name

    def parse(_: QueryParams, path: dict[str, Any]) -> Any:
        return path.get(name, DEFER)

    return parse


def _query_parser(field: Any) -> Parser | None:
    info = field.field_info
    if not (isinstance(info, params.Query) and _plain_field(field)):
        return None
    kind, _ = _optional(info.annotation)
    required = info.is_required()
    default = None if required else info.default
    metadata: Sequence[Any] = info.metadata
    if kind is str:
        return _str_parser(field.name, required, default, metadata)
    if kind is int and all(not isinstance(m, (annotated_types.MinLen, annotated_types.MaxLen)) for m in metadata):
        return _int_parser(field.name, required, default, metadata)
    if get_origin(kind) is list and get_args(kind) == (str,) and not metadata:
        return _list_parser(field.name, required, default)
    choices = _choices(kind)
    if choices is not None and not metadata:
        return _choice_parser(field.name, required, default, choices)
    return None


def _str_parser(name: str, required: bool, default: Any, metadata: Sequence[Any]) -> Parser | None:
    if any(isinstance(m, (annotated_types.Ge, annotated_types.Le, *_STRICT_BOUNDS)) for m in metadata):
        return None
    shortest = max((m.min_length for m in metadata if isinstance(m, annotated_types.MinLen)), default=0)
    longest = min((m.max_length for m in metadata if isinstance(m, annotated_types.MaxLen)), default=None)

    def parse(query: QueryParams, _: dict[str, Any]) -> Any:
        value = query.get(name)  # the last of repeated values, as FastAPI reads a scalar
        if value is None:
            return DEFER if required else default
        if len(value) < shortest or (longest is not None and len(value) > longest):
            return DEFER
        return value

    return parse


def _int_parser(name: str, required: bool, default: Any, metadata: Sequence[Any]) -> Parser | None:
    bounds = [getattr(m, a) for m in metadata for a in ("ge", "le", "gt", "lt") if hasattr(m, a)]
    if not all(type(b) is int for b in bounds):
        return None  # a float bound: pydantic's comparison, not this parser's
    low: int | None = max((int(m.ge) for m in metadata if isinstance(m, annotated_types.Ge)), default=None)  # type: ignore[call-overload]
    high: int | None = min((int(m.le) for m in metadata if isinstance(m, annotated_types.Le)), default=None)  # type: ignore[call-overload]
    above: int | None = max((int(m.gt) for m in metadata if isinstance(m, annotated_types.Gt)), default=None)  # type: ignore[call-overload]
    below: int | None = min((int(m.lt) for m in metadata if isinstance(m, annotated_types.Lt)), default=None)  # type: ignore[call-overload]

    def parse(query: QueryParams, _: dict[str, Any]) -> Any:
        text = query.get(name)
        if text is None:
            return DEFER if required else default
        if not _INT.match(text):
            return DEFER
        value = int(text)
        if (low is not None and value < low) or (high is not None and value > high):
            return DEFER
        if (above is not None and value <= above) or (below is not None and value >= below):
            return DEFER
        return value

    return parse


def _list_parser(name: str, required: bool, default: Any) -> Parser:
    def parse(query: QueryParams, _: dict[str, Any]) -> Any:
        values = query.getlist(name)
        if not values:
            return DEFER if required else default
        return values

    return parse


def _choices(kind: Any) -> dict[str, Any] | None:
    """The accepted strings of a `Literal` of strings or an `Enum` of string values, each with the value
    FastAPI hands the endpoint; None for any other type."""
    if get_origin(kind) is Literal and all(type(a) is str for a in get_args(kind)):
        return {a: a for a in get_args(kind)}
    if isinstance(kind, type) and issubclass(kind, Enum) and all(isinstance(m.value, str) for m in kind):
        return {m.value: m for m in kind}
    return None


def _choice_parser(name: str, required: bool, default: Any, choices: dict[str, Any]) -> Parser:
    def parse(query: QueryParams, _: dict[str, Any]) -> Any:
        text = query.get(name)
        if text is None:
            return DEFER if required else default
        return choices.get(text, DEFER)

    return parse
