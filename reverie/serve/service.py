"""The service: what each endpoint does, as plain functions over tenants, the model worker and
the night jobs. The HTTP layer (app.py) parses, calls one of these, formats.

A completion reads top to bottom: take the tenant's Serving (kept to the end) -> recall ->
render the prompt -> tokenize and check the length (every client error is raised here, before
anything is written) -> store the turn -> hand the sequences to the model worker.
"""

import secrets
import threading
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field

from reverie.memory.claims import value_char_spans
from reverie.models.backend import Backend
from reverie.models.world_model import CHAT_TEMPLATE
from reverie.serve.engine import ModelWorker, Sequence
from reverie.serve.errors import APIError
from reverie.serve.metrics import Metrics
from reverie.serve.nights import Nights, Scheduler
from reverie.serve.recall import BatchedQueries
from reverie.serve.tenants import Auth, Principal, Serving, Tenants, prepare_root

SWITCH = {"on": True, "true": True, "1": True, "off": False, "false": False, "0": False}


@dataclass
class Prepared:
    """A validated completion request, bound to the Serving it started with."""
    id: str
    kind: str                          # chat or text
    tenant: str
    serving: Serving
    prompts: list                      # token ids per prompt
    n: int
    max_tokens: int
    temperature: float
    top_p: float
    seed: int
    stop: tuple
    stream: bool
    include_usage: bool
    recall: bool
    recalled: list = field(default_factory=list)
    stored: list = field(default_factory=list)
    created: int = field(default_factory=lambda: int(time.time()))


class Activity:
    """Requests in flight and when the last one ended (the scheduler's idea of idle)."""

    def __init__(self):
        self._lock = threading.Lock()
        self.in_flight, self.last = 0, time.monotonic()

    def begin(self):
        with self._lock:
            self.in_flight += 1

    def end(self):
        with self._lock:
            self.in_flight -= 1
            self.last = time.monotonic()

    def idle_seconds(self) -> float:
        with self._lock:
            return 0.0 if self.in_flight else time.monotonic() - self.last


def text_of(message) -> str:
    if message.content is None:
        return ""
    if isinstance(message.content, str):
        return message.content
    return "".join(p.text for p in message.content)


def is_statement(text: str) -> bool:
    """A turn that states a fact: it claims a value about a named subject (the memory's own
    claim reader) and is no question. "Tell me Ada's employer." claims nothing."""
    return not text.rstrip().endswith("?") and bool(value_char_spans(text))


def render(serving: Serving, messages: list[tuple[str, str]], context: str) -> str:
    """The prompt for a conversation. One user message renders exactly as Backend.prompt (what
    the facade's answer uses); a longer one goes through the chat template, the recalled context
    placed where Backend.prompt places it for this model."""
    backend, tok = serving.backend, serving.encoder
    if len(messages) == 1 and messages[0][0] == "user":
        return backend.prompt(messages[0][1], context or None)
    msgs = [{"role": "system" if r == "developer" else r, "content": c} for r, c in messages]
    if context:
        if tok.chat_template == CHAT_TEMPLATE or not tok.chat_template:
            msgs.insert(0, {"role": "system", "content": context})
        else:
            last = max(i for i, m in enumerate(msgs) if m["role"] == "user") if any(
                m["role"] == "user" for m in msgs) else None
            if last is None:
                msgs.insert(0, {"role": "system", "content": context})
            else:
                msgs[last]["content"] = (f"{context}\n\nAnswer briefly, using the text above. "
                                         f"{msgs[last]['content']}")
    if tok.chat_template:
        return tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
    heads = {"system": "Context: ", "user": "Q: ", "assistant": "A: "}
    return "".join(f"{heads[m['role']]}{m['content']}\n" for m in msgs) + "A:"


class Service:
    def __init__(self, cfg, keys: dict | None = None, admin_key: str | None = None,
                 backend: Backend | None = None):
        self.cfg = cfg
        self.auth = Auth(keys or {}, admin_key, cfg.open_tenant)
        self.metrics = Metrics()
        prepare_root(cfg.data)                   # why: before the model loads (seconds)
        self.base = Serving.of(backend or Backend.load(cfg.model), None)
        self.embedder = BatchedQueries(cfg.memory, cfg.recall_window_ms)
        self.tenants = Tenants(cfg.data, self.base, cfg, self.embedder)
        self.activity = Activity()
        self.worker = ModelWorker(cfg.batch_window_ms, cfg.max_batch, on_batch=self._on_batch,
                                  bf16=cfg.bf16)
        self.nights = Nights(cfg, self.tenants, self.metrics)
        self.scheduler = Scheduler(cfg, self.tenants, self.nights, self.activity)
        self._completions: OrderedDict = OrderedDict()      # id -> (tenant, episode ids)
        self._completions_lock = threading.Lock()
        self.metrics.gauges.append(self._gauges)

    def close(self):
        self.scheduler.close()
        self.nights.close()
        self.worker.close()
        self.tenants.close()

    # ------------------------------------------------------------ helpers
    def _on_batch(self, sequences: int, tokens: int, seconds: float):
        self.metrics.inc("reverie_batches_total")
        self.metrics.inc("reverie_batch_sequences_total", sequences)

    def _gauges(self):
        out = [("reverie_in_flight_requests", "requests being answered", {},
                self.activity.in_flight),
               ("reverie_generation_queue", "jobs waiting for the model worker", {},
                self.worker.depth()),
               ("reverie_night_running", "1 while a night runs", {},
                1 if self.nights.running() else 0)]
        for t in self.tenants.all():
            out.append(("reverie_active_snapshot", "the snapshot a tenant is served from (1)",
                        {"tenant": t.name, "snapshot": t.serving.label}, 1))
            for status, count in t.episode_counts().items():
                out.append(("reverie_episodes", "episodes stored, by tenant and status",
                            {"tenant": t.name, "status": status}, count))
        return out

    def _check_model(self, model: str):
        if model != self.cfg.served_name:
            raise APIError(404, f"the model '{model}' does not exist; this service serves "
                                f"'{self.cfg.served_name}' (see /v1/models)", param="model",
                           code="model_not_found")

    @staticmethod
    def _switch(body_value, header: str | None, default: bool, name: str) -> bool:
        if body_value is not None:
            return body_value
        if header is None:
            return default
        value = SWITCH.get(header.strip().lower())
        if value is None:
            raise APIError(400, f"header X-Reverie-{name.capitalize()} must be on or off, got "
                                f"{header[:32]!r}", param=f"X-Reverie-{name.capitalize()}",
                           code="invalid_header")
        return value

    def _tenant_for(self, principal: Principal, tenant: str | None):
        if tenant and tenant != principal.tenant and not principal.admin:
            raise APIError(403, "only the admin key may act for another tenant",
                           code="admin_required")
        return self.tenants.get(tenant or principal.tenant)

    def _require_admin(self, principal: Principal):
        if not principal.admin:
            raise APIError(403, "snapshot operations need the admin key", code="admin_required")

    def _max_tokens(self, requested, prompt_tokens: int, serving: Serving) -> int:
        room = serving.max_positions - prompt_tokens
        if requested is not None and requested > self.cfg.max_tokens:
            raise APIError(400, f"max_tokens is {requested}, over this service's limit of "
                                f"{self.cfg.max_tokens}", param="max_tokens",
                           code="invalid_value")
        if room < 1 or (requested is not None and requested > room):
            raise APIError(400, f"the prompt is {prompt_tokens} tokens; with max_tokens="
                                f"{requested or 1} it exceeds the model's context of "
                                f"{serving.max_positions} tokens; shorten the messages",
                           param="messages", code="context_length_exceeded")
        return min(requested or self.cfg.default_max_tokens, room)

    def _sampling(self, req, kind: str, prompts_text: list[str], serving: Serving, recall: bool,
                  tenant) -> Prepared:
        n = req.n or 1
        if n > self.cfg.max_n:
            raise APIError(400, f"n is {n}, over this service's limit of {self.cfg.max_n}",
                           param="n", code="invalid_value")
        prompts = [serving.encoder(p)["input_ids"] for p in prompts_text]
        requested = getattr(req, "max_completion_tokens", None) or req.max_tokens
        max_tokens = min(self._max_tokens(requested, len(p), serving) for p in prompts)
        stop = (req.stop,) if isinstance(req.stop, str) else tuple(req.stop or ())
        temperature = self.cfg.default_temperature if req.temperature is None else req.temperature
        prefix = "chatcmpl" if kind == "chat" else "cmpl"
        return Prepared(id=f"{prefix}-{uuid.uuid4().hex}", kind=kind, tenant=tenant.name,
                        serving=serving, prompts=prompts, n=n, max_tokens=max_tokens,
                        temperature=temperature, top_p=req.top_p or 1.0,
                        seed=req.seed if req.seed is not None else secrets.randbits(31),
                        stop=stop, stream=bool(req.stream),
                        include_usage=bool(req.stream_options and req.stream_options.include_usage),
                        recall=recall)

    def _admit(self):
        """Refuse early (before anything is written) when the model worker is this far behind."""
        if self.worker.depth() >= self.cfg.max_queue:
            raise APIError(429, f"{self.worker.depth()} completions are waiting for the model; "
                                f"retry shortly", code="rate_limit_exceeded")

    def _prefetch(self, query: str):
        """Embed the query with the others arriving now, before the memory lock (recall.py)."""
        if self.cfg.recall_window_ms > 0 and query.strip():
            self.embedder.prefetch(query[:4000])        # the slice Memory.recall embeds

    def _context(self, tenant, query: str) -> tuple[str, list]:
        self._prefetch(query)
        with tenant.lock:
            found = tenant.reverie.context(query)
        return found.context, [e.id for e in found.episodes]

    # ------------------------------------------------------------ completions
    def prepare_chat(self, principal: Principal, req, headers) -> Prepared:
        self._check_model(req.model)
        self._admit()
        tenant = self.tenants.get(principal.tenant)
        serving = tenant.serving                 # why: this request uses it to its very end
        opts = req.reverie
        recall = self._switch(opts and opts.recall, headers.get("x-reverie-recall"),
                              self.cfg.recall, "recall")
        store_flag = opts.store if opts and opts.store is not None else req.store
        header = headers.get("x-reverie-store")
        mode = self.cfg.store_chat
        if store_flag is not None or header is not None:
            mode = "all" if self._switch(store_flag, header, False, "store") else "off"
        messages = [(m.role, text_of(m)) for m in req.messages]
        users = [t for r, t in messages if r == "user"]
        query = users[-1] if users else ""
        context, recalled = self._context(tenant, query) if recall else ("", [])
        prepared = self._sampling(req, "chat", [render(serving, messages, context)], serving,
                                  recall, tenant)
        prepared.recalled = recalled
        keep = query.strip() and (mode == "all" or (mode == "statements" and is_statement(query)))
        if keep:                                 # every check passed: now it may be written
            prepared.stored = [x.id for x in self.ingest(principal, [{"text": query}], "chat")]
        self._remember(prepared)
        return prepared

    def prepare_text(self, principal: Principal, req, headers) -> Prepared:
        self._check_model(req.model)
        self._admit()
        tenant = self.tenants.get(principal.tenant)
        serving = tenant.serving
        recall = self._switch(req.reverie and req.reverie.recall,
                              headers.get("x-reverie-recall"), False, "recall")
        if req.reverie and req.reverie.store:
            raise APIError(400, "store applies to chat turns; POST /v1/episodes to store text",
                           param="reverie.store", code="invalid_value")
        prompts, recalled = [], []
        for p in ([req.prompt] if isinstance(req.prompt, str) else req.prompt):
            context, ids = self._context(tenant, p) if recall else ("", [])
            prompts.append(f"{context}\n{p}" if context else p)
            recalled += ids
        prepared = self._sampling(req, "text", prompts, serving, recall, tenant)
        prepared.recalled = recalled
        self._remember(prepared)
        return prepared

    def sequences(self, prepared: Prepared, sink) -> list[Sequence]:
        return [Sequence(prompt_ids=ids, max_tokens=prepared.max_tokens, sink=sink,
                         index=p * prepared.n + c, temperature=prepared.temperature,
                         top_p=prepared.top_p, seed=(prepared.seed + c) % 2**63,
                         stop=prepared.stop, stop_at_newline=self.cfg.stop_at_newline)
                for p, ids in enumerate(prepared.prompts) for c in range(prepared.n)]

    def submit(self, prepared: Prepared, sink):
        self.metrics.inc("reverie_prompt_tokens_total", sum(map(len, prepared.prompts)))
        self.worker.submit(prepared.serving, self.sequences(prepared, sink))

    def _remember(self, prepared: Prepared):
        with self._completions_lock:
            self._completions[prepared.id] = (prepared.tenant, prepared.stored + prepared.recalled)
            while len(self._completions) > self.cfg.completions_remembered:
                self._completions.popitem(last=False)

    # ------------------------------------------------------------ memory
    def ingest(self, principal: Principal, records: list, source: str = "api") -> list:
        tenant = self.tenants.get(principal.tenant)
        with tenant.lock:
            out = tenant.reverie.ingest(records, source)
        self.metrics.inc("reverie_episodes_ingested_total", sum(not x.repeat for x in out),
                         tenant=tenant.name)
        return out

    def search(self, principal: Principal, q: str, k: int) -> list:
        tenant = self.tenants.get(principal.tenant)
        if not q.strip():
            raise APIError(400, "q is empty; pass the words to look for", param="q",
                           code="invalid_value")
        self._prefetch(q)
        with tenant.lock:
            return tenant.reverie.recall(q, k)

    def forget(self, principal: Principal, episode_id: int) -> dict:
        """Delete from the hippocampus at once; if a snapshot consolidated the episode, a forget
        job rebuilds the weights without it (in a child process) and the tenant swaps to them."""
        tenant = self.tenants.get(principal.tenant)
        with tenant.lock:
            found = tenant.reverie.episodes([episode_id])
            if not found:
                raise APIError(404, f"no episode {episode_id}", param="episode_id",
                               code="episode_not_found")
            report = tenant.reverie.forget_from_memory(episode_id)
            if self.nights.busy(tenant.name):
                tenant.forgotten_during_night.add(int(episode_id))
        report["weights"] = "untouched"
        if found[0].snapshot is not None:
            job = self.nights.start(tenant.name, "delete", "forget", [int(episode_id)])
            report["weights"], report["job"] = "queued", job.id
        return report

    def feedback(self, principal: Principal, req) -> dict:
        if (req.episode_id is None) == (req.completion_id is None):
            raise APIError(400, "pass exactly one of episode_id and completion_id",
                           param="episode_id", code="invalid_value")
        tenant = self.tenants.get(principal.tenant)
        if req.completion_id is not None:
            with self._completions_lock:
                owner, ids = self._completions.get(req.completion_id, (None, []))
            if owner != tenant.name:
                raise APIError(404, f"no completion {req.completion_id!r} (ids are kept for the "
                                    f"last {self.cfg.completions_remembered} completions)",
                               param="completion_id", code="completion_not_found")
        else:
            ids = [req.episode_id]
        done = []
        with tenant.lock:
            for eid in ids:
                if tenant.reverie.episodes([eid]):
                    tenant.reverie.feedback(eid, req.importance)
                    done.append(eid)
        if req.episode_id is not None and not done:
            raise APIError(404, f"no episode {req.episode_id}", param="episode_id",
                           code="episode_not_found")
        return {"object": "feedback", "episodes": done, "importance": req.importance}

    # ------------------------------------------------------------ nights and snapshots
    def sleep(self, principal: Principal, tenant_name: str | None):
        tenant = self._tenant_for(principal, tenant_name)
        return self.nights.start(tenant.name, "request")

    def job(self, principal: Principal, job_id: str):
        job = self.nights.get(job_id)
        if job is None or (job.tenant != principal.tenant and not principal.admin):
            raise APIError(404, f"no night job {job_id!r}", param="job_id", code="job_not_found")
        return job

    def snapshots(self, principal: Principal) -> list:
        return self.tenants.get(principal.tenant).snapshots()

    def activate(self, principal: Principal, snapshot: str, tenant_name: str | None) -> dict:
        self._require_admin(principal)
        tenant = self._tenant_for(principal, tenant_name)
        target = None if snapshot == "base" else snapshot
        if target is not None and not tenant.has_snapshot(target):
            raise APIError(404, f"tenant {tenant.name!r} has no snapshot {snapshot!r} (see GET "
                                f"/v1/snapshots)", param="snapshot_id", code="snapshot_not_found")
        if self.nights.busy(tenant.name):
            raise APIError(409, "a night is queued or running for this tenant; activate after "
                                "it ends", code="night_running")
        tenant.point_active(target)
        serving = tenant.sync(self.base)
        if target is None:
            with tenant.lock:       # why: episodes the dropped snapshots consolidated are new
                tenant.reverie.reconcile()
                tenant.refresh_memory()
        self.metrics.inc("reverie_swaps_total", tenant=tenant.name)
        return {"object": "snapshot.activation", "tenant": tenant.name,
                "active": serving.label}
