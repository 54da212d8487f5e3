"""The HTTP layer: thin handlers over Service. OpenAI-compatible completions, memory, nights,
snapshots, /healthz, /metrics, /openapi.json.

Switches (body wins over header): `"reverie": {"recall": false, "store": true}` in a completion
body, or the headers `X-Reverie-Recall: on|off` and `X-Reverie-Store: on|off`. The admin key may
act for any tenant with `X-Reverie-Tenant: <name>`.
"""

import asyncio
import json
import time

from fastapi import Body, Depends, FastAPI, Path, Query, Request
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse
from starlette.concurrency import run_in_threadpool

from reverie.serve import errors
from reverie.serve.errors import APIError
from reverie.serve.schemas import (ActivateRequest, ChatRequest, CompletionRequest, EpisodePost,
                                   FeedbackRequest, SleepRequest)
from reverie.serve.service import Prepared, Service


MAX_DEPTH = 32     # nesting of a JSON body; OpenAI bodies need 4


def _json_problem(value) -> APIError | None:
    """Walk a parsed body without recursion: too deep, or a lone surrogate (valid JSON, but
    no UTF-8 text: tokenizers and SQLite would fail on it later)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_DEPTH:
            return APIError(400, f"the body is nested deeper than {MAX_DEPTH} levels",
                            code="json_invalid")
        if isinstance(item, dict):
            stack.extend((k, depth + 1) for k in item)
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)
        elif isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return APIError(400, "the body holds invalid Unicode (a lone surrogate); send "
                                     "UTF-8 text", code="invalid_unicode")
    return None


class Guard:
    """ASGI middleware in front of every route: bounds the body (413), refuses bodies that are
    not JSON before any handler runs (400), counts requests and latency, tracks idleness."""

    def __init__(self, app, service: Service):
        self.app, self.service = app, service

    async def _refuse(self, send, e: APIError):
        data = json.dumps(errors.body(e.message, e.type, e.param, e.code)).encode()
        await send({"type": "http.response.start", "status": e.status,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(data)).encode())]})
        await send({"type": "http.response.body", "body": data})

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        service, status, start = self.service, [500], time.perf_counter()

        async def tracked_send(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        # why: probes and scrapes are not use; counting them would keep the service from ever
        # being idle long enough for the scheduler's night
        tracked = scope["path"].startswith("/v1/")
        if tracked:
            service.activity.begin()
        try:
            problem, body = await self._read(scope, receive)
            if problem:
                await self._refuse(tracked_send, problem)
                return
            replayed = [False]

            async def replay():
                if not replayed[0]:
                    replayed[0] = True
                    return {"type": "http.request", "body": body, "more_body": False}
                return await receive()

            await self.app(scope, replay, tracked_send)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", None) or "unmatched"  # why: fuzzed paths, one label
            service.metrics.inc("reverie_requests_total", route=path, method=scope["method"],
                                status=status[0])
            service.metrics.observe(time.perf_counter() - start, route=path)
            if tracked:
                service.activity.end()

    async def _read(self, scope, receive):
        limit = self.service.cfg.max_body_bytes
        too_big = APIError(413, f"the body is over max_body_bytes={limit:,}; send less (batch "
                                f"episodes in several requests)", code="body_too_large")
        for name, value in scope.get("headers", []):
            if name == b"content-length" and value.isdigit() and int(value) > limit:
                return too_big, b""
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return APIError(400, "client disconnected"), b""
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                return too_big, b""
            chunks.append(chunk)
            more = message.get("more_body", False)
        body = b"".join(chunks)
        if body and scope["method"] == "POST":
            try:
                data = json.loads(body)
            except RecursionError:
                return APIError(400, "the body is nested too deeply", code="json_invalid"), b""
            except ValueError as e:     # JSONDecodeError, UnicodeDecodeError, huge integers
                return APIError(400, f"the body is not valid JSON ({str(e)[:120]})",
                                code="json_invalid"), b""
            problem = _json_problem(data)
            if problem:
                return problem, b""
        return None, body


# ---------------------------------------------------------------- response shapes (OpenAI)
def _usage(prepared: Prepared, completion_tokens: int) -> dict:
    prompt = sum(len(p) for p in prepared.prompts)
    return {"prompt_tokens": prompt, "completion_tokens": completion_tokens,
            "total_tokens": prompt + completion_tokens}


def _extras(prepared: Prepared) -> dict:
    return {"tenant": prepared.tenant, "snapshot": prepared.serving.snapshot,
            "recall": prepared.recall, "recalled": prepared.recalled, "stored": prepared.stored}


def _envelope(prepared: Prepared, chunk: bool) -> dict:
    obj = {"chat": "chat.completion", "text": "text_completion"}[prepared.kind]
    return {"id": prepared.id, "object": obj + (".chunk" if chunk and prepared.kind == "chat"
                                                else ""),
            "created": prepared.created, "model": None,
            "system_fingerprint": prepared.serving.label}


def _choice(prepared: Prepared, index: int, text: str | None, finish, delta: bool,
            first: bool = False) -> dict:
    if prepared.kind == "text":
        return {"index": index, "text": text or "", "logprobs": None, "finish_reason": finish}
    if not delta:
        return {"index": index, "message": {"role": "assistant", "content": text},
                "logprobs": None, "finish_reason": finish}
    d = {"role": "assistant", "content": text or ""} if first else \
        ({"content": text} if text else {})
    return {"index": index, "delta": d, "logprobs": None, "finish_reason": finish}


def create_app(service: Service) -> FastAPI:
    app = FastAPI(title="reverie", version="0.1.0", description=__doc__,
                  exception_handlers=errors.HANDLERS)
    name = service.cfg.served_name

    def principal(request: Request):
        return service.auth.principal(request.headers.get("authorization"),
                                      request.headers.get("x-reverie-tenant"))

    async def run(prepared: Prepared):
        """Hand the sequences to the model worker; answer whole or as server-sent events."""
        loop, events = asyncio.get_running_loop(), asyncio.Queue()

        def sink(*event):                           # called from the worker thread
            try:
                loop.call_soon_threadsafe(events.put_nowait, event)
            except RuntimeError:                    # the loop closed: nobody is listening
                pass

        service.submit(prepared, sink)
        total = len(prepared.prompts) * prepared.n
        headers = {"X-Reverie-Snapshot": prepared.serving.label}
        if not prepared.stream:
            texts, finish, tokens = [""] * total, [None] * total, 0
            while sum(f is not None for f in finish) < total:
                kind, index, *rest = await events.get()
                if kind == "delta":
                    texts[index] += rest[0]
                elif kind == "done":
                    finish[index], tokens = rest[0], tokens + rest[1]
                else:
                    raise rest[0]
            service.metrics.inc("reverie_generated_tokens_total", tokens)
            out = _envelope(prepared, chunk=False) | {"model": name}
            out["choices"] = [_choice(prepared, i, texts[i], finish[i], delta=False)
                              for i in range(total)]
            out["usage"], out["reverie"] = _usage(prepared, tokens), _extras(prepared)
            return JSONResponse(out, headers=headers)

        async def stream():
            head = _envelope(prepared, chunk=True) | {"model": name}
            if prepared.kind == "chat":
                for i in range(total):
                    yield _sse(head | {"choices": [_choice(prepared, i, "", None, True, True)]})
            done, tokens = 0, 0
            while done < total:
                kind, index, *rest = await events.get()
                if kind == "delta":
                    yield _sse(head | {"choices": [_choice(prepared, index, rest[0], None, True)]})
                elif kind == "done":
                    done, tokens = done + 1, tokens + rest[1]
                    yield _sse(head | {"choices": [_choice(prepared, index, None, rest[0], True)]})
                else:
                    e = APIError(500, "generation failed; the server log has the details",
                                 "server_error")
                    yield _sse(errors.body(e.message, e.type))
                    break
            service.metrics.inc("reverie_generated_tokens_total", tokens)
            if prepared.include_usage:
                yield _sse(head | {"choices": [], "usage": _usage(prepared, tokens),
                                   "reverie": _extras(prepared)})
            yield b"data: [DONE]\n\n"

        return StreamingResponse(stream(), media_type="text/event-stream", headers=headers)

    # ------------------------------------------------------------ OpenAI-compatible
    @app.post("/v1/chat/completions", tags=["openai"])
    async def chat_completions(req: ChatRequest, request: Request, who=Depends(principal)):
        prepared = await run_in_threadpool(service.prepare_chat, who, req, request.headers)
        return await run(prepared)

    @app.post("/v1/completions", tags=["openai"])
    async def completions(req: CompletionRequest, request: Request, who=Depends(principal)):
        prepared = await run_in_threadpool(service.prepare_text, who, req, request.headers)
        return await run(prepared)

    @app.get("/v1/models", tags=["openai"])
    async def models(who=Depends(principal)):
        return {"object": "list", "data": [{"id": name, "object": "model",
                                            "created": 0, "owned_by": "reverie"}]}

    @app.get("/v1/models/{model_id}", tags=["openai"])
    async def model(model_id: str = Path(max_length=256), who=Depends(principal)):
        service._check_model(model_id)
        return {"id": name, "object": "model", "created": 0, "owned_by": "reverie"}

    # ------------------------------------------------------------ memory
    @app.post("/v1/episodes", tags=["memory"], status_code=201)
    def episodes(payload: EpisodePost, who=Depends(principal)):
        out = service.ingest(who, payload.records())
        return {"object": "list", "data": [{"id": x.id, "object": "episode", "repeat": x.repeat}
                                           for x in out]}

    @app.get("/v1/episodes/search", tags=["memory"])
    def search(q: str = Query(min_length=1, max_length=4000), k: int = Query(5, ge=1, le=100),
               who=Depends(principal)):
        found = service.search(who, q, k)
        return {"object": "list", "data": [
            {"id": e.id, "object": "episode", "text": e.text, "source": e.source,
             "status": e.status, "priority": e.priority, "created_at": e.created_at,
             "snapshot": e.snapshot} for e in found]}

    @app.delete("/v1/episodes/{episode_id}", tags=["memory"])
    def forget(episode_id: int = Path(ge=1, le=2**63 - 1), who=Depends(principal)):
        return {"object": "episode.deleted", "deleted": True} | service.forget(who, episode_id)

    @app.post("/v1/feedback", tags=["memory"])
    def feedback(req: FeedbackRequest, who=Depends(principal)):
        return service.feedback(who, req)

    # ------------------------------------------------------------ learning
    @app.post("/v1/sleep", tags=["learning"], status_code=202)
    def sleep(req: SleepRequest | None = Body(None), who=Depends(principal)):
        return service.sleep(who, req.tenant if req else None).public()

    @app.get("/v1/sleep/{job_id}", tags=["learning"])
    def sleep_job(job_id: str = Path(max_length=64), who=Depends(principal)):
        return service.job(who, job_id).public()

    @app.get("/v1/snapshots", tags=["learning"])
    def snapshot_list(who=Depends(principal)):
        return {"object": "list", "data": service.snapshots(who)}

    @app.post("/v1/snapshots/{snapshot_id}/activate", tags=["learning"])
    def activate(snapshot_id: str = Path(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"),
                 req: ActivateRequest | None = Body(None), who=Depends(principal)):
        return service.activate(who, snapshot_id, req.tenant if req else None)

    # ------------------------------------------------------------ operations
    @app.get("/healthz", tags=["operations"])
    def healthz():
        running = service.nights.running()
        return {"status": "ok", "model": name, "tenants": len(service.tenants.all()),
                "night": running.id if running else None, "queue": service.worker.depth()}

    @app.get("/metrics", tags=["operations"], response_class=PlainTextResponse)
    def metrics():
        return PlainTextResponse(service.metrics.render(),
                                 media_type="text/plain; version=0.0.4")

    return Guard(app, service)


def _sse(payload: dict) -> bytes:
    return b"data: " + json.dumps(payload).encode() + b"\n\n"
