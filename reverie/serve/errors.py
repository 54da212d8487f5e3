"""Errors as OpenAI clients expect them: a status and {"error": {"message", "type", "param",
"code"}}. A client's mistake is a 4xx naming the parameter and the fix; only a defect of ours
is a 500 (and is logged)."""

import logging

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from reverie.errors import ReverieError

log = logging.getLogger("reverie.serve")

TYPES = {400: "invalid_request_error", 401: "invalid_request_error", 403: "permission_error",
         404: "invalid_request_error", 405: "invalid_request_error", 409: "conflict_error",
         413: "invalid_request_error", 415: "invalid_request_error", 429: "rate_limit_error"}


class APIError(Exception):
    def __init__(self, status: int, message: str, type: str | None = None,
                 param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code
        self.type = type or TYPES.get(status, "server_error" if status >= 500 else
                                      "invalid_request_error")


def body(message: str, type: str, param=None, code=None) -> dict:
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


def response(e: APIError) -> JSONResponse:
    return JSONResponse(body(e.message, e.type, e.param, e.code), status_code=e.status)


def _param(loc) -> str | None:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or None


def _validation_message(err: dict, param: str | None) -> str:
    kind = err.get("type", "")
    if kind == "json_invalid":
        return f"the body is not valid JSON ({err.get('ctx', {}).get('error', 'parse error')})"
    if kind == "missing":
        return f"missing required parameter '{param}'" if param else "missing request body"
    if kind == "extra_forbidden":
        return f"unrecognized request argument '{param}'; see /openapi.json"
    where = f"'{param}'" if param else "the body"
    return f"invalid {where}: {err.get('msg', 'invalid value')}"


async def on_validation(request: Request, exc: RequestValidationError):
    errors = exc.errors()
    first = errors[0] if errors else {}
    param = _param(first.get("loc", ()))
    return response(APIError(400, _validation_message(first, param), param=param,
                             code=first.get("type")))


async def on_http(request: Request, exc: HTTPException):
    if exc.status_code == 404:
        message = f"no route {request.method} {request.url.path}; see /openapi.json"
        code = "not_found"
    elif exc.status_code == 405:
        message = f"method {request.method} is not allowed on {request.url.path}"
        code = "method_not_allowed"
    else:
        message, code = str(exc.detail), None
    out = response(APIError(exc.status_code, message, code=code))
    for k, v in (exc.headers or {}).items():
        out.headers[k] = v
    return out


async def on_api(request: Request, exc: APIError):
    out = response(exc)
    if exc.status == 429:
        out.headers["Retry-After"] = "1"
    return out


async def on_reverie(request: Request, exc: ReverieError):
    return response(APIError(400, str(exc)))


async def on_unexpected(request: Request, exc: Exception):
    log.exception("unexpected error on %s %s", request.method, request.url.path)
    return response(APIError(500, "internal error; the server log has the details",
                             "server_error"))


HANDLERS = {RequestValidationError: on_validation, HTTPException: on_http, APIError: on_api,
            ReverieError: on_reverie, Exception: on_unexpected}
