"""The model worker: one thread owns generation. Requests queue up; those that arrive within a
few milliseconds of each other are decoded as one batch (micro-batching), token by token, so a
stream flows while the batch runs.

Each sequence names the `Serving` (backend + snapshot) its request took at its start, so a swap
never changes the model under a running request: a batch only groups sequences of one backend.

Why our own decode loop rather than `model.generate`: per-sequence temperature, top_p, seed,
stop strings and length inside one batch, and a token callback for streams. Greedy decoding
matches `Backend.generate` token for token (tests/test_serve.py checks it).
"""

import queue
import threading
import time
from dataclasses import dataclass, field

import torch

@dataclass
class Sequence:
    """One completion to write. `sink(kind, index, ...)` is called from the worker thread:
    ("delta", index, text), ("done", index, finish_reason, completion_tokens) or
    ("error", index, exception)."""
    prompt_ids: list
    max_tokens: int
    sink: object
    index: int = 0                     # the choice index in its response
    temperature: float = 0.0           # 0: greedy
    top_p: float = 1.0
    seed: int = 0
    stop: tuple = ()
    stop_at_newline: bool = True
    ids: list = field(default_factory=list)
    sent: str = ""                     # text already handed to the sink
    finish: str | None = None


def visible_text(text: str, seq: Sequence, final: bool) -> tuple[str, bool]:
    """What of the decoded text may be shown: cut at a stop (newline or stop string), stripped
    like Backend.generate; while unfinished, a tail that could still become a stop string, an
    incomplete UTF-8 character or trailing space is held back. -> (text, stopped)"""
    cut, stopped = len(text), False
    marks = list(seq.stop) + (["\n"] if seq.stop_at_newline else [])
    for mark in marks:
        at = text.find(mark)
        if 0 <= at < cut:
            cut, stopped = at, True
    shown = text[:cut].lstrip()
    if stopped or final:
        return shown.rstrip(), stopped
    hold = 0
    for mark in marks:
        for k in range(min(len(mark) - 1, len(shown)), 0, -1):
            if shown.endswith(mark[:k]):
                hold = max(hold, k)
                break
    shown = shown[:len(shown) - hold] if hold else shown
    return shown.rstrip().rstrip("\ufffd"), False


def _pick(logits: torch.Tensor, seq: Sequence, gen) -> int:
    """logits: (vocab,) float32 -> the next token id."""
    if seq.temperature <= 0:
        return int(torch.argmax(logits))
    probs = torch.softmax(logits / seq.temperature, dim=-1)
    if seq.top_p < 1.0:
        sorted_p, order = torch.sort(probs, descending=True)
        keep = torch.cumsum(sorted_p, 0) - sorted_p < seq.top_p   # always keeps the first
        probs = torch.zeros_like(probs).scatter(0, order[keep], sorted_p[keep])
    return int(torch.multinomial(probs, 1, generator=gen))


@torch.no_grad()
def decode(serving, seqs: list[Sequence]) -> int:
    """Decode `seqs` as one left-padded batch with the KV cache; returns tokens generated."""
    backend, tok = serving.backend, serving.decoder
    model, device = backend.model, backend.device
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    eos = backend.model.generation_config.eos_token_id
    eos = set(eos if isinstance(eos, (list, tuple)) else [eos]) | {tok.eos_token_id}
    n, width = len(seqs), max(len(s.prompt_ids) for s in seqs)
    ids = torch.full((n, width), pad, dtype=torch.long)
    mask = torch.zeros((n, width), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, width - len(s.prompt_ids):] = torch.tensor(s.prompt_ids, dtype=torch.long)
        mask[i, width - len(s.prompt_ids):] = 1
    ids, mask = ids.to(device), mask.to(device)
    position = (mask.cumsum(-1) - 1).clamp(min=0)                      # (batch, width)
    gens = [torch.Generator().manual_seed(s.seed) if s.temperature > 0 else None for s in seqs]
    # logits_to_keep=1: only the last position's logits, (batch, 1, vocab)
    out = model(input_ids=ids, attention_mask=mask, position_ids=position, use_cache=True,
                logits_to_keep=1)
    generated = 0
    for _ in range(max(s.max_tokens for s in seqs)):
        logits = out.logits[:, -1, :].float().cpu()                    # (batch, vocab)
        step = torch.full((n,), pad, dtype=torch.long)
        for i, s in enumerate(seqs):
            if s.finish:
                continue
            token = _pick(logits[i], s, gens[i])
            step[i] = token
            generated += 1
            if token in eos:
                s.finish = "stop"
            else:
                s.ids.append(token)
            text, stopped = visible_text(tok.decode(s.ids, skip_special_tokens=True), s,
                                         final=bool(s.finish))
            if stopped:
                s.finish = "stop"
            elif not s.finish and len(s.ids) >= s.max_tokens:
                s.finish = "length"
                text, _ = visible_text(tok.decode(s.ids, skip_special_tokens=True), s, True)
            if text.startswith(s.sent) and len(text) > len(s.sent):
                s.sink("delta", s.index, text[len(s.sent):])
                s.sent = text
            if s.finish:
                s.sink("done", s.index, s.finish, len(s.ids) + (token in eos))
        if all(s.finish for s in seqs):
            break
        mask = torch.cat([mask, torch.ones((n, 1), dtype=mask.dtype, device=device)], dim=1)
        position = position[:, -1:] + 1
        out = model(input_ids=step[:, None].to(device), attention_mask=mask,
                    position_ids=position, cache=out.cache, use_cache=True, logits_to_keep=1)
    return generated


class ModelWorker:
    """A thread that takes (serving, sequences) jobs off a queue and decodes those that arrive
    together in one batch per backend. `on_batch(sequences, tokens, seconds)` feeds metrics."""

    def __init__(self, window_ms: float = 5.0, max_batch: int = 16, on_batch=None,
                 bf16: bool = False):
        self.window, self.max_batch, self.bf16 = window_ms / 1000.0, max_batch, bf16
        self.on_batch = on_batch or (lambda *a: None)
        self.queue: queue.Queue = queue.Queue()
        self.thread = threading.Thread(target=self._run, name="reverie-model", daemon=True)
        self.thread.start()

    def submit(self, serving, seqs: list[Sequence]) -> None:
        self.queue.put((serving, seqs))

    def depth(self) -> int:
        return self.queue.qsize()

    def close(self, timeout: float = 10.0) -> None:
        self.queue.put(None)
        self.thread.join(timeout)

    def _run(self):
        while True:
            first = self.queue.get()
            if first is None:
                return
            jobs, size, stop = [first], len(first[1]), False
            deadline = time.monotonic() + self.window
            while size < self.max_batch:
                try:
                    job = self.queue.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    break
                if job is None:
                    stop = True
                    break
                jobs.append(job)
                size += len(job[1])
            groups: dict = {}
            for serving, seqs in jobs:     # why: one batch per backend; a swap may split them
                groups.setdefault(id(serving.backend), (serving, []))[1].extend(seqs)
            for serving, seqs in groups.values():
                start = time.monotonic()
                autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bf16 and
                                          serving.backend.device.type == "cpu")
                try:
                    with autocast:
                        tokens = decode(serving, seqs)
                except Exception as e:     # a model failure fails these requests, not the worker
                    for s in seqs:
                        if not s.finish:
                            s.finish = "error"
                            s.sink("error", s.index, e)
                    continue
                self.on_batch(len(seqs), tokens, time.monotonic() - start)
            if stop:
                return
