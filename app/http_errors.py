"""Every error becomes JSON with a string ``detail`` (DESIGN.md principle 5)."""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.errors import ServiceError

logger = logging.getLogger(__name__)

Handler = TypeVar("Handler", bound=Callable[..., Any])
Responses = dict[int | str, dict[str, Any]]


class ErrorBody(BaseModel):
    """The body of every error answer."""

    detail: str = Field(description="What went wrong, in words a person can act on.")


class ValidationErrorBody(ErrorBody):
    """A request that does not match the declared schema (422)."""

    errors: list[dict] = Field(
        default_factory=list, description="One entry per problem: location, message, type."
    )


_STANDARD_ERRORS = {
    400: "Bad parameter, or input files that cannot be used (see detail)",
    403: "A storage key leaves the storage root",
    404: "No such file",
    409: "Conflict with the current state (e.g. already being resumed)",
    413: "Too large: more pixels or memory than this engine allows",
    422: "The request does not match the schema (detail summarises, errors lists)",
    429: "Busy: retry after the Retry-After seconds",
    502: "The upstream service failed",
    503: "A worker process died or the service is shutting down; retry",
    504: "The upstream service did not answer in time",
}


def error_responses(*codes: int, **descriptions: str) -> Responses:
    """OpenAPI ``responses`` for the given error statuses, all with :class:`ErrorBody`.

    ``descriptions`` override the standard text: ``error_responses(400, e400="...")``.
    """
    out: Responses = {}
    for code in codes:
        model = ValidationErrorBody if code == 422 else ErrorBody
        out[code] = {
            "model": model,
            "description": descriptions.get(f"e{code}", _STANDARD_ERRORS[code]),
        }
    return out


def route(
    method: Callable[..., Callable[[Handler], Handler]],
    path: str,
    model: Any,
    responses: Responses | None = None,
    **options: Any,
) -> Callable[[Handler], Handler]:
    """A route declared in the one style of both apps: ``method`` (``router.get``...),
    the path, the model of its answer (None for a bare ``Response``) and its error
    answers (:func:`error_responses`); ``options`` go to FastAPI as they are.

    The handler's docstring gives the OpenAPI summary (its first line, without the
    full stop) and description (the paragraphs after it).
    """

    def declare(handler: Handler) -> Handler:
        summary, _, description = inspect.cleandoc(handler.__doc__ or "").partition("\n\n")
        return method(
            path,
            response_model=model,
            responses=responses,
            summary=summary.removesuffix("."),
            description=description,
            **options,
        )(handler)

    return declare


def _location(loc) -> str:
    parts = [str(p) for p in loc if p not in ("body",)]
    return ".".join(parts) if parts else "body"


def summarize_validation_errors(errors: Sequence[Any]) -> str:
    """One readable sentence for a list of pydantic errors."""
    pieces = []
    for err in errors[:5]:
        pieces.append(f"{_location(err.get('loc', ()))}: {err.get('msg', 'invalid')}")
    more = len(errors) - len(pieces)
    text = "; ".join(pieces)
    if more > 0:
        text += f"; and {more} more problem(s)"
    return f"Invalid request: {text}"


def _jsonable_errors(errors) -> list[dict]:
    out = []
    for err in errors:
        item = {
            "loc": [str(p) for p in err.get("loc", ())],
            "msg": str(err.get("msg", "")),
            "type": str(err.get("type", "")),
        }
        out.append(item)
    return out


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ServiceError)
    async def _service_error(_: Request, exc: ServiceError):
        return JSONResponse(
            {"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers or None
        )

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_: Request, exc: RequestValidationError):
        errors = exc.errors()
        return JSONResponse(
            {"detail": summarize_validation_errors(errors), "errors": _jsonable_errors(errors)},
            status_code=422,
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, exc: StarletteHTTPException):
        detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        return JSONResponse(
            {"detail": detail}, status_code=exc.status_code, headers=getattr(exc, "headers", None)
        )

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception):
        logger.exception("Unhandled error on %s %s", request.method, request.url.path)
        return JSONResponse(
            {"detail": "Internal error while processing the request"}, status_code=500
        )


def use_string_detail_in_openapi(app: FastAPI) -> None:
    """Make the OpenAPI spec tell the truth about 422 answers.

    FastAPI documents every validation error with its own ``HTTPValidationError``
    (an array ``detail``); this service answers with :class:`ValidationErrorBody`
    (a string ``detail`` plus ``errors``), so the spec is rewritten to say so.
    """
    from fastapi.openapi.utils import get_openapi

    def openapi() -> dict:
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(
            title=app.title, version=app.version, description=app.description, routes=app.routes
        )
        ref = "#/components/schemas/ValidationErrorBody"
        for methods in schema.get("paths", {}).values():
            for operation in methods.values():
                responses = operation.get("responses", {})
                response = responses.get("422")
                if response:
                    response["description"] = _STANDARD_ERRORS[422]
                    response["content"] = {"application/json": {"schema": {"$ref": ref}}}
                if "requestBody" in operation and "400" not in responses:
                    # A body that is not JSON at all (bad bytes) is answered with 400.
                    responses["400"] = {
                        "description": "The body could not be parsed as JSON",
                        "content": {
                            "application/json": {
                                "schema": {"$ref": "#/components/schemas/ErrorBody"}
                            }
                        },
                    }
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        components.pop("HTTPValidationError", None)
        components.pop("ValidationError", None)
        components["ValidationErrorBody"] = ValidationErrorBody.model_json_schema(
            ref_template="#/components/schemas/{model}"
        )
        components.setdefault(
            "ErrorBody", ErrorBody.model_json_schema(ref_template="#/components/schemas/{model}")
        )
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


class BodySizeLimit:
    """ASGI middleware: 413 for a request body larger than ``max_bytes``.

    A declared ``Content-Length`` over the limit is answered before anything is read;
    a body without one (chunked) is counted as it arrives and cut off at the limit, so
    no request can make the server hold more than ``max_bytes`` of body.
    """

    def __init__(self, app, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = int(max_bytes)

    def _too_large(self) -> StarletteHTTPException:
        return StarletteHTTPException(
            status_code=413, detail=f"Request body too large: the limit is {self.max_bytes:,} bytes"
        )

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = 0
                if declared > self.max_bytes:
                    response = JSONResponse(
                        {"detail": self._too_large().detail},
                        status_code=413,
                        headers={"Connection": "close"},
                    )
                    await response(scope, receive, send)
                    return
        seen = 0

        async def limited_receive():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise self._too_large()
            return message

        await self.app(scope, limited_receive, send)
