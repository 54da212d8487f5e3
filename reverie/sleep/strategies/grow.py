"""Grow: the night adds neurons to the MLP blocks and trains them alone; every weight the model
had stays as it was (Transformer-Patcher, Huang et al. 2023, with many neurons per layer).

A new neuron adds down[:, j] * act(gate[j] . x) * (up[j] . x) to its layer's output, as the old
ones do. Besides the KL to the pre-sleep model on its own writing, the night penalises what the
new neurons add to the residual stream on that writing (`grow_quiet`): they learn to stay silent
there and to speak where tonight's subjects are. Why: trained in place, the weights every prompt
shares moved SmolLM2's unrelated answers from the first Adam steps, before anything was learned
(stop 13); new neurons start silent (down = 0) and only what they add can move anything.

After the night the neurons are folded into the MLPs (gate, up and down projections grow by the
same number of rows in every layer; layers not grown get zero neurons, which add exactly 0): the
candidate is a standard model folder whose config has a larger intermediate_size.
"""

import dataclasses
import random

import torch
from torch import nn
from torch.nn import functional as F

from reverie.models.backend import Backend
from reverie.sleep.dream import about, stranger_name, subject_of
from reverie.sleep.rehearsal import as_read
from reverie.sleep.strategies.base import Night
from reverie.sleep.strategies.distill import Distill, kl_per_token


KEY_SAMPLE = 4096  # MLP inputs per layer the keys are chosen from (tonight's and the old)


class GrownMLP(nn.Module):
    """An MLP block (left frozen) plus `k` new neurons of the same shape."""

    def __init__(self, mlp, k: int, generator: torch.Generator):
        super().__init__()
        self.mlp = mlp
        w = mlp.gate_proj.weight
        std = float(w.detach().float().std())
        shape = (k, w.shape[1])
        self.gate = nn.Parameter((torch.randn(shape, generator=generator) * std).to(w.dtype))
        self.up = nn.Parameter((torch.randn(shape, generator=generator) * std).to(w.dtype))
        self.down = nn.Parameter(torch.zeros(w.shape[1], k, dtype=w.dtype))
        self.record = None  # list: (added, base) of every forward while recording

    def added(self, x):
        return F.linear(self.mlp.act_fn(F.linear(x, self.gate)) * F.linear(x, self.up), self.down)

    def forward(self, x):
        base = self.mlp(x)
        new = self.added(x)
        if self.record is not None:
            self.record.append((new, base))
        return base + new


def layer_range(spec: str, n_layers: int) -> range:
    """'all' or 'first-last' (inclusive) -> the layer indices."""
    if spec == "all":
        return range(n_layers)
    lo, _, hi = spec.partition("-")
    lo, hi = int(lo), int(hi or lo)
    if not 0 <= lo <= hi < n_layers:
        raise ValueError(f"grow_layers {spec!r} is outside the model's layers 0-{n_layers - 1}")
    return range(lo, hi + 1)


@torch.no_grad()
def mlp_inputs(model, tok, texts: list[str], layers, limit: int = 0, seed: int = 0,
               max_len: int = 256, positions: list | None = None) -> dict:
    """Per layer index in `layers`, the MLP inputs (the post-norm residual stream) at the real
    tokens of `texts` (or at `positions`, one list of token indices per text), as rows; with
    `limit`, at most that many, sampled with `seed` (the same rows in every layer)."""
    grabbed, hooks = {i: [] for i in layers}, []
    blocks = model.model.layers
    where = {}
    for i in layers:
        def grab(m, args, i=i):
            grabbed[i].append(args[0].detach().float()[where["m"]])
        hooks.append(blocks[i].mlp.register_forward_pre_hook(grab))
    try:
        for j in range(0, len(texts), 8):
            enc = tok(texts[j:j + 8], return_tensors="pt", padding=True, truncation=True,
                      max_length=max_len)
            m = enc["attention_mask"].bool()
            if positions is not None:
                m = torch.zeros_like(m)
                for r, pos in enumerate(positions[j:j + 8]):
                    m[r, [q for q in pos if q < m.shape[1]]] = True
            where["m"] = m
            model(**enc.to(next(model.parameters()).device))
    finally:
        for h in hooks:
            h.remove()
    out = {i: torch.cat(v) for i, v in grabbed.items()}
    if limit:
        n = len(next(iter(out.values())))
        pick = torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:limit]
        out = {i: x[pick] for i, x in out.items()}
    return out


def mentions(tok, text: str, name: str) -> list[int]:
    """Token index of the last token of every mention of `name` in `text`."""
    spans = tok(text, return_offsets_mapping=True)["offset_mapping"]
    out, at = [], text.find(name)
    while at >= 0:
        end = at + len(name)
        hits = [i for i, (s, e) in enumerate(spans) if s < end and e > at]
        if hits:
            out.append(hits[-1])
        at = text.find(name, end)
    return out


def whitening(old: torch.Tensor, ridge: float) -> tuple:
    """(mean, inverse covariance) of the rows of `old`, the covariance ridge-regularised by
    `ridge` times its mean eigenvalue; float64."""
    old = old.double()
    mu = old.mean(0)
    centred = old - mu
    cov = centred.T @ centred / len(old)
    cov += ridge * cov.trace() / len(cov) * torch.eye(len(cov), dtype=cov.dtype)
    return mu, torch.linalg.inv(cov)


def key_rows(targets: torch.Tensor, old: torch.Tensor, on: float = 4.0, off: float = 6.0,
             ridge: float = 1e-2):
    """Gate and up rows that fire on each of `targets` (MLP inputs) and stay off on `old`
    (inputs on text the neurons must leave alone).

    Each gate row is the whitened direction of its target (old's covariance, ridge-regularised)
    plus a share of old's mean: since every input carries about the same component along that
    mean (RMS-normed, massive dimensions), the share acts as the bias the MLP has not got, set
    so the gate reads `on` at its target and -`off` at old's mean. Each up row reads 1 at its
    target. Returns (gates, ups)."""
    targets = targets.double()
    mu, precision = whitening(old, ridge)
    gates = []
    for x in targets:
        w = precision @ (x - mu)
        system = torch.tensor([[float(w @ mu), float(mu @ mu)], [float(w @ x), float(mu @ x)]],
                              dtype=torch.float64)
        scale = float(w.norm() * mu.norm() * mu.norm() * x.norm())
        if not scale or abs(float(torch.linalg.det(system))) < 1e-9 * scale:
            # the target lies on old's mean line: no bias to be had; read `on` there
            gates.append(on * x / (x @ x).clamp(min=1e-12))
            continue
        a, b = torch.linalg.solve(system, torch.tensor([-off, on], dtype=torch.float64))
        gates.append(a * w + b * mu)
    gates = torch.stack(gates)
    return gates.float(), (gates / on).float()


def keys(new: torch.Tensor, old: torch.Tensor, k: int, on: float = 4.0, off: float = 6.0,
         alike: float = 0.9, ridge: float = 1e-2):
    """`k` rows (see key_rows) for the most novel of `new`: the farthest from `old` in
    Mahalanobis distance, no two alike above `alike` (cosine, whitened). Returns (gates, ups,
    how many were found)."""
    mu, precision = whitening(old, ridge)
    white = (new.double() - mu) @ precision
    distance = (white * (new.double() - mu)).sum(1)
    unit = F.normalize(white, dim=-1)
    taken = []
    for i in distance.argsort(descending=True).tolist():
        if len(taken) == k:
            break
        if not taken or float((unit[taken] @ unit[i]).max()) <= alike:
            taken.append(i)
    gates, ups = key_rows(new[taken], old, on, off, ridge)
    return gates, ups, len(taken)


def grow(model, k: int, layers: str = "all", seed: int = 0, init: dict | None = None,
         fixed: bool = False) -> list:
    """Give each chosen layer's MLP `k` new neurons (silent: down = 0); freeze everything else.
    `init`: layer index -> (gate rows, up rows) to start from (see keys), kept as they are when
    `fixed` (only down trains); random otherwise. Returns the new GrownMLP modules; the caller
    trains their parameters that require grad."""
    blocks = model.model.layers
    for layer in blocks:
        mlp = layer.mlp
        if not all(hasattr(mlp, a) for a in ("gate_proj", "up_proj", "down_proj", "act_fn")):
            raise ValueError(f"the grow strategy needs gated MLPs (gate_proj, up_proj, down_proj), "
                             f"got {type(mlp).__name__}; use another strategy")
        if any(getattr(mlp, a).bias is not None for a in ("gate_proj", "up_proj", "down_proj")):
            raise ValueError("the grow strategy needs MLPs without biases (mlp_bias=false); "
                             "use another strategy")
    for p in model.parameters():
        p.requires_grad_(False)
    g = torch.Generator().manual_seed(seed)
    grown = []
    for i in layer_range(layers, len(blocks)):
        blocks[i].mlp = GrownMLP(blocks[i].mlp, k, g).to(blocks[i].mlp.gate_proj.weight.device)
        if init and i in init:
            gates, ups = init[i]
            with torch.no_grad():
                blocks[i].mlp.gate[:len(gates)] = gates.to(blocks[i].mlp.gate.dtype)
                blocks[i].mlp.up[:len(ups)] = ups.to(blocks[i].mlp.up.dtype)
            if fixed:
                blocks[i].mlp.gate.requires_grad_(False)
                blocks[i].mlp.up.requires_grad_(False)
        grown.append(blocks[i].mlp)
    return grown


def quiet(grown: list, mask) -> torch.Tensor:
    """What the new neurons added on the recorded forwards: per layer, the mean over real tokens
    of |added|^2 over the median over tokens of |base|^2 (what the old neurons give a typical
    token), averaged over the grown layers.

    why the median: a few tokens (the first) carry MLP outputs hundreds of times the others'
    (massive activations); measured against their sum, SmolLM2's new neurons added 1.4% on
    chatter, looked silent, and moved its answers as much as training the old weights did."""
    keep = mask.bool()
    terms = []
    for g in grown:
        for new, base in g.record:
            added = new.float().pow(2).sum(-1)[keep]
            typical = base.float().pow(2).sum(-1)[keep].median().detach()
            terms.append(added.mean() / typical.clamp(min=1e-6))
    return torch.stack(terms).mean()


@torch.no_grad()
def fold(model) -> int:
    """Fold every GrownMLP back into a plain MLP with its neurons appended; layers without new
    neurons get zero ones, so all keep one intermediate_size. Returns the neurons added per layer."""
    blocks = model.model.layers
    k = max((b.mlp.gate.shape[0] for b in blocks if isinstance(b.mlp, GrownMLP)), default=0)
    if not k:
        return 0
    for b in blocks:
        g = b.mlp if isinstance(b.mlp, GrownMLP) else None
        mlp = g.mlp if g else b.mlp
        w = mlp.gate_proj.weight
        h = w.shape[1]
        zeros = w.new_zeros(k, h)
        new = {"gate_proj": g.gate if g else zeros, "up_proj": g.up if g else zeros,
               "down_proj": g.down if g else w.new_zeros(h, k)}
        for name, extra in new.items():
            old = getattr(mlp, name)
            dim = 1 if name == "down_proj" else 0
            weight = torch.cat([old.weight, extra.detach().to(old.weight.dtype)], dim)
            lin = nn.Linear(weight.shape[1], weight.shape[0], bias=False, device=weight.device,
                            dtype=weight.dtype)
            lin.weight.copy_(weight)
            setattr(mlp, name, lin)
        if hasattr(mlp, "intermediate_size"):
            mlp.intermediate_size += k
        b.mlp = mlp
    model.config.intermediate_size += k
    return k


def renamed(material: list, subjects: list, rng: random.Random) -> list:
    """The night's material about its subjects with every subject renamed to someone nobody
    has met (their first and last names recombined): text the new neurons must stay silent on,
    which the KL keeps as the pre-sleep model read it (no generation needed)."""
    firsts = [n.split()[0] for n in subjects]
    lasts = [n.split()[-1] for n in subjects]
    out = []
    for ex in material:
        names = [n for n in subjects if about(ex, {n})]
        if not names:
            continue
        new = {n: stranger_name(n, firsts, lasts, set(subjects), rng) for n in names}

        def swap(t):
            for n in names:
                t = t.replace(n, new[n]) if t else t
            return t
        out.append(dataclasses.replace(ex, kind="renamed", text=swap(ex.text),
                                       context=swap(ex.context), question=swap(ex.question),
                                       answer=swap(ex.answer)))
    return out


def subject_keys(model, tok, backend, material: list, subjects: list, layers, per_subject: int,
                 seed: int, max_len: int) -> dict:
    """Per layer, `per_subject` target inputs for each subject: the mean of its MLP inputs at the
    last token of every mention of its name in tonight's material, then single mentions."""
    rng = random.Random(seed)
    targets = {i: [] for i in layers}
    for name in subjects:
        texts = [t for t in as_read(backend, [ex for ex in material if about(ex, {name})])]
        positions = [mentions(tok, t, name) for t in texts]
        if not any(positions):
            continue
        inputs = mlp_inputs(model, tok, texts, layers, max_len=max_len, positions=positions)
        n = len(next(iter(inputs.values())))
        picks = rng.sample(range(n), min(n, per_subject - 1))
        for i in layers:
            targets[i].append(inputs[i].mean(0, keepdim=True))
            targets[i].append(inputs[i][picks])
    return {i: torch.cat(v) for i, v in targets.items() if v}


class Grow(Distill):
    name = "grow"

    def kept(self, night: Night) -> list:
        """Its own writing and tonight's material renamed, taken in turn."""
        own, renamed_ = night.generative, night.scratch.get("grow_renamed", [])
        mixed = [ex for pair in zip(own, renamed_) for ex in pair]
        n = min(len(own), len(renamed_))
        return mixed + own[n:] + renamed_[n:]

    def wrap(self, night: Night, model):
        cfg, tok = night.cfg, night.tokenizer
        night.lr = cfg.grow_lr
        seed = cfg.seed + night.state.nights
        material = night.scratch.get("material", [])
        subjects = sorted({subject_of(ex.text) for ex in material if ex.kind == "episode"}
                          - {None})
        night.scratch["grow_renamed"] = renamed(material, subjects, random.Random(seed))
        spared = night.generative + night.scratch["grow_renamed"]
        init, k = None, cfg.grow_neurons * max(1, len(subjects))
        if cfg.grow_keys and material and spared:
            backend = Backend(model, tok)
            layers = layer_range(cfg.grow_layers, len(model.model.layers))
            old = mlp_inputs(model, tok, as_read(backend, spared), layers, KEY_SAMPLE, seed,
                             cfg.train.max_len)
            targets = subject_keys(model, tok, backend, material, subjects, layers,
                                   cfg.grow_neurons, seed, cfg.train.max_len)
            if targets:
                init = {i: key_rows(targets[i], old[i]) for i in layers}
                k = len(targets[layers[0]])
            else:  # no named subject: the material's most novel inputs
                new = mlp_inputs(model, tok, as_read(backend, material), layers, KEY_SAMPLE,
                                 seed, cfg.train.max_len)
                init = {i: keys(new[i], old[i], k)[:2] for i in layers}
        night.scratch["grow_frozen"] = [p for p in model.parameters() if p.requires_grad]
        night.scratch["grown"] = grow(model, k, cfg.grow_layers, seed, init, cfg.grow_fixed_keys)
        return model

    def loss(self, night: Night, model):
        """KL to the pre-sleep model and the new neurons' quiet on its own writing, one forward."""
        cfg = night.cfg
        if (cfg.kl_weight == 0 and cfg.grow_quiet == 0) or (
                rows := self.next_rows(night, model)) is None:
            return None
        ids, mask = rows
        grown = night.scratch["grown"]
        for g in grown:
            g.record = []
        try:
            cur = model(input_ids=ids, attention_mask=mask).logits.float()
            total = cfg.grow_quiet * quiet(grown, mask)
        finally:
            for g in grown:
                g.record = None
        if cfg.kl_weight:
            with torch.no_grad():
                ref = night.reference(input_ids=ids, attention_mask=mask).logits.float()
            total = total + cfg.kl_weight * kl_per_token(ref, cur, mask)
        return total

    def finish(self, night: Night, model):
        night.scratch.pop("grown", None)
        night.scratch["grow"] = {"neurons_per_layer": fold(model),
                                 "intermediate_size": model.config.intermediate_size}
        for p in night.scratch.pop("grow_frozen", []):
            p.requires_grad_(True)
        return model
